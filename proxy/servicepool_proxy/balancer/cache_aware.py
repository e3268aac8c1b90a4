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

and the cheapest member takes the request. A prompt belongs to its family's place (the
prompts sharing its first block; placement: the same rule on every replica, filling the
members by what each can hold), and also to a member holding more of it than the place (a
conversation that moved while the place was busy). When other processes balance the pool
(proxy replicas, workers), a place this one never sent the prompt to is taken to hold what
it holds elsewhere: another may have sent it there.
So a prefix stays put until the work queued at its place outweighs computing it again
elsewhere, and replicas with no shared state converge on the same places. Ties go to the
place, then by the first block's rendezvous order. A member whose cache is full is not
passed over: a full cache is an engine's normal state; only what delays the first token
counts (its queue, the prefill ahead, a miss).
What each member holds is told or learned (cache_model).
"""

from __future__ import annotations

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


def family_place(
    homes: Sequence[MemberState],
    root: int,
    now: float,
    policy: CacheAware,
    placement: Placement | None = None,
) -> MemberState:
    """The member the prompt family of `root` belongs to: the same on every replica that
    sees the same hot families (placement)."""
    hot = hot_roots(homes, now, policy.hotSeconds)
    sizes = cache_sizes(homes, policy)
    return (placement or Placement()).place(root, homes, sizes, hot, policy.loadFactor)


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
    """The candidates, the family's place first then the first block's rendezvous order,
    and each one's prefill cost for the prompt. A prompt belongs to its family's place
    (family_place), and also to the members holding a longer prefix of it than the place.
    When other processes balance the pool (placement.shared), the place is taken to hold the
    longest prefix any member holds if this one never sent it any: another may have."""
    homes = rendezvous_order(candidates, prefix[0])
    place = family_place(homes, prefix[0], now, policy, placement)
    homes.remove(place)
    homes.insert(0, place)
    matched = {m.name: m.prefixes.matched(prefix) for m in homes}
    if placement is not None and placement.shared and matched[place.name] == 0:
        matched[place.name] = max(matched.values())
    at_place = matched[place.name]
    costs = {}
    for m in homes:
        held = matched[m.name]
        belongs = m is place or held > at_place
        costs[m.name] = prefill_cost(
            m, len(prefix) - held, now, policy, capacity, belongs, tokens_per_block
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
    """Cheapest first, equal costs the place first, then in the first block's rendezvous
    order."""
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
