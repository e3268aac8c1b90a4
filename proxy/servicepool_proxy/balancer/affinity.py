"""Session affinity: consistent hashing with bounded loads, plus an optional sticky table.

Every proxy replica builds the same ring from the same member names, so a key lands on the
same member everywhere without shared state; a member leaving moves only its own keys.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import OrderedDict
from collections.abc import Collection, Sequence

from .member import MemberState

VIRTUAL_NODES_PER_WEIGHT = 64
MAX_TABLE_ENTRIES = 100_000


def hash64(text: str) -> int:
    """A stable 64-bit hash (Python's own hash() differs between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Members placed on a ring by name, each with virtual nodes in proportion to weight."""

    def __init__(self, members: Sequence[MemberState]) -> None:
        points: list[tuple[int, str]] = []
        for member in members:
            for index in range(VIRTUAL_NODES_PER_WEIGHT * member.weight):
                points.append((hash64(f"{member.name}#{index}"), member.name))
        points.sort()
        self._hashes = [point for point, _ in points]
        self._names = [name for _, name in points]

    def walk(self, key: str) -> list[str]:
        """Member names in ring order starting at the key's position, each once."""
        if not self._names:
            return []
        start = bisect.bisect(self._hashes, hash64(key)) % len(self._names)
        seen: dict[str, None] = {}
        for offset in range(len(self._names)):
            name = self._names[(start + offset) % len(self._names)]
            if name not in seen:
                seen[name] = None
        return list(seen)


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
    ring: HashRing,
    key: str,
    candidates: Sequence[MemberState],
    load_factor: float,
    preferred: str | None = None,
) -> MemberState | None:
    """The first available member for the key (the remembered one first) whose load is under
    the bound; None when no candidate qualifies (the caller then uses the strategy)."""
    by_name = {m.name: m for m in candidates}
    bound = load_bound(candidates, load_factor)
    order = ring.walk(key)
    if preferred is not None:
        order = [preferred, *[name for name in order if name != preferred]]
    for name in order:
        member = by_name.get(name)
        if member is not None and member.in_flight < bound:
            return member
    return None
