"""The wait queue for requests while every member is at its limit."""

from __future__ import annotations

import asyncio

from servicepool_proxy.waitqueue import WaitQueue, WaitResult


async def settle() -> None:
    """Let started tasks reach their await."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_wake_one_wakes_the_oldest_first() -> None:
    queue = WaitQueue(10)
    order: list[int] = []

    async def waiter(index: int) -> None:
        assert await queue.wait(5.0) is WaitResult.WOKEN
        order.append(index)

    tasks = []
    for index in range(3):
        tasks.append(asyncio.create_task(waiter(index)))
        await settle()
    assert len(queue) == 3
    for expected in ([0], [0, 1], [0, 1, 2]):
        queue.wake_one()
        await settle()
        assert order == expected
    await asyncio.gather(*tasks)
    assert len(queue) == 0


async def test_wake_one_wakes_only_one() -> None:
    queue = WaitQueue(10)
    tasks = [asyncio.create_task(queue.wait(5.0)) for _ in range(3)]
    await settle()
    queue.wake_one()
    await settle()
    assert [t.done() for t in tasks] == [True, False, False]
    queue.wake_all()
    assert await asyncio.gather(*tasks) == [WaitResult.WOKEN] * 3


async def test_wake_all_wakes_everyone() -> None:
    queue = WaitQueue(10)
    tasks = [asyncio.create_task(queue.wait(5.0)) for _ in range(4)]
    await settle()
    queue.wake_all()
    assert await asyncio.gather(*tasks) == [WaitResult.WOKEN] * 4
    assert len(queue) == 0


async def test_bounded_queue_rejects_when_full() -> None:
    queue = WaitQueue(2)
    tasks = [asyncio.create_task(queue.wait(5.0)) for _ in range(2)]
    await settle()
    assert await queue.wait(5.0) is WaitResult.QUEUE_FULL
    assert len(queue) == 2
    queue.wake_one()
    await settle()
    third = asyncio.create_task(queue.wait(5.0))  # room again
    await settle()
    assert not third.done()
    queue.wake_all()
    assert await asyncio.gather(*tasks, third) == [WaitResult.WOKEN] * 3


async def test_zero_size_queue_never_waits() -> None:
    assert await WaitQueue(0).wait(5.0) is WaitResult.QUEUE_FULL


async def test_non_positive_wait_times_out_at_once() -> None:
    queue = WaitQueue(10)
    assert await queue.wait(0) is WaitResult.TIMED_OUT
    assert await queue.wait(-1) is WaitResult.TIMED_OUT
    assert len(queue) == 0


async def test_timeout_removes_the_waiter() -> None:
    queue = WaitQueue(10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await queue.wait(0.02) is WaitResult.TIMED_OUT
    assert loop.time() - started >= 0.015
    assert len(queue) == 0


async def test_wake_skips_timed_out_waiters() -> None:
    queue = WaitQueue(10)
    short = asyncio.create_task(queue.wait(0.01))
    await settle()
    long = asyncio.create_task(queue.wait(5.0))
    await settle()
    assert await short is WaitResult.TIMED_OUT
    queue.wake_one()  # goes to the waiter still there
    assert await asyncio.wait_for(long, 1.0) is WaitResult.WOKEN


async def test_cancelled_waiter_is_removed_and_skipped() -> None:
    queue = WaitQueue(10)
    first = asyncio.create_task(queue.wait(5.0))
    await settle()
    second = asyncio.create_task(queue.wait(5.0))
    await settle()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    assert len(queue) == 1
    queue.wake_one()
    assert await asyncio.wait_for(second, 1.0) is WaitResult.WOKEN


async def test_wake_with_nobody_waiting_is_harmless() -> None:
    queue = WaitQueue(1)
    queue.wake_one()
    queue.wake_all()
    task = asyncio.create_task(queue.wait(0.02))
    # An earlier wake-up is not saved for a later waiter.
    assert await task is WaitResult.TIMED_OUT


async def test_max_waiting_can_be_changed_live() -> None:
    queue = WaitQueue(1)
    task = asyncio.create_task(queue.wait(5.0))
    await settle()
    assert await queue.wait(5.0) is WaitResult.QUEUE_FULL
    queue.max_waiting = 2
    second = asyncio.create_task(queue.wait(5.0))
    await settle()
    assert len(queue) == 2
    queue.wake_all()
    assert await asyncio.gather(task, second) == [WaitResult.WOKEN] * 2
