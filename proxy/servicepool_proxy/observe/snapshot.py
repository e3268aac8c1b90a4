"""What the live page shows: the pool, each member, the queue and the last decisions, as a
pure function of the pool's state (plus request rates measured between two looks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from servicepool_proxy.balancer.decisions import Decision
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.observe.admin import capacity_status

RATE_WINDOW_SECONDS = 1.0  # rates are measured over at least this long
DECISIONS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class PoolView:
    """The parts of the live pool the page shows (read from PoolRuntime)."""

    name: str
    strategy: str
    generation: int
    members: Sequence[MemberState]
    routable: int
    waiting: int
    max_waiting: int
    queue_timeout: float
    explain: bool
    decisions: Iterable[Decision]


@dataclass(slots=True)
class RateMeter:
    """Requests/s and errors/s of each member, from its counters at two moments."""

    rates: dict[str, tuple[float, float]] = field(default_factory=dict)
    _seen: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    def update(self, members: Sequence[MemberState], now: float) -> dict[str, tuple[float, float]]:
        """Each member's (requests/s, errors/s); a rate moves once a window has passed."""
        for member in members:
            seen = self._seen.get(member.name)
            if seen is None or member.requests < seen[1]:  # new, or its counters restarted
                self._seen[member.name] = (now, member.requests, member.failures)
                self.rates.setdefault(member.name, (0.0, 0.0))
                continue
            elapsed = now - seen[0]
            if elapsed >= RATE_WINDOW_SECONDS:
                self.rates[member.name] = (
                    (member.requests - seen[1]) / elapsed, (member.failures - seen[2]) / elapsed
                )  # fmt: skip
                self._seen[member.name] = (now, member.requests, member.failures)
        names = {m.name for m in members}
        for gone in set(self._seen) - names:
            self._seen.pop(gone)
            self.rates.pop(gone, None)
        return self.rates


def state_reason(member: MemberState, now: float) -> str:
    """Why the member is in its state, in a few words ("" when Healthy with nothing to say)."""
    state = member.state_label(now)
    if state == "Ejected":
        return f"ejected for {member.ejected_until - now:.1f}s more ({member.last_error})"
    if state == "RateLimited":
        return f"answered 429; cooling down {member.rate_limited_until - now:.1f}s more"
    if state == "HalfOpen":
        return "back from ejection: one trial request decides"
    if state == "Unhealthy":
        return member.probe_message or "health probes fail"
    if state == "AuthFailed":
        recheck = max(0.0, member.auth_recheck_at - now)
        return f"{member.last_error}; re-checked in {recheck:.1f}s, or at once on a new credential"
    if member.saturated():
        return f"at its maxInFlight ({member.max_in_flight})"
    return ""


def quantiles(summary: dict[str, float] | None) -> dict[str, float] | None:
    """p50 and p99 in ms of a window's summary."""
    return None if summary is None else {"p50": summary["p50"], "p99": summary["p99"]}


def member_snapshot(member: MemberState, now: float, rate: tuple[float, float]) -> dict[str, Any]:
    """One member's row on the page."""
    stats = member.stats
    return {
        "name": member.name,
        "url": member.url,
        "state": member.state_label(now),
        "why": state_reason(member, now),
        "priority": member.priority,
        "weight": member.weight,
        "inFlight": member.in_flight,
        "maxInFlight": member.max_in_flight,
        "requests": member.requests,
        "requestsPerSecond": round(rate[0], 2),
        "errors": member.failures,
        "errorsPerSecond": round(rate[1], 2),
        "lastError": member.last_error or None,
        "latencyMs": quantiles(stats.latency.summary()),
        "ttftMs": quantiles(stats.ttft.summary()),
        "tokensPerSecond": None
        if stats.tokens_per_second is None
        else round(stats.tokens_per_second, 2),
        # Only cacheAware tracks prompt prefixes; None until a prompt was sent.
        "prefixHitRate": member.prefixes.hit_rate,
        "prefixReportedHitRate": member.prefixes.realised_hit_rate,
        "prefixesHeld": member.prefixes.families if member.prefixes.lookups else None,
        "cacheTokens": member.cache_size.tokens if member.cache_size is not None else None,
        "capacity": capacity_status(member, now),
    }


def pool_snapshot(
    view: PoolView, now: float, rates: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    """Everything the live page shows, as JSON."""
    return {
        "pool": view.name,
        "strategy": view.strategy,
        "generation": view.generation,
        "routableMembers": view.routable,
        "totalMembers": len(view.members),
        "queue": {
            "waiting": view.waiting,
            "maxWaiting": view.max_waiting,
            "timeoutSeconds": view.queue_timeout,
        },
        "members": [member_snapshot(m, now, rates.get(m.name, (0.0, 0.0))) for m in view.members],
        "explain": view.explain,
        "decisions": [d.to_json() for d in list(view.decisions)[-DECISIONS_SHOWN:]][::-1],
    }
