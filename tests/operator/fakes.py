"""Stand-ins for the API, the clock, the members and the Lease API, kept in memory."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from servicepool_api.spec import PoolSpec
from servicepool_operator.controller import ClusterView
from servicepool_operator.kube import ApplyResult, is_subset, owned_by
from servicepool_operator.membership import PodInfo
from servicepool_operator.names import POOL_LABEL
from servicepool_operator.records import ProbeResult

START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeKube:
    """The operator's API writes against a dict of objects; every write is recorded."""

    def __init__(self, policy_api_version: str = "policy/v1") -> None:
        self.policy_api_version = policy_api_version
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, name)
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.statuses: list[dict[str, Any]] = []
        self.status_errors: list[Exception] = []  # raised by the next status patches

    def put_foreign(self, kind: str, name: str) -> None:
        """An object of that name that the pool does not own."""
        self.objects[(kind, name)] = {"kind": kind, "metadata": {"name": name}}

    def kinds(self) -> list[str]:
        return sorted(kind for kind, _ in self.objects)

    async def apply_owned(
        self, manifest: Mapping[str, Any], owner_uid: str, new: bool = False
    ) -> ApplyResult:
        key = (manifest["kind"], manifest["metadata"]["name"])
        self.writes.append(("create first" if new else "apply", *key))
        actual = self.objects.get(key)
        if actual is None:
            self.objects[key] = copy.deepcopy(dict(manifest))
            return ApplyResult("created")
        if not owned_by(actual, owner_uid):
            return ApplyResult("conflict", f"{key[0]} {key[1]!r} is not owned by this pool")
        if is_subset(manifest, actual):
            return ApplyResult("unchanged")
        self.objects[key] = copy.deepcopy(dict(manifest))
        return ApplyResult("updated")

    async def delete_owned(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
        self.writes.append(("delete", kind, name))
        actual = self.objects.get((kind, name))
        if actual is None or not owned_by(actual, owner_uid):
            return False
        del self.objects[(kind, name)]
        return True

    async def patch_pool_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        if self.status_errors:
            raise self.status_errors.pop(0)
        self.statuses.append(copy.deepcopy(dict(status)))

    def config(self) -> str:
        """The proxy config in the pool's ConfigMap."""
        return next(o for (k, _), o in self.objects.items() if k == "ConfigMap")["data"][
            "pool.yaml"
        ]


@dataclass
class FakeClock:
    """Time moves only when a test says so; waits are recorded, and end the loop when told."""

    seconds: float = 1000.0
    waits: list[float] = field(default_factory=list)
    stop_after_waits: int | None = None

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> str:
        return (START + timedelta(seconds=self.seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def wait(self, wake: asyncio.Event, seconds: float) -> None:
        self.waits.append(seconds)
        if self.stop_after_waits is not None and len(self.waits) >= self.stop_after_waits:
            raise asyncio.CancelledError


class FakeProbe:
    """Members answer as told (healthy by default); every probe is recorded."""

    def __init__(self) -> None:
        self.answers: dict[str, ProbeResult] = {}
        self.probed: list[str] = []

    def answer(self, url: str, ok: bool, message: str = "") -> None:
        self.answers[url] = ProbeResult(ok, message)

    async def __call__(self, url: str, spec: PoolSpec) -> ProbeResult:
        self.probed.append(url)
        return self.answers.get(url, ProbeResult(True, ""))


@dataclass
class FakeCluster:
    """The namespace's Services and Pods, as the kopf indexes would hold them."""

    services: list[str] = field(default_factory=list)
    pods: list[PodInfo] = field(default_factory=list)

    def view(self) -> ClusterView:
        def proxy_pods(_: str, pool: str) -> list[PodInfo]:
            return [p for p in self.pods if p.labels.get(POOL_LABEL) == pool]

        return ClusterView(
            services=lambda _: list(self.services),
            pods=lambda _: list(self.pods),
            proxy_pods=proxy_pods,
        )


@dataclass
class Events:
    """Events posted on the pool: (type, reason, message)."""

    posted: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.posted.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.posted]


class FakeLeaseApi:
    """CoordinationV1Api's Lease calls with resourceVersion compare-and-swap."""

    def __init__(self) -> None:
        self.lease: client.V1Lease | None = None
        self.down = False  # every call fails as if the API were unreachable
        self.before_write: list[str] = []  # "taken": another replica writes first (a race)

    def hold(self, holder: str | None, renewed: datetime | None, seconds: int = 15) -> None:
        """Another replica's lease, as if it had written it."""
        spec = client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=seconds,
                                  acquire_time=renewed, renew_time=renewed)  # fmt: skip
        version = int(self.lease.metadata.resource_version) + 1 if self.lease else 1
        meta = client.V1ObjectMeta(name="lease", namespace="ns", resource_version=str(version))
        self.lease = client.V1Lease(metadata=meta, spec=spec)

    def _check(self) -> None:
        if self.down:
            raise ApiException(status=503, reason="Service Unavailable")

    def _race(self) -> None:
        if self.before_write:
            self.before_write.pop(0)
            self.hold("rival", START)

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease:
        self._check()
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease) -> client.V1Lease:
        self._check()
        self._race()
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        body = copy.deepcopy(body)
        body.metadata.resource_version = "1"
        self.lease = body
        return body

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: client.V1Lease
    ) -> client.V1Lease:
        self._check()
        self._race()
        assert self.lease is not None
        if body.metadata.resource_version != self.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        body = copy.deepcopy(body)
        body.metadata.resource_version = str(int(self.lease.metadata.resource_version) + 1)
        self.lease = body
        return body
