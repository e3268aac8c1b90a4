"""What one request tells the balancer about where it should go."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoutingKeys:
    """The model a request asks for, its session key, the chained hashes of its prompt's
    blocks with the prompt's length in characters (for cacheAware), and its request kind
    (a RequestKind value, set while some member says which kinds it serves); each may be
    absent."""

    model: str | None = None
    affinity_key: str | None = None
    prefix: tuple[int, ...] = ()
    prompt_chars: int = 0
    kind: str | None = None

    def wait_group(self) -> tuple[str | None, str | None]:
        """What requests that can use the same members share, for the wait queue: the model
        and the kind."""
        return (self.model, self.kind)


NO_KEYS = RoutingKeys()
