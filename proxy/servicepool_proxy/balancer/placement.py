"""Where each prefix family belongs when several processes balance a pool (proxy replicas,
workers): one rule every one of them computes alike.

A family (the prompts sharing a first block) belongs to a member chosen from what all
replicas see the same way: the members, their weights and cache sizes, and the set of
families sent lately (hot). Families are taken in the order of their first block's hash;
each goes to the first member of its rendezvous order holding fewer than loadFactor times
its share of the hot families (share by cache size). The result depends on the set, not on
the order in which one replica met the families, so replicas with no shared state, or the
workers of one proxy, agree: three replicas that placed by their own arrival order kept
0.67-0.76 of one proxy's reuse on llama.cpp engines.

With many hot families per member, shares even out by themselves: a family then goes to
the first member of its rendezvous order weighted by cache size, which costs no more than
one hash per member and request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .member import MemberState
from .rendezvous import rendezvous_score

_MAX_ORDERS = 4096  # families whose rendezvous order is remembered
MANY_PER_MEMBER = 16  # hot families per member beyond which the rendezvous order alone places


def hot_roots(members: Sequence[MemberState], now: float, seconds: float) -> set[int]:
    """The first blocks of the families sent to any of the members within `seconds`."""
    roots: set[int] = set()
    for member in members:
        roots.update(member.prefixes.hot_roots(now, seconds))
    return roots


def assign(
    roots: Sequence[int],
    members: Sequence[MemberState],
    sizes: Sequence[int],
    load_factor: float,
    order: dict[int, tuple[int, ...]] | None = None,
) -> dict[int, int]:
    """Each root's member (an index into `members`): roots in ascending order, each to the
    first member of its rendezvous order with room (see the module docstring), else to the
    least filled. `order` caches rendezvous orders by root."""
    order = {} if order is None else order
    room = sum(sizes) or 1
    caps = [math.ceil(load_factor * len(roots) * size / room) for size in sizes]
    counts = [0] * len(members)
    places = {}
    for root in sorted(roots):
        ranked = order.get(root)
        if ranked is None:
            scores = [-rendezvous_score(m.name, m.weight, root) for m in members]
            ranked = tuple(sorted(range(len(members)), key=scores.__getitem__))
            order[root] = ranked
        chosen = next((i for i in ranked if counts[i] < caps[i]), -1)
        if chosen < 0:
            fill = [counts[i] / max(1, sizes[i]) for i in range(len(members))]
            chosen = fill.index(min(fill))
        counts[chosen] += 1
        places[root] = chosen
    return places


class Placement:
    """The last assignment, kept while the hot set and the members stay the same; `shared`
    when other processes balance the same pool (replicas, workers): a place this one never
    sent a family to may hold it."""

    __slots__ = ("_key", "_orders", "_places", "shared")

    def __init__(self, shared: bool = False) -> None:
        self.shared = shared
        self._key: tuple[object, ...] = ()
        self._orders: dict[int, tuple[int, ...]] = {}
        self._places: dict[int, str] = {}

    def place(
        self,
        root: int,
        members: Sequence[MemberState],
        sizes: Sequence[int],
        hot: set[int],
        load_factor: float,
    ) -> MemberState:
        """The member the family of `root` belongs to, among `members` (in any order)."""
        hot.add(root)
        if len(hot) > MANY_PER_MEMBER * len(members):
            top = max(sizes) or 1
            scores = [
                rendezvous_score(m.name, m.weight * size / top, root)
                for m, size in zip(members, sizes, strict=True)
            ]
            return members[scores.index(max(scores))]
        ranked = sorted(range(len(members)), key=lambda i: members[i].name)
        names = tuple((members[i].name, members[i].weight, sizes[i]) for i in ranked)
        key = (names, frozenset(hot), load_factor)
        if key != self._key:
            if self._key[:1] != (names,) or len(self._orders) > _MAX_ORDERS:
                self._orders = {}
            by_name = [members[i] for i in ranked]
            places = assign(
                sorted(hot), by_name, [sizes[i] for i in ranked], load_factor, self._orders
            )
            self._places = {r: by_name[i].name for r, i in places.items()}
            self._key = key
        name = self._places[root]
        return next(m for m in members if m.name == name)
