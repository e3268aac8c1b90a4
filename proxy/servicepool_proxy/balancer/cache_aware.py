"""Strategy cacheAware: the member that would give a prompt its first token soonest.

Time to first token on an inference server is mostly prefill: the prompt tokens of the
requests ahead of this one that still have to be computed, then this prompt's own tokens that
are not in the server's prefix cache. The proxy estimates both in one unit, prompt tokens to
prefill (blockChars / learned characters per token, per block), per unit of weight:

    cost(m) = pending prefill on m             uncached blocks of the requests sent to m that
                                               have not answered a byte of body yet
            + this prompt's blocks not held    x (1 + movePenalty) where the prompt does not
              by m                             belong (below)
            + requestCostTokens x in-flight on m
            + queuedCostTokens x m's waiting queue (spec.capacity, fresh reports only)

and the cheapest member takes the request. Where a prompt belongs depends on whether this
process balances the pool alone:
- alone, its index is the truth: a prompt belongs where its longest prefix is held; a
  prompt no member holds belongs to its place, the first member in the rendezvous order of
  its first block holding fewer than loadFactor times its share of the pool's hot prefixes
  (share by the size of its cache, as the engines tell when they do), so new prefixes fill
  the members evenly by what each can hold;
- with other proxy replicas or workers (spec.proxy), each one's index sees only its own
  requests, and placing by its own arrival order made them disagree (three replicas kept
  0.67-0.76 of one proxy's reuse). A prompt then belongs to its family's place, from one
  rule all of them compute alike (placement), taken to hold what this process sent
  elsewhere if it never sent the place any of it, and to members holding more of it.
So a prefix stays put until the work queued at its place outweighs computing it again
elsewhere. Ties go by the rendezvous order (the place first). A member whose cache is full
is not passed over: a full cache is an engine's normal state; only what delays the first
token counts (its queue, the prefill ahead, a miss).
What each member holds is told or learned (cache_model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from servicepool_api.llm_policies import CacheAware
from servicepool_api.policies import Capacity

from .cache_model import CHARS_PER_TOKEN, told_tokens
from .member import MemberState
from .placement import Placement, hot_roots
from .rendezvous import rendezvous_order
from .strategies import least_in_flight, least_reported_load


def reported_waiting(member: MemberState, now: float, capacity: Capacity | None) -> float:
    """The member's own waiting queue from a fresh capacity report, else 0."""
    if capacity is None or not member.report_fresh(now, capacity.staleAfterSeconds):
        return 0.0
    return member.reported_queued


def cache_sizes(members: Sequence[MemberState], policy: CacheAware) -> list[int]:
    """What each member's cache holds, for sharing out prefixes: the prompt tokens the
    engines or the spec tell, when known for every member (the same for every replica),
    else the size of each member's index (told or learned)."""
    told = [told_tokens(m, policy) for m in members]
    if all(tokens is not None and tokens > 0 for tokens in told):
        return [tokens for tokens in told if tokens is not None]
    return [m.prefixes.limit for m in members]


def place_new_prefix(homes: Sequence[MemberState], now: float, policy: CacheAware) -> MemberState:
    """Where a lone proxy puts a prefix no member holds: the first of `homes` (its
    rendezvous order) whose hot prefixes stay within loadFactor times its share of the
    pool's, by what each member's cache holds (cache_sizes); else the least filled."""
    hot = [m.prefixes.hot(now, policy.hotSeconds) for m in homes]
    sizes = cache_sizes(homes, policy)
    total, room = sum(hot) + 1, sum(sizes)
    for member, held, size in zip(homes, hot, sizes, strict=True):
        if held + 1 <= math.ceil(policy.loadFactor * total * size / room):
            return member
    fill = [held / size for held, size in zip(hot, sizes, strict=True)]
    return homes[fill.index(min(fill))]


def family_place(
    homes: Sequence[MemberState],
    root: int,
    now: float,
    policy: CacheAware,
    placement: Placement | None = None,
) -> MemberState:
    """Where the prompt family of `root` belongs when several processes balance the pool:
    the same on every one that sees the same hot families (placement)."""
    hot = hot_roots(homes, now, policy.hotSeconds)
    sizes = cache_sizes(homes, policy)
    return (placement or Placement()).place(root, homes, sizes, hot, policy.loadFactor)


def lone_belongs(
    homes: Sequence[MemberState], matched: dict[str, int], now: float, policy: CacheAware
) -> dict[str, bool]:
    """A lone proxy's index is the truth: a prompt belongs on the members holding its
    longest prefix; one no member holds, on its place (place_new_prefix)."""
    longest = max(matched.values())
    if longest > 0:
        return {m.name: matched[m.name] == longest for m in homes}
    place = place_new_prefix(homes, now, policy)
    return {m.name: m is place for m in homes}


def shared_belongs(
    homes: list[MemberState], matched: dict[str, int], now: float, policy: CacheAware,
    placement: Placement, root: int,
) -> dict[str, bool]:  # fmt: skip
    """With other balancing processes: a prompt belongs to its family's place
    (family_place), taken to hold the longest prefix any member holds if this process
    never sent it any (another may have), and to members holding more of it than that.
    The place moves to the front of `homes`, where ties go; `matched` is updated."""
    place = family_place(homes, root, now, policy, placement)
    homes.remove(place)
    homes.insert(0, place)
    if matched[place.name] == 0:
        matched[place.name] = max(matched.values())
    at_place = matched[place.name]
    return {m.name: m is place or matched[m.name] > at_place for m in homes}


def prefill_cost(
    member: MemberState,
    uncached: int,
    now: float,
    policy: CacheAware,
    capacity: Capacity | None = None,
    belongs: bool = True,
    tokens_per_block: float = 0.0,
) -> float:
    """Estimated prompt tokens to prefill on the member before the first token of a prompt
    with `uncached` blocks not held there, load included, per unit of weight (see the module
    docstring); the uncached blocks count 1 + movePenalty times where the prompt does not
    belong."""
    tokens_per_block = tokens_per_block or policy.blockChars / CHARS_PER_TOKEN
    own = uncached if belongs else uncached * (1 + policy.movePenalty)
    cost = (member.prefill_blocks + own) * tokens_per_block
    cost += policy.requestCostTokens * member.in_flight
    cost += policy.queuedCostTokens * reported_waiting(member, now, capacity)
    return cost / member.weight


def prefill_costs(
    candidates: Sequence[MemberState],
    prefix: Sequence[int],
    now: float,
    policy: CacheAware,
    capacity: Capacity | None = None,
    tokens_per_block: float = 0.0,
    placement: Placement | None = None,
) -> tuple[list[MemberState], dict[str, float]]:
    """The candidates in the order ties go (the first block's rendezvous order; with other
    balancing processes, the family's place first), and each one's prefill cost for the
    prompt, by where it belongs (lone_belongs, shared_belongs)."""
    homes = rendezvous_order(candidates, prefix[0])
    matched = {m.name: m.prefixes.matched(prefix) for m in homes}
    if placement is not None and placement.shared:
        belongs = shared_belongs(homes, matched, now, policy, placement, prefix[0])
    else:
        belongs = lone_belongs(homes, matched, now, policy)
    costs = {}
    for m in homes:
        uncached = len(prefix) - matched[m.name]
        costs[m.name] = prefill_cost(
            m, uncached, now, policy, capacity, belongs[m.name], tokens_per_block
        )
    return homes, costs


def preference_order(
    candidates: Sequence[MemberState],
    prefix: Sequence[int],
    now: float,
    policy: CacheAware,
    capacity: Capacity | None = None,
    tokens_per_block: float = 0.0,
    placement: Placement | None = None,
) -> list[MemberState]:
    """Cheapest first, equal costs in the order prefill_costs gives."""
    homes, costs = prefill_costs(
        candidates, prefix, now, policy, capacity, tokens_per_block, placement
    )
    return sorted(homes, key=lambda m: costs[m.name])  # stable: ties stay in home order


def pick_cache_aware(
    candidates: Sequence[MemberState],
    prefix: Sequence[int],
    now: float,
    policy: CacheAware,
    capacity: Capacity | None = None,
    tokens_per_block: float = 0.0,
    placement: Placement | None = None,
) -> MemberState:
    """The member for a prompt with these block hashes (see the module docstring);
    `placement` keeps the families' places between calls.

    Without a prompt: the least loaded member.
    """
    if not prefix:
        if capacity is not None:
            return least_reported_load(candidates, now, capacity)
        return least_in_flight(candidates)
    return preference_order(candidates, prefix, now, policy, capacity, tokens_per_block, placement)[
        0
    ]
