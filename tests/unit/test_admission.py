"""The wait queue for requests while every member is at its limit: first in, first out by
arrival within a kind, freed slots handed over directly, timeouts by timer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from servicepool_proxy.waitqueue import WaitQueue, WaitResult


async def settle() -> None:
    """Let started tasks reach their await."""
    for _ in range(5):
        await asyncio.sleep(0)


class Slots:
    """Free slots per kind; a claim takes one and is handed the waiter's label."""

    def __init__(self) -> None:
        self.free: dict[str | None, int] = {}
        self.claims = 0
        self.given_back: list[str] = []

    def claim(self, kind: str | None, label: str) -> Callable[[], str | None]:
        def take() -> str | None:
            self.claims += 1
            if self.free.get(kind, 0) <= 0:
                return None
            self.free[kind] -= 1
            return label

        return take

    def queue(self, max_waiting: int = 100) -> WaitQueue[str]:
        return WaitQueue(max_waiting, self.given_back.append)


def start(
    queue: WaitQueue[str], slots: Slots, label: str, arrival: float,
    kind: str | None = None, seconds: float = 5.0,
) -> asyncio.Task[str | WaitResult]:  # fmt: skip
    return asyncio.create_task(queue.wait(seconds, arrival, kind, slots.claim(kind, label)))


async def free(
    queue: WaitQueue[str], slots: Slots, count: int = 1, kind: str | None = None
) -> None:
    slots.free[kind] = slots.free.get(kind, 0) + count
    queue.offer()
    await settle()


# Arrivals (label, arrival time, kind) in the order they join, then slots freed one at a
# time (by kind): the labels in the order they are handed a slot.
@pytest.mark.parametrize(
    ("arrivals", "freed", "handed"),
    [
        ([("a", 1, None), ("b", 2, None), ("c", 3, None)], [None] * 3, ["a", "b", "c"]),
        # A retry joins late but arrived first: it keeps its place.
        ([("b", 2, None), ("c", 3, None), ("retry", 1, None)], [None] * 3, ["retry", "b", "c"]),
        # A slot only some can use goes to the oldest of those; the rest keep their order.
        ([("a", 1, "x"), ("b", 2, "y"), ("c", 3, "x")], ["y", "x", "x"], ["b", "a", "c"]),
        ([("a", 1, "x"), ("b", 2, "y"), ("c", 3, "y")], ["y", "y", "x"], ["b", "c", "a"]),
    ],
)
async def test_freed_slots_go_to_the_oldest_waiter_that_can_use_them(
    arrivals: list[tuple[str, float, str | None]], freed: list[str | None], handed: list[str]
) -> None:
    slots = Slots()
    queue = slots.queue()
    tasks = {}
    for label, arrival, kind in arrivals:
        tasks[label] = start(queue, slots, label, arrival, kind)
        await settle()
    order: list[str] = []
    for kind in freed:
        await free(queue, slots, kind=kind)
        order += [label for label, task in tasks.items() if task.done() and label not in order]
    assert order == handed
    assert [tasks[label].result() for label in handed] == handed
    assert len(queue) == 0


async def test_one_freed_slot_serves_one_waiter_and_more_serve_more() -> None:
    slots = Slots()
    queue = slots.queue()
    tasks = [start(queue, slots, str(i), i) for i in range(5)]
    await settle()
    await free(queue, slots)
    assert [t.done() for t in tasks] == [True, False, False, False, False]
    await free(queue, slots, count=3)
    assert [t.done() for t in tasks] == [True, True, True, True, False]
    assert len(queue) == 1 and queue.waiting(None) and not queue.waiting("other")
    await free(queue, slots)
    assert not queue.waiting(None)


async def test_a_slot_free_when_joining_is_taken_at_once() -> None:
    slots = Slots()
    queue = slots.queue()
    slots.free[None] = 1  # freed by time: a cool-down ended, nobody offered it
    assert await queue.wait(5.0, 1, None, slots.claim(None, "a")) == "a"


@pytest.mark.parametrize(("waiters", "kinds"), [(10, 1), (1000, 1), (1000, 3)])
async def test_an_offer_costs_one_claim_per_kind_not_per_waiter(waiters: int, kinds: int) -> None:
    slots = Slots()
    queue = slots.queue(max_waiting=waiters)
    tasks = [start(queue, slots, str(i), i, kind=f"k{i % kinds}") for i in range(waiters)]
    await settle()
    slots.claims = 0
    queue.offer()  # nothing free
    assert slots.claims == kinds
    slots.claims = 0
    await free(queue, slots, kind="k0")
    assert slots.claims == kinds + 1  # the handed claim, then k0's next oldest says no
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(queue) == 0


async def test_timeouts_by_timer_leave_the_others_waiting() -> None:
    slots = Slots()
    queue = slots.queue()
    loop = asyncio.get_running_loop()
    began = loop.time()
    short = start(queue, slots, "short", 1, seconds=0.02)
    long = start(queue, slots, "long", 2)
    assert await short is WaitResult.TIMED_OUT
    assert loop.time() - began >= 0.015
    assert len(queue) == 1
    await free(queue, slots)
    assert await asyncio.wait_for(long, 1.0) == "long"
    assert slots.free[None] == 0  # the timed-out waiter took nothing


async def test_cancelled_waiter_is_skipped() -> None:
    slots = Slots()
    queue = slots.queue()
    first, second = start(queue, slots, "first", 1), start(queue, slots, "second", 2)
    await settle()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled() and len(queue) == 1
    await free(queue, slots)
    assert await asyncio.wait_for(second, 1.0) == "second"


async def test_slot_handed_to_a_waiter_cancelled_meanwhile_is_given_back() -> None:
    slots = Slots()
    queue = slots.queue()
    task = start(queue, slots, "gone", 1)
    await settle()
    slots.free[None] = 1
    queue.offer()  # handed over...
    task.cancel()  # ...but the client left before the request ran again
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and slots.given_back == ["gone"] and len(queue) == 0


async def test_bounded_queue_rejects_when_full_and_takes_again_when_room() -> None:
    slots = Slots()
    queue = slots.queue(max_waiting=2)
    tasks = [start(queue, slots, str(i), i) for i in range(2)]
    await settle()
    assert await queue.wait(5.0, 9, None, slots.claim(None, "x")) is WaitResult.QUEUE_FULL
    await free(queue, slots)
    third = start(queue, slots, "third", 10)
    await settle()
    assert not third.done() and len(queue) == 2
    await free(queue, slots, count=2)
    assert await asyncio.gather(*tasks, third) == ["0", "1", "third"]


async def test_zero_size_or_no_time_never_waits() -> None:
    slots = Slots()
    assert await slots.queue(0).wait(5.0, 1, None, slots.claim(None, "a")) is WaitResult.QUEUE_FULL
    queue = slots.queue()
    for seconds in (0, -1):
        assert await queue.wait(seconds, 1, None, slots.claim(None, "a")) is WaitResult.TIMED_OUT
    assert len(queue) == 0 and slots.claims == 0


async def test_an_offer_with_nobody_waiting_is_not_saved() -> None:
    slots = Slots()
    queue = slots.queue()
    queue.offer()
    assert await queue.wait(0.02, 1, None, slots.claim(None, "a")) is WaitResult.TIMED_OUT


async def test_max_waiting_can_be_changed_live() -> None:
    slots = Slots()
    queue = slots.queue(max_waiting=1)
    task = start(queue, slots, "a", 1)
    await settle()
    assert await queue.wait(5.0, 2, None, slots.claim(None, "b")) is WaitResult.QUEUE_FULL
    queue.max_waiting = 2
    second = start(queue, slots, "b", 2)
    await settle()
    assert len(queue) == 2
    await free(queue, slots, count=2)
    assert await asyncio.gather(task, second) == ["a", "b"]
