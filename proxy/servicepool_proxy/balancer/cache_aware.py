"""Strategy cacheAware: send a prompt where its prefix already is, unless that overloads it.

Candidates are ranked by the blocks of the prompt each was recently sent (matches shorter
than minMatchRatio of the prompt count as none), then by rendezvous hashing of the prompt's
first block: a prefix nobody has seen goes to its "home" member, the same one in every proxy
replica, with no shared state. The first candidate in that order that is not overloaded
compared with the least loaded one takes the request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from servicepool_api.llm_policies import CacheAware
from servicepool_api.policies import Capacity

from .affinity import hash64
from .member import MemberState
from .strategies import is_full, least_in_flight, least_reported_load, reported_load


def member_load(member: MemberState, now: float, capacity: Capacity | None) -> float:
    """Reported queued + running with a fresh capacity report, in-flight otherwise; per weight."""
    load = reported_load(member, now, capacity) if capacity is not None else None
    return (member.in_flight if load is None else load) / member.weight


def rendezvous_score(name: str, weight: int, key: int) -> float:
    """Weighted rendezvous (highest random weight) score of a member for a key: the member
    with the highest score is the key's home; it depends only on the name, weight and key."""
    draw = (hash64(f"{key:016x}/{name}") + 1) / (2**64 + 1)  # in (0, 1)
    return -weight / math.log(draw)


def overloaded(load: float, least: float, policy: CacheAware) -> bool:
    """True when a load is too far above the least loaded candidate's, in both senses."""
    return load - least > policy.balanceAbsThreshold and load > least * policy.balanceRelThreshold


def preference_order(
    candidates: Sequence[MemberState], prefix: Sequence[int], policy: CacheAware
) -> list[MemberState]:
    """Longest useful cached prefix first, then the first block's rendezvous order."""
    needed = max(1, math.ceil(policy.minMatchRatio * len(prefix)))

    def rank(member: MemberState) -> tuple[int, float]:
        matched = member.prefixes.matched(prefix)
        useful = matched if matched >= needed else 0
        return -useful, -rendezvous_score(member.name, member.weight, prefix[0])

    return sorted(candidates, key=rank)


def pick_cache_aware(
    candidates: Sequence[MemberState],
    prefix: Sequence[int],
    now: float,
    policy: CacheAware,
    capacity: Capacity | None = None,
) -> MemberState:
    """The member for a prompt with these block hashes (see the module docstring).

    Without a prompt: the least loaded member. Members whose fresh capacity report says
    they are full are passed over while others have room.
    """
    if not prefix:
        if capacity is not None:
            return least_reported_load(candidates, now, capacity)
        return least_in_flight(candidates)
    roomy = candidates
    if capacity is not None:
        roomy = [m for m in candidates if not is_full(m, now, capacity)] or candidates
    loads = {m.name: member_load(m, now, capacity) for m in roomy}
    least = min(loads.values())
    order = preference_order(roomy, prefix, policy)
    for member in order:
        if not overloaded(loads[member.name], least, policy):
            return member
    return order[0]  # unreachable: the least loaded member is never overloaded
