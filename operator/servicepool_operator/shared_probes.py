"""One probe per distinct member address, shared by every pool that has the member (I/O).

Pools keep probing on their own schedules (`probe_due`, the pure policy, is unchanged); this
layer sits under them as their MemberProbe. Calls for the same target (URL, health path and
timeout) share one HTTP request: a call joins the probe in flight, or takes the last result
while it is younger than half the caller's interval. A pool's passes are at least
DUE_SHARE of an interval apart, so every pass still counts a new probe; and pool loops run on
a shared grid (`until_next_round`), so the pools that have a member mostly ask at once and get
a result of that moment. At most `limit` probes are in flight at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from servicepool_api.spec import PoolSpec

from .clocks import SYSTEM_CLOCK, Clock
from .probing import MemberProbe
from .records import ProbeResult

# A result is shared while it is younger than this share of the asking pool's interval.
FRESH_SHARE = 0.5
PROBE_CONCURRENCY = 100
PRUNE_EVERY_SECONDS = 60.0

Target = tuple[str, str, float]  # (url, health path, timeout)


@dataclass(frozen=True, slots=True)
class Taken:
    """A probe result and when its probe started (monotonic seconds)."""

    at: float
    result: ProbeResult
    keep: float  # how long the pool that asked for it may share it


class SharedProbes:
    """A MemberProbe that probes each target once for all the pools that ask at once."""

    def __init__(
        self, probe: MemberProbe, limit: int = PROBE_CONCURRENCY, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.probe = probe
        self.clock = clock
        self.slots = asyncio.Semaphore(limit)
        self.in_flight: dict[Target, asyncio.Future[ProbeResult]] = {}
        self.last: dict[Target, Taken] = {}
        self.probes = 0  # HTTP probes made (the rest were shared)
        self.pruned_at = clock.monotonic()

    def __call__(self, url: str, spec: PoolSpec) -> asyncio.Future[ProbeResult]:
        """The target's result: fresh enough from before, in flight, or a new probe.

        A future rather than a coroutine: a pool gathering its members' probes then needs
        no task per member (a thousand pools ask every interval, most for a result at hand).
        """
        check = spec.healthCheck
        target = (url, check.path, check.timeoutSeconds)
        now = self.clock.monotonic()
        taken = self.last.get(target)
        if taken is not None and now - taken.at < FRESH_SHARE * check.intervalSeconds:
            answer: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
            answer.set_result(taken.result)
            return answer
        running = self.in_flight.get(target)
        if running is None:
            running = asyncio.ensure_future(self._probe(target, url, spec))
            self.in_flight[target] = running
        # One pool leaving (cancelled) does not cancel the probe the others wait for.
        return asyncio.shield(running)

    async def _probe(self, target: Target, url: str, spec: PoolSpec) -> ProbeResult:
        try:
            async with self.slots:
                started = self.clock.monotonic()
                self.probes += 1
                result = await self.probe(url, spec)
            keep = FRESH_SHARE * spec.healthCheck.intervalSeconds
            self.last[target] = Taken(started, result, keep)
            self._prune(started)
            return result
        finally:
            self.in_flight.pop(target, None)

    def _prune(self, now: float) -> None:
        """Drop results nobody may share any more (members that left, pools deleted)."""
        if now - self.pruned_at < PRUNE_EVERY_SECONDS:
            return
        self.pruned_at = now
        for target in [t for t, taken in self.last.items() if now - taken.at >= taken.keep]:
            del self.last[target]
