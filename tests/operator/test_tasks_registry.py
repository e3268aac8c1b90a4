"""The registry of pool loops: one loop per live pool, started and stopped with leadership."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from servicepool_operator.tasks_registry import PoolTasks

A = ("ns", "a")
B = ("ns", "b")
OTHER = ("other", "c")


def body(key: tuple[str, str], uid: str = "uid-1", generation: int = 1, **spec: Any) -> dict:
    return {"metadata": {"namespace": key[0], "name": key[1], "uid": uid,
                         "generation": generation}, "spec": spec}  # fmt: skip


class FakeLoop:
    """A pool loop that runs until cancelled and records what it was handed."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.started_for = str(body["metadata"]["uid"])
        self.wake = asyncio.Event()
        self.updates: list[Mapping[str, Any]] = []
        self.cancelled = False

    @property
    def uid(self) -> str:
        return self.started_for

    def update(self, body: Mapping[str, Any]) -> None:
        self.updates.append(body)
        self.body = body

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Factory:
    """Makes FakeLoops and keeps them."""

    def __init__(self) -> None:
        self.made: list[FakeLoop] = []

    def __call__(self, body: Mapping[str, Any]) -> FakeLoop:
        self.made.append(FakeLoop(body))
        return self.made[-1]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_ensure_starts_one_loop_per_pool_and_not_a_second() -> None:
    tasks, factory = PoolTasks(), Factory()
    tasks.remember(A, body(A))
    tasks.ensure(A, factory)
    tasks.ensure(A, factory)
    assert len(factory.made) == 1 and not tasks.tasks[A].done()
    await tasks.stop_all()


async def test_remember_hands_a_newer_body_to_the_running_loop() -> None:
    tasks, factory = PoolTasks(), Factory()
    tasks.remember(A, body(A))
    tasks.ensure(A, factory)
    newer = body(A, generation=2)
    tasks.remember(A, newer)
    assert factory.made[0].updates == [newer] and tasks.bodies[A] is newer
    await tasks.stop_all()


async def test_a_pool_recreated_under_the_same_name_gets_a_new_loop() -> None:
    tasks, factory = PoolTasks(), Factory()
    tasks.remember(A, body(A, uid="old"))
    tasks.ensure(A, factory)
    await settle()
    tasks.remember(A, body(A, uid="new"))
    tasks.ensure(A, factory)
    await settle()
    old, new = factory.made
    assert old.cancelled and not new.cancelled and tasks.controllers[A] is new
    await tasks.stop_all()


async def test_forget_stops_the_loop_and_drops_the_pool() -> None:
    tasks, factory = PoolTasks(), Factory()
    tasks.remember(A, body(A))
    tasks.ensure(A, factory)
    await settle()
    await tasks.forget(A)
    assert factory.made[0].cancelled
    assert (tasks.bodies, tasks.controllers, tasks.tasks) == ({}, {}, {})
    await tasks.forget(A)  # a second delete is harmless


async def test_stop_all_stops_every_loop_and_start_all_starts_them_again() -> None:
    tasks, factory = PoolTasks(), Factory()
    for key in (A, B):
        tasks.remember(key, body(key))  # seen while standing by: not started
    assert factory.made == []
    tasks.start_all(factory)  # became leader
    assert sorted(tasks.tasks) == [A, B]
    await settle()
    await tasks.stop_all()  # lost leadership
    assert all(loop.cancelled for loop in factory.made) and tasks.tasks == {}
    assert sorted(tasks.bodies) == [A, B]  # still known, for the next leadership
    tasks.start_all(factory)
    assert len(factory.made) == 4
    await tasks.stop_all()


async def test_wake_reaches_only_that_pools_loop() -> None:
    tasks, factory = PoolTasks(), Factory()
    for key in (A, B):
        tasks.remember(key, body(key))
        tasks.ensure(key, factory)
    tasks.wake(A)
    tasks.wake(("ns", "unknown"))
    assert [loop.wake.is_set() for loop in factory.made] == [True, False]
    await tasks.stop_all()


async def test_pod_and_service_events_wake_only_the_pools_they_concern() -> None:
    tasks, factory = PoolTasks(), Factory()
    selector = {"matchLabels": {"app": "w"}, "port": 80}
    tasks.remember(A, body(A, memberSelector=selector))
    tasks.remember(B, body(B, members=[{"name": "m", "service": {"name": "svc", "port": 80}}]))
    tasks.remember(OTHER, body(OTHER, memberSelector=selector))
    tasks.start_all(factory)
    loops = {(loop.body["metadata"]["namespace"], loop.body["metadata"]["name"]): loop
             for loop in factory.made}  # fmt: skip

    def woken() -> list[bool]:
        flags = [loops[k].wake.is_set() for k in (A, B, OTHER)]
        for loop in loops.values():
            loop.wake.clear()
        return flags

    tasks.wake_for_pod("ns", "w-1", {"app": "w"}, deleted=False)
    assert woken() == [True, False, False]
    tasks.wake_for_service("ns", "svc")
    assert woken() == [False, True, False]
    tasks.wake_for_service("ns", "a")  # pool a's own Service names no pool's member
    assert woken() == [False, False, False]
    await tasks.forget(A)
    tasks.wake_for_pod("ns", "w-1", {"app": "w"}, deleted=True)
    assert woken() == [False, False, False]
    await tasks.stop_all()
