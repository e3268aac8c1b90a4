"""Probing members over HTTP: the pass's only reads outside the API (I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

import aiohttp

from servicepool_api.probes import probe_once
from servicepool_api.spec import Member, PoolSpec

from .clocks import Clock
from .records import MemberRecord, MemberRecords, ProbeResult, Transition


class MemberProbe(Protocol):
    """Probes one member as the spec says; never raises for a member's failure."""

    def __call__(self, url: str, spec: PoolSpec) -> Awaitable[ProbeResult]: ...


class HttpProbe:
    """GETs the member's health path."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(self, url: str, spec: PoolSpec) -> ProbeResult:
        """One probe."""
        check = spec.healthCheck
        ok, message = await probe_once(self.session, url, check.path, check.timeoutSeconds)
        return ProbeResult(ok, message)


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
