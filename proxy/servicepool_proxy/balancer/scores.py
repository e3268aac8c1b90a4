"""The scores a strategy ranks candidates by (lower is better), for explanations (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from servicepool_api.llm_policies import Adaptive, CacheAware
from servicepool_api.spec import PoolSpec, Strategy

from .cache_aware import prefill_costs
from .keys import RoutingKeys
from .llm_strategies import adaptive_score
from .member import MemberState
from .placement import Placement
from .strategies import latency_scores, load_score, member_load


def strategy_scores(
    spec: PoolSpec, candidates: Sequence[MemberState], now: float, keys: RoutingKeys,
    tokens_per_block: float = 0.0,
) -> dict[str, float] | None:  # fmt: skip
    """Each candidate's score under the pool's strategy; None for strategies that do not
    score (round-robin, weighted round-robin, random, tokens, speed) and for cacheAware
    without a prompt (whose blocks hold `tokens_per_block` tokens, as learned)."""
    strategy, capacity = spec.strategy, spec.capacity
    if not candidates:
        return None
    if strategy in (Strategy.LEAST_IN_FLIGHT, Strategy.POWER_OF_TWO_CHOICES):
        return {m.name: load_score(m) for m in candidates}
    if strategy is Strategy.LATENCY:
        scores = latency_scores(candidates, now)
        return {m.name: score for m, score in zip(candidates, scores, strict=True)}
    if strategy is Strategy.CAPACITY and capacity is not None:
        return {m.name: member_load(m, now, capacity) for m in candidates}
    if strategy is Strategy.CACHE_AWARE and keys.prefix:
        policy = spec.cacheAware or CacheAware()
        placement = Placement(shared=spec.proxy.balancers() > 1)
        return prefill_costs(
            candidates, keys.prefix, now, policy, capacity, tokens_per_block, placement
        )[1]
    if strategy is Strategy.ADAPTIVE:
        return adaptive_score(candidates, now, spec.adaptive or Adaptive(), capacity)
    return None
