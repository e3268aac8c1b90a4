"""One loop per pool: read the spec, probe the members, plan, apply; again after a while."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from servicepool_api.spec import Member, PoolSpec

from . import render
from .applying import RESYNC_SECONDS, Applier, PoolWrites
from .clocks import SYSTEM_CLOCK, Clock
from .membership import PodInfo
from .planning import Plan, PlanInputs, PoolRef, generation_of, plan_pool, read_spec
from .probing import MemberProbe, probe_due
from .records import MemberRecords, Transition, until_next_round
from .reporting import ANY_GENERATION, EventSink, Reporter
from .wake_index import match_labels, service_members

log = logging.getLogger("servicepool.operator")

# Seconds between passes while the pool never had a valid spec.
INVALID_SPEC_RETRY_SECONDS = 30.0
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the pool loop reads of the cluster: Services and Pods of its namespace, and the
    Pods of one pool (its proxies) by (namespace, pool)."""

    services: Callable[[str], Iterable[str]]
    pods: Callable[[str], Iterable[PodInfo]]
    proxy_pods: Callable[[str, str], Iterable[PodInfo]]


class PoolController:
    """Keeps one ServicePool's objects, health and status true."""

    def __init__(
        self,
        kube: PoolWrites,
        cluster: ClusterView,
        probe: MemberProbe,
        emit: EventSink,
        body: Mapping[str, Any],
        proxy_defaults: render.ProxyDefaults = render.OPERATOR_DEFAULTS,
        clock: Clock = SYSTEM_CLOCK,
        first_passes: asyncio.Semaphore | None = None,
    ) -> None:
        self.kube = kube
        # Shared by every pool: first passes take turns in order of arrival (a semaphore's
        # waiters are served first come, first served), so a thousand new pools become Ready
        # one batch after another rather than all at the end.
        self.first_passes = first_passes
        self.cluster = cluster
        self.probe = probe
        self.proxy_defaults = proxy_defaults
        self.clock = clock
        self.body: Mapping[str, Any] = body
        self.pool = PoolRef.of(body)
        self.wake = asyncio.Event()
        self.spec: PoolSpec | None = None  # the last valid spec, and its members
        self.members: list[Member] = []
        previous = dict(body.get("status") or {})
        self.records = MemberRecords(previous.get("members") or [])
        self.applier = Applier(kube, self.pool, previous)
        self.reporter = Reporter(emit, self.pool, lambda: self.body)
        self.clean = False  # the last full pass put everything in place

    @property
    def uid(self) -> str:
        """The pool's uid: a new one means a new pool under the same name."""
        return self.pool.uid

    def update(self, body: Mapping[str, Any]) -> None:
        """A newer version of the pool arrived from the watch; a spec change wakes the loop.

        Status-only updates (mostly our own writes) need no new pass.
        """
        old_generation = self.body["metadata"].get("generation")
        self.body = body
        if body["metadata"].get("generation") != old_generation:
            self.wake.set()

    async def reconcile(self, woken: bool = True) -> float:
        """Run one pass; returns seconds until the next one.

        A pass that nothing woke (only the probe timer) after a clean pass only probes: unless
        a member flips or the owned objects are due for their resync, its plan would be the
        last one again. Spec changes and the Services and Pods a pool uses all wake it.
        """
        if woken or not self._settled():
            return await self._full_pass(None)
        transitions = await self._probe()
        if transitions:
            return await self._full_pass(transitions)
        return self._next_delay()

    def _settled(self) -> bool:
        applied_at = self.applier.applied_at
        return (
            self.clean
            and applied_at is not None
            and self.clock.monotonic() - applied_at < RESYNC_SECONDS
        )

    def _next_delay(self) -> float:
        if self.spec is None:
            return INVALID_SPEC_RETRY_SECONDS
        return until_next_round(self.clock.monotonic(), self.spec.healthCheck.intervalSeconds)

    async def _full_pass(self, transitions: list[Transition] | None) -> float:
        """Read the spec and the cluster, probe what is due, plan and apply."""
        self.clean = False
        generation = generation_of(self.body)
        namespace = self.pool.namespace
        # The namespace's Services and Pods only when the spec names any: with a thousand
        # pools in a namespace, copying them every pass would cost more than the pass.
        raw = self.body.get("spec") or {}
        services = self.cluster.services(namespace) if service_members(raw) else ()
        pods = list(self.cluster.pods(namespace)) if match_labels(raw) is not None else []
        reading = read_spec(self.body, services, pods)
        if reading.spec is not None:
            self.spec, self.members = reading.spec, reading.members
        if reading.problem is not None:
            self.reporter.problem(generation, reading.problem)
        if transitions is None:
            transitions = await self._probe()
        inputs = PlanInputs(
            pool=self.pool,
            generation=generation,
            spec=self.spec,
            members=self.members,
            spec_problem=reading.problem,
            records=self.records.listed(self.members),
            unhealthy=self.records.unhealthy(),
            proxy_pods=list(self.cluster.proxy_pods(namespace, self.pool.name)),
            previous_status=self.applier.written_status,
            now=self.clock.wall(),
            defaults=self.proxy_defaults,
            policy_api_version=self.kube.policy_api_version,
        )
        clean = await self._apply(inputs, plan_pool(inputs), transitions)
        self.clean = clean and reading.problem is None
        return self._next_delay()

    async def _probe(self) -> list[Transition]:
        if self.spec is None:
            return []
        return await probe_due(self.records, self.members, self.spec, self.probe, self.clock)

    async def _apply(self, inputs: PlanInputs, plan: Plan, transitions: list[Transition]) -> bool:
        """Write the plan; a conflict found on the way goes into the status and an Event.

        True when all of it is in place (no conflict, no problem with the config)."""
        clean = plan.objects is not None
        if plan.objects is not None:
            now = self.clock.monotonic()
            conflict = await self.applier.apply_objects(plan.objects, inputs.generation, now)
            if conflict is not None:
                self.reporter.problem(inputs.generation, conflict)
                plan = plan_pool(replace(inputs, conflict=conflict))
                clean = False
        for transition in transitions:
            self.reporter.transition(transition)
        if plan.config is not None:
            problem = await self.applier.apply_config(plan.config)
            if problem is not None:
                self.reporter.problem(ANY_GENERATION, problem)
                clean = False
        if plan.proxies is not None:
            self.reporter.proxies(plan.proxies)
        await self.applier.write_status(plan.status)
        return clean

    async def _first_pass(self) -> float:
        if self.first_passes is None:
            return await self.reconcile()
        async with self.first_passes:
            return await self.reconcile()

    async def run(self) -> None:
        """Reconcile until cancelled; errors are logged and retried with backoff."""
        backoff = BACKOFF_FIRST_SECONDS
        first, woken = True, True
        while True:
            self.wake.clear()
            try:
                delay = await (self._first_pass() if first else self.reconcile(woken))
                first = False
                backoff = BACKOFF_FIRST_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pool %s/%s: reconcile failed, retrying in %.0fs: %s",
                            self.pool.namespace, self.pool.name, backoff, exc)  # fmt: skip
                delay, backoff = backoff, min(backoff * 2, BACKOFF_MAX_SECONDS)
            await self.clock.wait(self.wake, delay)
            woken = self.wake.is_set()
