"""Weighted rendezvous (highest random weight) hashing: a key's order of members that every
replica computes alike from the members' names and weights alone."""

from __future__ import annotations

import math

from .affinity import hash64


def rendezvous_score(name: str, weight: float, key: int) -> float:
    """A member's score for a key: the member with the highest score is the key's home; it
    depends only on the name, weight and key, and a member's share of keys follows its
    weight."""
    # 53 bits, exact in a float: (2**64 - 1 + 1) / (2**64 + 1) would round to 1.0, log 0.
    draw = ((hash64(f"{key:016x}/{name}") >> 11) + 1) / (2**53 + 1)  # in (0, 1)
    return -weight / math.log(draw)
