"""What a pool should look like in the cluster, from what is known about it (pure).

`read_spec` turns the pool and the cluster view into the members to serve; `plan_pool` turns
those, the probe records and the proxy defaults into the owned objects, the proxy config and
the status. Nothing here reads a clock or the API: the inputs say everything.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicepool_api.loader import PoolFileError, parse_pool
from servicepool_api.spec import Member, PoolSpec
from servicepool_api.status import PoolStatus

from . import names, render
from .membership import MembershipError, PodInfo, check_not_empty, resolve_members
from .proxies import ProxyPods
from .records import MemberRecord
from .status import Problem, build_status


@dataclass(frozen=True, slots=True)
class PoolRef:
    """Which pool: the names and uid every owned object points back to."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> PoolRef:
        """From the pool object."""
        metadata = body["metadata"]
        return cls(metadata["name"], metadata["namespace"], metadata["uid"])


@dataclass(frozen=True, slots=True)
class SpecReading:
    """The pool's spec with every member resolved, or why that is not possible."""

    spec: PoolSpec | None
    members: list[Member]
    problem: Problem | None


def generation_of(body: Mapping[str, Any]) -> int:
    """The pool's metadata.generation (0 before the API server set one)."""
    return int(body["metadata"].get("generation") or 0)


def read_spec(
    body: Mapping[str, Any], services: Iterable[str], pods: Iterable[PodInfo]
) -> SpecReading:
    """Validate the spec and resolve its members against the namespace's Services and Pods."""
    pool = PoolRef.of(body)
    document = {
        "apiVersion": body.get("apiVersion", names.API_VERSION_FULL),
        "kind": names.POOL_KIND,
        "metadata": {"name": pool.name, "namespace": pool.namespace},
        "spec": body.get("spec") or {},
    }
    try:
        spec = parse_pool(document).spec
        check_not_empty(spec)
        members = resolve_members(spec, pool.namespace, services, pods)
    except (PoolFileError, MembershipError) as exc:
        return SpecReading(None, [], Problem("InvalidSpec", str(exc)))
    return SpecReading(spec, members, None)


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    """Owned objects to create or update, in order, and optional kinds to delete."""

    apply: list[render.Manifest]
    delete: list[str]


@dataclass(frozen=True, slots=True)
class ConfigPlan:
    """The proxy config and the ConfigMap that carries it."""

    text: str
    manifest: render.Manifest
    routed: int  # members the proxies route to
    total: int  # members the pool has


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """Everything one pass knows: the pool, what it serves, the probes and the Pods."""

    pool: PoolRef
    generation: int
    spec: PoolSpec | None  # the last valid spec (None: there never was one)
    members: Sequence[Member]  # the members of that spec
    spec_problem: Problem | None  # why this generation's spec cannot be served
    records: Sequence[MemberRecord]  # probe history, in member order
    unhealthy: Collection[str]  # members probed unhealthy
    proxy_pods: Sequence[PodInfo]  # the Pods that carry this pool's label
    previous_status: Mapping[str, Any]  # as last written
    now: str  # wall time for new condition transitions
    defaults: render.ProxyDefaults
    policy_api_version: str
    conflict: Problem | None = None  # an owned object that belongs to someone else


@dataclass(frozen=True, slots=True)
class Plan:
    """The desired objects and config (None: leave as they are) and the status to report."""

    objects: ObjectPlan | None
    config: ConfigPlan | None
    proxies: ProxyPods | None
    status: PoolStatus


def plan_objects(
    pool: PoolRef, spec: PoolSpec, defaults: render.ProxyDefaults, policy_api_version: str
) -> ObjectPlan:
    """The owned objects but the ConfigMap, and the optional kinds this spec does without."""
    name, namespace, uid = pool.name, pool.namespace, pool.uid
    manifests = render.render_static_objects(name, namespace, uid, spec, defaults)
    optional = {
        "NetworkPolicy": render.render_network_policy(name, namespace, uid, spec),
        "PodDisruptionBudget": render.render_disruption_budget(
            name, namespace, uid, spec, policy_api_version
        ),
    }
    manifests += [m for m in optional.values() if m is not None]
    return ObjectPlan(manifests, [kind for kind, m in optional.items() if m is None])


def plan_config(
    pool: PoolRef, spec: PoolSpec, members: Sequence[Member], unhealthy: Collection[str]
) -> ConfigPlan:
    """The proxy config: every member but those probed unhealthy (all when none is healthy)."""
    routed = render.routed_members(list(members), unhealthy)
    text = render.render_proxy_config(pool.name, pool.namespace, spec, routed)
    manifest = render.render_config_map(pool.name, pool.namespace, pool.uid, text)
    return ConfigPlan(text, manifest, len(routed), len(members))


def plan_pool(inputs: PlanInputs) -> Plan:
    """The objects, config and status for one pass.

    An invalid spec changes nothing in the cluster: the last valid config keeps serving.
    """
    spec, pool = inputs.spec, inputs.pool
    if spec is None:  # never had a valid spec: nothing to serve yet
        return Plan(None, None, None, plan_status(inputs, "", [], None))
    proxies = ProxyPods.of(inputs.proxy_pods, pool.name, spec.proxy.replicas)
    endpoint = names.endpoint(pool.name, pool.namespace, spec.proxy.port)
    status = plan_status(inputs, endpoint, inputs.records, proxies)
    if inputs.spec_problem is not None:
        return Plan(None, None, proxies, status)
    objects = plan_objects(pool, spec, inputs.defaults, inputs.policy_api_version)
    config = plan_config(pool, spec, inputs.members, inputs.unhealthy)
    return Plan(objects, config, proxies, status)


def plan_status(
    inputs: PlanInputs,
    endpoint: str,
    records: Sequence[MemberRecord],
    proxies: ProxyPods | None,
) -> PoolStatus:
    """The status, naming the spec's problem or else a conflict."""
    return build_status(
        generation=inputs.generation,
        endpoint=endpoint,
        records=records,
        problem=inputs.spec_problem or inputs.conflict,
        previous=inputs.previous_status,
        now=inputs.now,
        proxies=proxies,
    )
