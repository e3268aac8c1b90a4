"""What one request tells the balancer about where it should go."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoutingKeys:
    """The model a request asks for, its session key, and the chained hashes of its prompt's
    blocks with the prompt's length in characters (for cacheAware); each may be absent."""

    model: str | None = None
    affinity_key: str | None = None
    prefix: tuple[int, ...] = ()
    prompt_chars: int = 0


NO_KEYS = RoutingKeys()
