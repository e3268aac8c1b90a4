"""Each strategy bound to its state and settings: a picker takes (candidates, now, keys)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from servicepool_api.llm_policies import Adaptive, CacheAware, Speed, TokenWindow
from servicepool_api.policies import Capacity
from servicepool_api.spec import PoolSpec, Strategy

from .cache_aware import pick_cache_aware
from .cache_model import CharsPerToken
from .keys import NO_KEYS, RoutingKeys
from .llm_strategies import best_adaptive, fastest, fewest_tokens
from .member import MemberState
from .placement import Placement
from .strategies import (
    RoundRobinCursor,
    least_in_flight,
    least_reported_load,
    lowest_latency,
    power_of_two_choices,
    round_robin,
    smooth_weighted_round_robin,
    weighted_random,
)


class Picker(Protocol):
    """Picks one member from a non-empty list of available ones for a request."""

    def __call__(
        self, candidates: Sequence[MemberState], now: float, keys: RoutingKeys = NO_KEYS, /
    ) -> MemberState: ...


@dataclass(frozen=True, slots=True)
class Tuning:
    """The strategies' settings from the spec (each block's defaults when unset), the
    pool's learned prompt characters per token (cacheAware), and how many processes balance
    the pool."""

    capacity: Capacity | None = None
    cache_aware: CacheAware = field(default_factory=CacheAware)
    tokens: TokenWindow = field(default_factory=TokenWindow)
    speed: Speed = field(default_factory=Speed)
    adaptive: Adaptive = field(default_factory=Adaptive)
    chars_per_token: CharsPerToken = field(default_factory=CharsPerToken)
    balancers: int = 1  # processes balancing the pool, each on its own (replicas x workers)

    @classmethod
    def of(cls, spec: PoolSpec, chars_per_token: CharsPerToken | None = None) -> Tuning:
        return cls(
            spec.capacity,
            spec.cacheAware or CacheAware(),
            spec.tokens or TokenWindow(),
            spec.speed or Speed(),
            spec.adaptive or Adaptive(),
            chars_per_token or CharsPerToken(),
            spec.proxy.balancers(),
        )


def make_picker(
    strategy: Strategy,
    rng: random.Random,
    capacity: Capacity | None = None,
    tuning: Tuning | None = None,
) -> Picker:
    """Bind a strategy to its state and settings (`capacity` is tuning.capacity's shortcut)."""
    tuning = tuning or Tuning(capacity)
    capacity = tuning.capacity
    if strategy is Strategy.ROUND_ROBIN:
        cursor = RoundRobinCursor()
        return lambda candidates, now, keys=NO_KEYS: round_robin(candidates, cursor)
    if strategy is Strategy.WEIGHTED_ROUND_ROBIN:
        return lambda candidates, now, keys=NO_KEYS: smooth_weighted_round_robin(candidates)
    if strategy is Strategy.RANDOM:
        return lambda candidates, now, keys=NO_KEYS: weighted_random(candidates, rng)
    if strategy is Strategy.LEAST_IN_FLIGHT:
        return lambda candidates, now, keys=NO_KEYS: least_in_flight(candidates)
    if strategy is Strategy.POWER_OF_TWO_CHOICES:
        return lambda candidates, now, keys=NO_KEYS: power_of_two_choices(candidates, rng)
    if strategy is Strategy.LATENCY:
        return lambda candidates, now, keys=NO_KEYS: lowest_latency(candidates, now)
    if strategy is Strategy.CAPACITY:
        policy = capacity or Capacity()
        return lambda candidates, now, keys=NO_KEYS: least_reported_load(candidates, now, policy)
    return _llm_picker(strategy, rng, tuning)


def _llm_picker(strategy: Strategy, rng: random.Random, tuning: Tuning) -> Picker:
    capacity = tuning.capacity
    if strategy is Strategy.CACHE_AWARE:
        cache_aware, chars = tuning.cache_aware, tuning.chars_per_token
        placement = Placement(shared=tuning.balancers > 1)
        return lambda candidates, now, keys=NO_KEYS: pick_cache_aware(
            candidates, keys.prefix, now, cache_aware, capacity,
            cache_aware.blockChars / chars.value, placement,
        )  # fmt: skip
    if strategy is Strategy.TOKENS:
        window = tuning.tokens.windowSeconds
        return lambda candidates, now, keys=NO_KEYS: fewest_tokens(candidates, now, window)
    if strategy is Strategy.SPEED:
        speed = tuning.speed
        return lambda candidates, now, keys=NO_KEYS: fastest(candidates, now, speed, rng)
    if strategy is Strategy.ADAPTIVE:
        adaptive = tuning.adaptive
        return lambda candidates, now, keys=NO_KEYS: best_adaptive(
            candidates, now, adaptive, capacity
        )
    raise ValueError(f"unknown strategy {strategy!r}")
