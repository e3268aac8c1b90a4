"""A bounded queue where requests wait while every available member is at its limit.

First in, first out: a freed slot is handed straight to the oldest waiter that can use it
(its claim takes the slot before anyone else runs), so a newcomer cannot take it while
waiters exist. Waiters are kept by group (the model they ask for and their request kind,
RoutingKeys.wait_group): waiters of one group can use the same slots, so an offer tries only
the oldest waiter of each group, and its cost grows with the groups waiting, not with the
waiters. A group must hold only requests the same members can serve: were an embeddings
request and a chat request for one model grouped, a chat-only member's freed slot could not
go to the embeddings request at the head, and the chat request behind it would not be asked.
The order is the request's arrival, so a request retried after a failed try keeps its place.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Hashable
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")


class WaitResult(Enum):
    """Why a wait ended without a hand-over."""

    TIMED_OUT = "timed out"
    QUEUE_FULL = "queue full"


class Waiter(Generic[T]):
    """One waiting request: `claim` returns what it is handed (a slot taken, or a final
    answer), or None while it has to keep waiting."""

    __slots__ = ("claim", "ended", "future", "group", "timer")

    def __init__(
        self, group: Hashable, claim: Callable[[], T | None], future: asyncio.Future[T | None]
    ) -> None:
        self.group = group
        self.claim = claim
        self.future = future
        self.timer: asyncio.TimerHandle | None = None
        self.ended = False  # counted out of the queue


class WaitQueue(Generic[T]):
    """FIFO (by arrival) of waiting requests; freed slots are handed to the oldest waiter."""

    def __init__(self, max_waiting: int, give_back: Callable[[T], None]) -> None:
        self.max_waiting = max_waiting
        self._give_back = give_back  # for a hand-over whose waiter was cancelled meanwhile
        self._groups: dict[Hashable, list[tuple[float, int, Waiter[T]]]] = {}
        self._waiting = 0
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return self._waiting

    def waiting(self, group: Hashable) -> bool:
        """Whether requests of this group wait (a newcomer of the group then queues behind)."""
        return self._head(group) is not None

    async def wait(
        self, seconds: float, arrival: float, group: Hashable, claim: Callable[[], T | None]
    ) -> T | WaitResult:
        """Wait at most `seconds` for what `claim` hands over, in arrival order."""
        if seconds <= 0:
            return WaitResult.TIMED_OUT
        if self._waiting >= self.max_waiting:
            return WaitResult.QUEUE_FULL
        loop = asyncio.get_running_loop()
        waiter: Waiter[T] = Waiter(group, claim, loop.create_future())
        entries = self._groups.setdefault(group, [])
        heapq.heappush(entries, (arrival, next(self._sequence), waiter))
        self._waiting += 1
        if len(entries) > 2 * self._waiting + 64:  # ended waiters behind a long-waiting head
            entries[:] = [entry for entry in entries if not entry[2].future.done()]
            heapq.heapify(entries)
        waiter.timer = loop.call_later(seconds, self._end, waiter, None)
        self.offer()  # a slot freed by time (a cool-down or an ejection ending) is used now
        try:
            handed = await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled():
                taken = future.result()  # handed over just as the request was cancelled
                if taken is not None:
                    self._give_back(taken)
            self._end(waiter, None)
            raise
        return WaitResult.TIMED_OUT if handed is None else handed

    def offer(self) -> None:
        """Slots were freed (or members changed): hand them to the oldest waiters that can
        use them, oldest group first, as long as claims succeed."""
        heads = []
        for group in list(self._groups):
            head = self._head(group)
            if head is not None:
                heads.append(head)
        heads.sort(key=lambda entry: (entry[0], entry[1]))
        for _, _, oldest in heads:
            waiter: Waiter[T] | None = oldest
            while waiter is not None:
                handed = waiter.claim()
                if handed is None:
                    break  # the group's oldest cannot use a slot now: nor can the rest
                self._end(waiter, handed)
                head = self._head(waiter.group)
                waiter = None if head is None else head[2]

    def _head(self, group: Hashable) -> tuple[float, int, Waiter[T]] | None:
        """The oldest waiter of the group still waiting (ended or cancelled ones are dropped
        on the way)."""
        entries = self._groups.get(group)
        while entries and entries[0][2].future.done():
            heapq.heappop(entries)
        if entries:
            return entries[0]
        self._groups.pop(group, None)
        return None

    def _end(self, waiter: Waiter[T], handed: T | None) -> None:
        """The waiter stops waiting: handed something, timed out (None) or cancelled."""
        if waiter.ended:
            return
        waiter.ended = True
        self._waiting -= 1
        if waiter.timer is not None:
            waiter.timer.cancel()
        if not waiter.future.done():
            waiter.future.set_result(handed)
