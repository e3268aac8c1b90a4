"""The scores a strategy ranks candidates by (lower is better), for explanations (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from servicepool_api.llm_policies import Adaptive, CacheAware
from servicepool_api.spec import PoolSpec, Strategy

from .cache_aware import prefill_costs
from .keys import RoutingKeys
from .llm_strategies import adaptive_score
from .member import MemberState
from .strategies import latency_estimate, load_score, reported_load


def strategy_scores(
    spec: PoolSpec, candidates: Sequence[MemberState], now: float, keys: RoutingKeys
) -> dict[str, float] | None:
    """Each candidate's score under the pool's strategy; None for strategies that do not
    score (round-robin, weighted round-robin, random, tokens, speed) and for cacheAware
    without a prompt."""
    strategy, capacity = spec.strategy, spec.capacity
    if not candidates:
        return None
    if strategy in (Strategy.LEAST_IN_FLIGHT, Strategy.POWER_OF_TWO_CHOICES):
        return {m.name: load_score(m) for m in candidates}
    if strategy is Strategy.LATENCY:
        known = sorted(m.ewma_latency for m in candidates if m.ewma_latency is not None)
        typical = known[(len(known) - 1) // 2] if known else 0.0
        return {
            m.name: latency_estimate(m, typical, now) * (m.in_flight + 1) / m.weight
            for m in candidates
        }
    if strategy is Strategy.CAPACITY and capacity is not None:
        scores = {}
        for member in candidates:
            load = reported_load(member, now, capacity)
            scores[member.name] = (member.in_flight if load is None else load) / member.weight
        return scores
    if strategy is Strategy.CACHE_AWARE and keys.prefix:
        policy = spec.cacheAware or CacheAware()
        return prefill_costs(candidates, keys.prefix, now, policy, capacity)[1]
    if strategy is Strategy.ADAPTIVE:
        return adaptive_score(candidates, now, spec.adaptive or Adaptive(), capacity)
    return None
