"""Selection strategies: each picks one member from a non-empty list of available ones."""

from __future__ import annotations

import random
from collections.abc import Sequence

from servicepool_api.policies import Capacity

from .member import MemberState

# A latency estimate older than this many seconds counts half as much as a fresh one.
LATENCY_HALF_LIFE_SECONDS = 10.0
# An estimate older than this is no estimate: the member is measured again.
LATENCY_FORGET_SECONDS = 6 * LATENCY_HALF_LIFE_SECONDS


class RoundRobinCursor:
    """The shared position of the round-robin strategy."""

    __slots__ = ("position",)

    def __init__(self) -> None:
        self.position = 0

    def advance(self) -> int:
        """Return the current position and move on."""
        position = self.position
        self.position = position + 1
        return position


def load_score(member: MemberState) -> float:
    """In-flight requests per unit of weight: lower means more room."""
    return member.in_flight / member.weight


def round_robin(candidates: Sequence[MemberState], cursor: RoundRobinCursor) -> MemberState:
    """Each available member in turn, ignoring weight."""
    return candidates[cursor.advance() % len(candidates)]


def smooth_weighted_round_robin(candidates: Sequence[MemberState]) -> MemberState:
    """nginx's smooth weighted round-robin: weights respected, picks interleaved."""
    total = 0
    best = candidates[0]
    for member in candidates:
        member.current_weight += member.weight
        total += member.weight
        if member.current_weight > best.current_weight:
            best = member
    best.current_weight -= total
    return best


def weighted_random(candidates: Sequence[MemberState], rng: random.Random) -> MemberState:
    """A random member, each with probability proportional to its weight."""
    if len(candidates) == 1:
        return candidates[0]
    return rng.choices(candidates, weights=[m.weight for m in candidates])[0]


def least_in_flight(candidates: Sequence[MemberState]) -> MemberState:
    """The member with the fewest in-flight requests per weight.

    Ties (common at light load) go by smooth weighted round-robin, so weights still
    shape the split when nothing is queued.
    """
    tied: list[MemberState] = []
    best_score = 0.0
    for member in candidates:
        score = load_score(member)
        if not tied or score < best_score:
            best_score, tied = score, [member]
        elif score == best_score:
            tied.append(member)
    return tied[0] if len(tied) == 1 else smooth_weighted_round_robin(tied)


def power_of_two_choices(candidates: Sequence[MemberState], rng: random.Random) -> MemberState:
    """Two members drawn by weight; the less loaded of the two wins."""
    if len(candidates) == 1:
        return candidates[0]
    first = weighted_random(candidates, rng)
    others = [m for m in candidates if m is not first]
    second = weighted_random(others, rng)
    first_score, second_score = load_score(first), load_score(second)
    if first_score == second_score:
        return first if rng.random() < 0.5 else second
    return first if first_score < second_score else second


def latency_estimate(member: MemberState, fallback: float, now: float) -> float:
    """The member's latency average, drifting back to the pool's typical value when stale.

    Without the drift a member that was slow once would never be tried again; past
    LATENCY_FORGET_SECONDS the estimate is dropped and the member counts as unmeasured.
    """
    age = max(0.0, now - member.last_latency_at)
    if member.ewma_latency is None or age > LATENCY_FORGET_SECONDS:
        return 0.0
    keep = 0.5 ** (age / LATENCY_HALF_LIFE_SECONDS)
    return keep * member.ewma_latency + (1.0 - keep) * fallback


def latency_scores(candidates: Sequence[MemberState], now: float) -> list[float]:
    """Peak-EWMA style, per candidate: expected latency times (in-flight + 1), per weight.

    Members without a latency sample score zero so they get measured first; stale
    estimates drift to the lower median of the pool's.
    """
    known = sorted(m.ewma_latency for m in candidates if m.ewma_latency is not None)
    typical = known[(len(known) - 1) // 2] if known else 0.0  # the lower median
    return [
        latency_estimate(member, typical, now) * (member.in_flight + 1) / member.weight
        for member in candidates
    ]


def lowest_latency(candidates: Sequence[MemberState], now: float) -> MemberState:
    """The member with the lowest latency score (the first of equals)."""
    scores = latency_scores(candidates, now)
    return candidates[scores.index(min(scores))]


def reported_load(member: MemberState, now: float, policy: Capacity) -> float | None:
    """Queued + running as the member last reported, corrected by how our own in-flight
    count moved since (requests sent since the report add, ours that finished subtract).

    None when the report is missing or stale.
    """
    if not member.report_fresh(now, policy.staleAfterSeconds):
        return None
    moved = member.in_flight - member.in_flight_at_report
    return max(0.0, member.reported_queued + member.reported_running + moved)


def is_full(member: MemberState, now: float, policy: Capacity) -> bool:
    """True when a fresh report says the member has no free capacity."""
    load = reported_load(member, now, policy)
    if load is None:
        return False
    if member.reported_workers is not None and load >= member.reported_workers:
        return True
    usage = member.reported_cache_usage
    return usage is not None and usage >= policy.maxCacheUsage


def member_load(member: MemberState, now: float, capacity: Capacity | None) -> float:
    """Reported queued + running with a fresh capacity report, in-flight otherwise; per weight."""
    load = reported_load(member, now, capacity) if capacity is not None else None
    return (member.in_flight if load is None else load) / member.weight


def least_reported_load(
    candidates: Sequence[MemberState], now: float, policy: Capacity
) -> MemberState:
    """The member with the least reported load per weight; members that report no free
    capacity are skipped while others have room; a stale or missing report falls back to
    the proxy's own in-flight count. Ties go by smooth weighted round-robin."""
    roomy = [m for m in candidates if not is_full(m, now, policy)] or list(candidates)
    scores = [member_load(m, now, policy) for m in roomy]
    best_score = min(scores)
    tied = [m for m, score in zip(roomy, scores, strict=True) if score == best_score]
    return tied[0] if len(tied) == 1 else smooth_weighted_round_robin(tied)
