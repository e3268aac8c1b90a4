"""Session affinity: rendezvous hashing with bounded loads, plus an optional sticky table.

Every proxy replica orders the members for a key the same way from their names and weights
(rendezvous), so a key lands on the same member everywhere without shared state, each member
is home to its weight's share of the keys, and a member leaving moves only its own keys.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Collection, Sequence

from .member import MemberState
from .rendezvous import hash64, rendezvous_order

MAX_TABLE_ENTRIES = 100_000


def load_bound(candidates: Collection[MemberState], load_factor: float) -> int:
    """Most in-flight requests one member may carry: loadFactor times the mean, rounded up."""
    total = sum(m.in_flight for m in candidates) + 1
    return max(1, math.ceil(load_factor * total / max(1, len(candidates))))


class AffinityTable:
    """Remembers key-to-member choices for ttl seconds (bounded, oldest evicted first)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        name, expires = entry
        if expires < now:
            del self._entries[key]
            return None
        return name

    def put(self, key: str, name: str, now: float) -> None:
        self._entries[key] = (name, now + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_TABLE_ENTRIES:
            self._entries.popitem(last=False)


def pick_affine(
    key: str,
    candidates: Sequence[MemberState],
    load_factor: float,
    preferred: str | None = None,
) -> MemberState | None:
    """The first available member in the key's rendezvous order (the remembered one first)
    whose load is under the bound; None when no candidate qualifies (the caller then uses
    the strategy)."""
    bound = load_bound(candidates, load_factor)
    order = rendezvous_order(candidates, hash64(key))
    if preferred is not None:
        order.sort(key=lambda m: m.name != preferred)  # stable: the rest keep their order
    for member in order:
        if member.in_flight < bound:
            return member
    return None
