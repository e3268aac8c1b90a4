"""Strategies tokens, speed and adaptive: what LLM members' answers say about them."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from servicepool_api.llm_policies import Adaptive, Speed
from servicepool_api.policies import Capacity

from .member import MemberState
from .strategies import (
    LATENCY_FORGET_SECONDS,
    LATENCY_HALF_LIFE_SECONDS,
    least_in_flight,
    member_load,
    weighted_random,
)


def lowest_score(
    candidates: Sequence[MemberState], score: Callable[[MemberState], float]
) -> MemberState:
    """The member with the lowest score; ties go to the least in flight (then in turn)."""
    scores = {m.name: score(m) for m in candidates}
    best = min(scores.values())
    tied = [m for m in candidates if scores[m.name] == best]
    return tied[0] if len(tied) == 1 else least_in_flight(tied)


def fewest_tokens(
    candidates: Sequence[MemberState], now: float, window_seconds: float
) -> MemberState:
    """The fewest tokens (prompt + completion) in the window per unit of weight.

    Usage arrives when an answer ends, so requests still in flight count as the pool's mean
    tokens per request each: a member does not take every new request while its first
    answers are still running.
    """
    totals = {m.name: m.stats.token_window.totals(now, window_seconds) for m in candidates}
    tokens = sum(t for t, _ in totals.values())
    requests = sum(r for _, r in totals.values())
    per_request = tokens / requests if requests else 0.0
    return lowest_score(
        candidates, lambda m: (totals[m.name][0] + m.in_flight * per_request) / m.weight
    )


def speed_known(member: MemberState, now: float, policy: Speed) -> bool:
    """True when the member's tokens/s was measured recently enough to trust."""
    stats = member.stats
    return stats.tokens_per_second is not None and now - stats.speed_at <= policy.staleAfterSeconds


def fastest(
    candidates: Sequence[MemberState], now: float, policy: Speed, rng: random.Random
) -> MemberState:
    """The best recent decode tokens/s each new request would get: measured tokens/s times
    weight, shared with what is in flight there.

    Exploration: a member never measured, or measured longer than staleAfterSeconds ago, gets
    the next request while it has none in flight (a recovered member is measured again,
    one request at a time); and explorationRatio of requests go to a random member.
    """
    unknown = [m for m in candidates if not speed_known(m, now, policy)]
    idle_unknown = [m for m in unknown if m.in_flight == 0]
    if idle_unknown:
        return idle_unknown[0]
    if len(candidates) > 1 and rng.random() < policy.explorationRatio:
        return weighted_random(candidates, rng)
    known = [m for m in candidates if m not in unknown]
    if not known:
        return least_in_flight(candidates)
    return lowest_score(
        known,
        lambda m: -(m.stats.tokens_per_second or 0.0) * m.weight / (m.in_flight + 1),
    )


def typical(values: list[float]) -> float:
    """The lower median, or 0 without values."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2] if ordered else 0.0


def answer_time(member: MemberState, now: float) -> tuple[float, float] | None:
    """How long the member took to start answering, and when that was last measured: its
    time to first token (the first body chunk with content) when measured, else its latency
    to the answer's headers; None when not measured within LATENCY_FORGET_SECONDS."""
    stats = member.stats
    if stats.first_token is not None and now - stats.first_token_at <= LATENCY_FORGET_SECONDS:
        return stats.first_token, stats.first_token_at
    if member.ewma_latency is not None and now - member.last_latency_at <= LATENCY_FORGET_SECONDS:
        return member.ewma_latency, member.last_latency_at
    return None


def drifted(measured: dict[str, tuple[float, float] | None], now: float) -> dict[str, float | None]:
    """Each (value, measured at) drifting back to the pool's typical value as it ages (half
    of the way every LATENCY_HALF_LIFE_SECONDS): a member that was slow once and then got no
    requests is not shunned until it is forgotten."""
    usual = typical([found[0] for found in measured.values() if found is not None])
    values: dict[str, float | None] = {}
    for name, found in measured.items():
        if found is None:
            values[name] = None
            continue
        keep = 0.5 ** (max(0.0, now - found[1]) / LATENCY_HALF_LIFE_SECONDS)
        values[name] = keep * found[0] + (1.0 - keep) * usual
    return values


def answer_times(candidates: Sequence[MemberState], now: float) -> dict[str, float | None]:
    """Each member's answer time, drifting back to the typical one as it ages."""
    return drifted({m.name: answer_time(m, now) for m in candidates}, now)


def output_speeds(candidates: Sequence[MemberState], now: float) -> dict[str, float | None]:
    """Each member's decode tokens/s, drifting back to the typical one as it ages; None when
    not measured within LATENCY_FORGET_SECONDS."""
    measured: dict[str, tuple[float, float] | None] = {}
    for member in candidates:
        speed, at = member.stats.tokens_per_second, member.stats.speed_at
        fresh = bool(speed) and now - at <= LATENCY_FORGET_SECONDS
        measured[member.name] = (speed, at) if speed and fresh else None
    return drifted(measured, now)


def adaptive_score(
    candidates: Sequence[MemberState], now: float, policy: Adaptive,
    capacity: Capacity | None = None,
) -> dict[str, float]:  # fmt: skip
    """Each member's score (lower is better): the weighted sum of
    load / (mean load + 1), how far its answer time exceeds the typical one (answer time /
    typical - 1, at least 0), how far it is slower than typical (typical tokens/s / its
    tokens/s - 1, at least 0) and its recent error rate. Being quicker than typical earns
    nothing, so one quick answer does not draw every request; an unmeasured member scores 0
    on those terms, so it gets measured; answer times and speeds drift back to typical as
    they age, so a member slow once is tried again."""
    times = answer_times(candidates, now)
    latency = typical([t for t in times.values() if t is not None])
    loads = {m.name: member_load(m, now, capacity) for m in candidates}
    mean_load = sum(loads.values()) / len(candidates)
    speeds = output_speeds(candidates, now)
    speed = typical([s for s in speeds.values() if s is not None])
    scores = {}
    for member in candidates:
        own_speed = speeds[member.name]
        terms = (
            max(0.0, (times[member.name] or 0.0) / latency - 1.0) if latency > 0 else 0.0,
            loads[member.name] / (mean_load + 1.0),
            max(0.0, speed / own_speed - 1.0) if own_speed and speed else 0.0,
            member.stats.recent_error_rate(now),
        )
        weights = (policy.latencyWeight, policy.loadWeight, policy.speedWeight,
                   policy.errorWeight)  # fmt: skip
        scores[member.name] = sum(w * t for w, t in zip(weights, terms, strict=True))
    return scores


def best_adaptive(
    candidates: Sequence[MemberState], now: float, policy: Adaptive,
    capacity: Capacity | None = None,
) -> MemberState:  # fmt: skip
    """The member with the lowest adaptive score."""
    scores = adaptive_score(candidates, now, policy, capacity)
    return lowest_score(candidates, lambda m: scores[m.name])
