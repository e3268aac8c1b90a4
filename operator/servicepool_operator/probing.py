"""Probing members over HTTP: the pass's only reads outside the API (I/O)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from servicepool_api.policies import Capacity
from servicepool_api.probes import fetch, probe_once
from servicepool_api.signals import SignalError, parse_load_report
from servicepool_api.spec import Member, PoolSpec

from .clocks import Clock
from .records import MemberRecord, MemberRecords, ProbeResult, Transition

CAPACITY_TIMEOUT_SECONDS = 2.0


class MemberProbe(Protocol):
    """Probes one member as the spec says; never raises for a member's failure."""

    async def __call__(self, url: str, spec: PoolSpec) -> ProbeResult: ...


async def capacity_snapshot(
    session: aiohttp.ClientSession, url: str, policy: Capacity
) -> dict[str, Any]:
    """The member's own load report, as shown in status."""
    try:
        body = await fetch(session, url + policy.endpoint(), CAPACITY_TIMEOUT_SECONDS)
        report = parse_load_report(body, policy)
    except SignalError as exc:
        return {"error": str(exc)[:200]}
    snapshot: dict[str, Any] = {"queued": report.queued, "running": report.running}
    if report.workers is not None:
        snapshot["workers"] = report.workers
    if report.cache_usage is not None:
        snapshot["cacheUsage"] = report.cache_usage
    return snapshot


class HttpProbe:
    """GETs the health path, then the load report when the spec asks for one."""

    def __init__(
        self, session: aiohttp.ClientSession, timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self.session = session
        self.timer = timer

    async def __call__(self, url: str, spec: PoolSpec) -> ProbeResult:
        """One probe; the latency covers the load report too."""
        check = spec.healthCheck
        started = self.timer()
        ok, message = await probe_once(self.session, url, check.path, check.timeoutSeconds)
        capacity = None
        if ok and spec.capacity is not None:
            capacity = await capacity_snapshot(self.session, url, spec.capacity)
        return ProbeResult(ok, message, (self.timer() - started) * 1e3, capacity)


async def probe_due(
    records: MemberRecords,
    members: list[Member],
    spec: PoolSpec,
    probe: MemberProbe,
    clock: Clock,
) -> list[Transition]:
    """Probe the members that are due, concurrently; returns the health flips."""
    records.follow(members)
    check = spec.healthCheck
    now = clock.monotonic()
    due: list[MemberRecord] = records.due(now, check.intervalSeconds)
    if not due:
        return []
    if not check.enabled:
        return records.assume_healthy(due, now, clock.wall())
    results = await asyncio.gather(*(probe(r.url, spec) for r in due))
    return records.record_probes(list(zip(due, results, strict=True)), check, now, clock.wall())
