"""One loop per pool: resolve members, probe them, render the proxy config, write status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from servicepool_proxy.balancer.member import Health
from servicepool_proxy.balancer.pool import apply_probe
from servicepool_proxy.loader import PoolFileError, parse_pool
from servicepool_proxy.prober import fetch, probe_once
from servicepool_proxy.signals import SignalError, parse_load_report
from servicepool_proxy.spec import Capacity, Member, PoolSpec

from . import names, render
from .kube import KubeClient
from .membership import MembershipError, PodInfo, check_not_empty, resolve_members
from .proxies import ProxyPods
from .status import MemberRecord, Problem, build_status, needs_write, now_iso

log = logging.getLogger("servicepool.operator")

# Owned objects are re-checked this often even when nothing changed (someone may edit them).
RESYNC_SECONDS = 300.0

EventSink = Callable[[Mapping[str, Any], str, str, str], None]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the pool loop reads of the cluster: Services and Pods of its namespace."""

    services: Callable[[str], Iterable[str]]
    pods: Callable[[str], Iterable[PodInfo]]


async def capacity_snapshot(
    session: aiohttp.ClientSession, url: str, policy: Capacity
) -> dict[str, Any]:
    """The member's own load report, as shown in status."""
    try:
        report = parse_load_report(await fetch(session, url + policy.endpoint(), 2.0), policy)
    except SignalError as exc:
        return {"error": str(exc)[:200]}
    snapshot: dict[str, Any] = {"queued": report.queued, "running": report.running}
    if report.workers is not None:
        snapshot["workers"] = report.workers
    if report.cache_usage is not None:
        snapshot["cacheUsage"] = report.cache_usage
    return snapshot


class PoolController:
    """Keeps one ServicePool's objects, health and status true."""

    def __init__(
        self,
        kube: KubeClient,
        cluster: ClusterView,
        session: aiohttp.ClientSession,
        emit: EventSink,
        body: Mapping[str, Any],
        proxy_defaults: render.ProxyDefaults = render.OPERATOR_DEFAULTS,
    ) -> None:
        self.kube = kube
        self.proxy_defaults = proxy_defaults
        self.cluster = cluster
        self.session = session
        self.emit = emit
        self.body: Mapping[str, Any] = body
        self.namespace: str = body["metadata"]["namespace"]
        self.name: str = body["metadata"]["name"]
        self.uid: str = body["metadata"]["uid"]
        self.wake = asyncio.Event()
        self.spec: PoolSpec | None = None
        self.members: list[Member] = []
        previous = dict(body.get("status") or {})
        self.last_status: dict[str, Any] = previous
        self.last_write = time.monotonic()
        self.records: dict[str, MemberRecord] = {
            entry["name"]: MemberRecord.from_status(entry)
            for entry in previous.get("members") or []
            if entry.get("name")
        }
        self.last_probe: dict[str, float] = {}
        self.applied_generation: int | None = None
        self.applied_at = 0.0
        self.applied_config: str | None = None
        self.reported_problem: tuple[int, str] | None = None
        self.reported_proxies: str | None = None
        self.writes = 0

    def update(self, body: Mapping[str, Any]) -> None:
        """A newer version of the pool arrived from the watch; a spec change wakes the loop.

        Status-only updates (mostly our own writes) need no new pass.
        """
        old_generation = self.body["metadata"].get("generation")
        self.body = body
        if body["metadata"].get("generation") != old_generation:
            self.wake.set()

    # -- one pass -----------------------------------------------------------------------

    def _parse(self) -> tuple[PoolSpec | None, Problem | None]:
        document = {
            "apiVersion": self.body.get("apiVersion", names.API_VERSION_FULL),
            "kind": names.POOL_KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self.body.get("spec") or {},
        }
        try:
            spec = parse_pool(document).spec
            check_not_empty(spec)
        except (PoolFileError, MembershipError) as exc:
            return None, Problem("InvalidSpec", str(exc))
        return spec, None

    async def reconcile(self) -> float:
        """Run one pass; returns seconds until the next probe is due."""
        generation = int(self.body["metadata"].get("generation") or 0)
        spec, problem = self._parse()
        if spec is not None:
            try:
                members = resolve_members(
                    spec,
                    self.namespace,
                    self.cluster.services(self.namespace),
                    self.cluster.pods(self.namespace),
                )
            except MembershipError as exc:
                problem = Problem("InvalidSpec", str(exc))
            else:
                self.spec, self.members = spec, members
        if problem is not None:
            self._report_problem(generation, problem)

        active = self.spec
        if active is None:  # never had a valid spec: nothing to serve yet
            await self._write_status(generation, problem, endpoint="")
            return 30.0

        if problem is None:
            conflict = await self._apply_objects(generation, active)
            if conflict is not None:
                problem = conflict
                self._report_problem(generation, conflict)
        transitions = await self._probe(active)
        for record, before in transitions:
            self._emit_transition(record, before)
        if problem is None or problem.reason != "InvalidSpec":
            await self._apply_config(active)
        endpoint = names.endpoint(self.name, self.namespace, active.proxy.port)
        proxies = ProxyPods.of(self.cluster.pods(self.namespace), self.name, active.proxy.replicas)
        self._report_proxies(proxies)
        await self._write_status(generation, problem, endpoint, proxies)
        return active.healthCheck.intervalSeconds

    def _report_proxies(self, proxies: ProxyPods) -> None:
        """An Event when proxy Pods get stuck (once per distinct problem) and when they recover."""
        _, reason, message = proxies.condition()
        if proxies.problems and message != self.reported_proxies:
            self.reported_proxies = message
            log.warning("pool %s/%s: %s", self.namespace, self.name, message)
            self.emit(self.body, "Warning", "ProxyPodsFailing", message)
        elif self.reported_proxies and reason == "ProxiesReady":
            self.reported_proxies = None
            self.emit(self.body, "Normal", reason, message)

    def _report_problem(self, generation: int, problem: Problem) -> None:
        key = (generation, problem.message)
        if self.reported_problem != key:
            self.reported_problem = key
            log.warning(
                "pool %s/%s: %s: %s", self.namespace, self.name, problem.reason, problem.message
            )
            self.emit(self.body, "Warning", problem.reason, problem.message)

    async def _apply_objects(self, generation: int, spec: PoolSpec) -> Problem | None:
        due = time.monotonic() - self.applied_at > RESYNC_SECONDS
        if self.applied_generation == generation and not due:
            return None
        manifests = render.render_static_objects(
            self.name, self.namespace, self.uid, spec, self.proxy_defaults
        )
        optional = {
            "NetworkPolicy": render.render_network_policy(
                self.name, self.namespace, self.uid, spec
            ),
            "PodDisruptionBudget": render.render_disruption_budget(
                self.name, self.namespace, self.uid, spec, self.kube.policy_api_version
            ),
        }
        for kind, manifest in optional.items():
            if manifest is not None:
                manifests.append(manifest)
            elif await self.kube.delete_owned(
                kind, names.proxy_name(self.name), self.namespace, self.uid
            ):
                log.info("pool %s/%s: deleted %s (no longer wanted)", self.namespace,
                         self.name, kind)  # fmt: skip
        for manifest in manifests:
            result = await self.kube.apply_owned(manifest, self.uid)
            if result.conflict:
                return Problem("Conflict", result.message)
            if result.action != "unchanged":
                log.info(
                    "pool %s/%s: %s %s %s",
                    self.namespace,
                    self.name,
                    result.action,
                    manifest["kind"],
                    manifest["metadata"]["name"],
                )
        self.applied_generation = generation
        self.applied_at = time.monotonic()
        return None

    async def _apply_config(self, spec: PoolSpec) -> None:
        unhealthy = {n for n, r in self.records.items() if r.health is Health.UNHEALTHY}
        routed = render.routed_members(self.members, unhealthy)
        config = render.render_proxy_config(self.name, self.namespace, spec, routed)
        if config == self.applied_config:
            return
        manifest = render.render_config_map(self.name, self.namespace, self.uid, config)
        result = await self.kube.apply_owned(manifest, self.uid)
        if result.conflict:
            self._report_problem(-1, Problem("Conflict", result.message))
            return
        self.applied_config = config
        if result.action != "unchanged":
            log.info(
                "pool %s/%s: proxy config %s (%d of %d members routed)",
                self.namespace,
                self.name,
                result.action,
                len(routed),
                len(self.members),
            )

    async def _probe(self, spec: PoolSpec) -> list[tuple[MemberRecord, Health]]:
        """Probe members that are due; returns (record, previous health) per transition."""
        check = spec.healthCheck
        current = {m.name: m.url or "" for m in self.members}
        for name in list(self.records):
            if name not in current:
                del self.records[name]
                self.last_probe.pop(name, None)
        for name, url in current.items():
            record = self.records.get(name)
            if record is None or record.url != url:
                self.records[name] = MemberRecord(name=name, url=url)
                self.last_probe.pop(name, None)
        now = time.monotonic()
        due = [
            r for r in self.records.values()
            if now - self.last_probe.get(r.name, -1e9) >= 0.9 * check.intervalSeconds
        ]  # fmt: skip
        if not due:
            return []
        if not check.enabled:
            return [(r, h) for r, h in ((r, self._assume_healthy(r)) for r in due) if h]

        async def timed(record: MemberRecord) -> tuple[bool, str, float]:
            started = time.perf_counter()
            ok, message = await probe_once(
                self.session, record.url, check.path, check.timeoutSeconds
            )
            if ok and spec.capacity is not None:
                record.capacity = await capacity_snapshot(self.session, record.url, spec.capacity)
            return ok, message, (time.perf_counter() - started) * 1e3

        results = await asyncio.gather(*(timed(r) for r in due))
        stamp = now_iso()
        transitions = []
        for record, (ok, message, latency_ms) in zip(due, results, strict=True):
            self.last_probe[record.name] = now
            before = record.health
            record.last_probe_time = stamp
            record.latency_ms = round(latency_ms, 1) if ok else None
            if apply_probe(record, ok, message, check):
                record.last_transition_time = stamp
                transitions.append((record, before))
        return transitions

    def _assume_healthy(self, record: MemberRecord) -> Health | None:
        self.last_probe[record.name] = time.monotonic()
        record.probe_message = "not probed: healthCheck.enabled is false"
        if record.health is Health.HEALTHY:
            return None
        before = record.health
        record.health = Health.HEALTHY
        record.last_transition_time = now_iso()
        return before

    def _emit_transition(self, record: MemberRecord, before: Health) -> None:
        healthy = record.health is Health.HEALTHY
        reason = "MemberHealthy" if healthy else "MemberUnhealthy"
        message = f"member {record.name} ({record.url}) is {record.health.value}"
        message += f" (was {before.value})" + (f": {record.probe_message}" if not healthy else "")
        log.info("pool %s/%s: %s", self.namespace, self.name, message)
        self.emit(self.body, "Normal" if healthy else "Warning", reason, message)

    async def _write_status(
        self, generation: int, problem: Problem | None, endpoint: str,
        proxies: ProxyPods | None = None,
    ) -> None:  # fmt: skip
        records = [self.records[m.name] for m in self.members if m.name in self.records]
        status = build_status(
            generation=generation,
            endpoint=endpoint,
            records=records,
            problem=problem,
            previous=self.last_status,
            now=now_iso(),
            proxies=proxies,
        )
        if not needs_write(self.last_status, status, time.monotonic() - self.last_write):
            return
        await self.kube.patch_pool_status(self.namespace, self.name, status)
        self.last_status = status
        self.last_write = time.monotonic()
        self.writes += 1

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until cancelled; errors are logged and retried with backoff."""
        backoff = 1.0
        while True:
            self.wake.clear()
            try:
                delay = await self.reconcile()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "pool %s/%s: reconcile failed, retrying in %.0fs: %s",
                    self.namespace,
                    self.name,
                    backoff,
                    exc,
                )
                delay, backoff = backoff, min(backoff * 2, 60.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
