"""What one request tells the balancer about where it should go."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoutingKeys:
    """The model a request asks for, its session key, and the chained hashes of its prompt's
    blocks (for cacheAware); each may be absent."""

    model: str | None = None
    affinity_key: str | None = None
    prefix: tuple[int, ...] = ()


NO_KEYS = RoutingKeys()
