"""Weighted rendezvous (highest random weight) hashing: each key's order of members, the same
in every proxy replica without shared state, with each member first for a share of the keys
in proportion to its weight; a member leaving moves only the keys it was first for."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from .member import MemberState


def hash64(text: str) -> int:
    """A stable 64-bit hash (Python's own hash() differs between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def rendezvous_score(name: str, weight: float, key: int) -> float:
    """Weighted rendezvous score of a member for a key: the member with the highest score is
    the key's home; it depends only on the name, weight and key."""
    # 53 bits, exact in a float: (2**64 - 1 + 1) / (2**64 + 1) would round to 1.0, log 0.
    draw = ((hash64(f"{key:016x}/{name}") >> 11) + 1) / (2**53 + 1)  # in (0, 1)
    return -weight / math.log(draw)


def rendezvous_order(members: Sequence[MemberState], key: int) -> list[MemberState]:
    """The members in the key's order, its home first."""
    return sorted(members, key=lambda m: -rendezvous_score(m.name, m.weight, key))
