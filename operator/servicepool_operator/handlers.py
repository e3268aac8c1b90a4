"""kopf wiring: watches and indexes feed one PoolController task per ServicePool."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf

from . import names, render
from .controller import ClusterView, PoolController
from .kube import API_CONCURRENCY, KubeClient, load_api_client
from .leader import LeaderElector
from .membership import PodInfo
from .metrics import serve_metrics
from .probing import HttpProbe
from .shared_probes import SharedProbes
from .tasks_registry import PoolTasks

log = logging.getLogger("servicepool.operator")

LEADER_NAMESPACE_ENV = "SERVICEPOOL_LEADER_ELECTION_NAMESPACE"
LEADER_NAME_ENV = "SERVICEPOOL_LEADER_ELECTION_NAME"
PROXY_IMAGE_ENV = "SERVICEPOOL_PROXY_IMAGE"
PROXY_IMAGE_PULL_POLICY_ENV = "SERVICEPOOL_PROXY_IMAGE_PULL_POLICY"
PROXY_IMAGE_PULL_SECRETS_ENV = "SERVICEPOOL_PROXY_IMAGE_PULL_SECRETS"  # comma-separated names
METRICS_ENV = "SERVICEPOOL_OPERATOR_METRICS"  # HOST:PORT of /metrics; unset: none
# New pools in their first pass at once: enough to keep every API thread busy.
FIRST_PASSES_AT_ONCE = API_CONCURRENCY


def proxy_defaults_from_env() -> render.ProxyDefaults:
    """The image the proxies run where a pool does not name one (set by the CLI's flags)."""
    return render.ProxyDefaults(
        image=os.environ.get(PROXY_IMAGE_ENV) or render.OPERATOR_DEFAULTS.image,
        image_pull_policy=os.environ.get(PROXY_IMAGE_PULL_POLICY_ENV)
        or render.OPERATOR_DEFAULTS.image_pull_policy,
        image_pull_secrets=tuple(
            name for name in os.environ.get(PROXY_IMAGE_PULL_SECRETS_ENV, "").split(",") if name
        ),
    )


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached plain-dict copy of a kopf body."""
    return {key: body[key] for key in body}


def emit_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Record a Kubernetes Event on the pool."""
    kopf.event(dict(body), type=type_, reason=reason, message=message[:1024])


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no last-handled state: the operator has no change handlers that would diff it.

    kopf builds a deep copy of every watched object's "essence" (every Pod, Service and pool
    event) to diff it against the last handled one; with only event handlers and indexes,
    nothing reads the result.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        """An empty essence."""
        return {}

    def fetch(self, *, body: kopf.Body) -> Any:
        """No stored essence."""
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        """Nothing to store."""


@dataclass
class OperatorState:
    """Everything the handlers share; lives in kopf's memo."""

    kube: KubeClient
    session: aiohttp.ClientSession
    tasks: PoolTasks
    leader: LeaderElector | None
    proxy_defaults: render.ProxyDefaults
    probes: SharedProbes  # one probe per member address, for every pool
    first_passes: asyncio.Semaphore  # new pools' first passes, in order of arrival
    view: ClusterView | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    stop_metrics: Callable[[], None] | None = None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Connect, configure kopf, and start leader election if asked to."""
    # Our own Events (member state, invalid spec) are posted explicitly; kopf's per-handler
    # chatter ("Handler ... succeeded" for every Pod change) stays out of the log and the API.
    settings.posting.level = logging.WARNING
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # No cluster-wide scanning of namespaces and CRDs: the resources are known at start,
    # and the operator's RBAC stays at what it uses.
    settings.scanning.disabled = True
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 30
    api_client = load_api_client()
    kube = KubeClient(api_client)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=256),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    leader = None
    lease_namespace = os.environ.get(LEADER_NAMESPACE_ENV)
    if lease_namespace:
        # Unique per process: a restarted container (same Pod, same PID 1) must not take
        # itself for the holder of its predecessor's lease.
        identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        leader = LeaderElector(
            kube.coordination, lease_namespace,
            os.environ.get(LEADER_NAME_ENV, "servicepool-operator"), identity,
        )  # fmt: skip
    state = OperatorState(
        kube, session, PoolTasks(), leader, proxy_defaults_from_env(),
        SharedProbes(HttpProbe(session)), asyncio.Semaphore(FIRST_PASSES_AT_ONCE),
    )  # fmt: skip
    memo["state"] = state
    if os.environ.get(METRICS_ENV):
        bodies = state.tasks.bodies
        state.stop_metrics = serve_metrics(os.environ[METRICS_ENV], lambda: list(bodies.values()))
    if leader is not None:
        state.background.append(asyncio.create_task(leader.run(), name="leader-election"))
        state.background.append(asyncio.create_task(_follow_leadership(state)))


async def _follow_leadership(state: OperatorState) -> None:
    assert state.leader is not None
    while True:
        await state.leader.changed.wait()
        state.leader.changed.clear()
        if state.leader.is_leader:
            state.tasks.start_all(lambda body: _new_controller(state, body))
        else:
            await state.tasks.stop_all()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop every pool loop, give up the lease, close connections."""
    state: OperatorState | None = memo.get("state")
    if state is None:
        return
    await state.tasks.stop_all()
    for task in state.background:
        task.cancel()
    if state.leader is not None:
        await state.leader.release()
    await state.session.close()
    if state.stop_metrics is not None:
        state.stop_metrics()


@kopf.index("", "v1", "pods")
def pods_by_namespace(namespace: str, body: kopf.Body, **_: Any) -> dict[str, PodInfo]:
    """Pods of every watched namespace, reduced to what membership needs."""
    return {namespace: PodInfo.from_body(body)}


@kopf.index("", "v1", "services")
def services_by_namespace(namespace: str, name: str, **_: Any) -> dict[str, str]:
    """Names of the Services of every watched namespace."""
    return {namespace: name}


@kopf.index("", "v1", "pods", labels={names.POOL_LABEL: kopf.PRESENT})
def proxy_pods_by_pool(
    namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], PodInfo]:
    """Pods that carry a pool's label (its proxies), by (namespace, pool)."""
    return {(namespace, labels[names.POOL_LABEL]): PodInfo.from_body(body)}


def make_view(
    pods_index: kopf.Index[str, PodInfo],
    services_index: kopf.Index[str, str],
    proxy_pods_index: kopf.Index[tuple[str, str], PodInfo],
) -> ClusterView:
    """Read the live kopf indexes of Pods and Services."""

    def services(namespace: str) -> Iterable[str]:
        return list(services_index.get(namespace, ()))

    def pods(namespace: str) -> Iterable[PodInfo]:
        return list(pods_index.get(namespace, ()))

    def proxy_pods(namespace: str, pool: str) -> Iterable[PodInfo]:
        return list(proxy_pods_index.get((namespace, pool), ()))

    return ClusterView(services=services, pods=pods, proxy_pods=proxy_pods)


def _new_controller(state: OperatorState, body: Mapping[str, Any]) -> PoolController:
    assert state.view is not None
    return PoolController(
        state.kube, state.view, state.probes, emit_event, body, state.proxy_defaults,
        first_passes=state.first_passes,
    )  # fmt: skip


def _may_act(state: OperatorState) -> bool:
    return state.leader is None or state.leader.is_leader


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def pool_event(
    type: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    pods_by_namespace: kopf.Index[str, PodInfo],
    services_by_namespace: kopf.Index[str, str],
    proxy_pods_by_pool: kopf.Index[tuple[str, str], PodInfo],
    **_: Any,
) -> None:
    """Every change of a ServicePool: start, update or stop its loop."""
    state: OperatorState = memo["state"]
    if state.view is None:
        state.view = make_view(pods_by_namespace, services_by_namespace, proxy_pods_by_pool)
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if type == "DELETED":
        await state.tasks.forget(key)
        return
    state.tasks.remember(key, plain(body))
    if _may_act(state):
        state.tasks.ensure(key, lambda b: _new_controller(state, b))


@kopf.on.event("", "v1", "pods")
async def pod_event(
    type: str | None,
    namespace: str,
    name: str,
    labels: Mapping[str, str],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A Pod came, changed or left: the pools whose selector matches it (before or after the
    change) look again, and so does the pool whose proxy the Pod is."""
    state: OperatorState | None = memo.get("state")
    if state is not None:
        state.tasks.wake_for_pod(namespace, name, labels, deleted=type == "DELETED")


@kopf.on.event("", "v1", "services")
async def service_event(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """A Service came, changed or left: the pools that name it as a member look again."""
    state: OperatorState | None = memo.get("state")
    if state is not None:
        state.tasks.wake_for_service(namespace, name)
