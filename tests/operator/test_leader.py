"""Leader election on a Lease, against an in-memory Lease API and a clock moved by hand."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from servicepool_operator.leader import LeaderElector

from .fakes import START, FakeLeaseApi


class Clock:
    """Wall and monotonic time, both moved by `advance`."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def now(self) -> datetime:
        return START + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


def elector(api: FakeLeaseApi, clock: Clock, identity: str = "me") -> LeaderElector:
    return LeaderElector(api, "ns", "lease", identity, lease_seconds=15, renew_seconds=5.0,
                         retry_seconds=2.0, now=clock.now, monotonic=clock.monotonic)  # fmt: skip


async def test_a_replica_takes_a_lease_nobody_holds() -> None:
    api, clock = FakeLeaseApi(), Clock()
    me = elector(api, clock)
    assert await me.step() == 5.0  # the renew interval
    assert me.is_leader and me.changed.is_set()
    assert api.lease is not None and api.lease.spec.holder_identity == "me"
    assert api.lease.spec.lease_duration_seconds == 15


async def test_the_leader_renews_its_lease_and_keeps_its_acquire_time() -> None:
    api, clock = FakeLeaseApi(), Clock()
    me = elector(api, clock)
    await me.step()
    me.changed.clear()
    clock.advance(5)
    await me.step()
    assert me.is_leader and not me.changed.is_set()  # no change to announce
    assert api.lease is not None
    assert api.lease.spec.acquire_time == START
    assert api.lease.spec.renew_time == START + timedelta(seconds=5)


async def test_a_standby_waits_while_the_lease_is_fresh_and_takes_it_once_expired() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.hold("rival", START)
    me = elector(api, clock)
    for _ in range(7):  # 14 s of a lease that lasts 15
        assert await me.step() == 2.0  # the retry interval
        assert not me.is_leader
        clock.advance(2)
    clock.advance(2)
    assert await me.step() == 5.0
    assert me.is_leader and api.lease is not None
    assert api.lease.spec.holder_identity == "me"
    assert api.lease.spec.acquire_time == START + timedelta(seconds=16)


async def test_a_replica_that_loses_the_race_to_create_the_lease_stands_by() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.before_write.append("taken")
    me = elector(api, clock)
    assert await me.step() == 2.0
    assert not me.is_leader and api.lease is not None
    assert api.lease.spec.holder_identity == "rival"


async def test_a_replica_that_loses_the_race_for_an_expired_lease_stands_by() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.hold("old", START - timedelta(seconds=60))
    api.before_write.append("taken")
    me = elector(api, clock)
    assert await me.step() == 2.0
    assert not me.is_leader and api.lease is not None
    assert api.lease.spec.holder_identity == "rival"


async def test_a_leader_whose_lease_was_taken_steps_down() -> None:
    api, clock = FakeLeaseApi(), Clock()
    me = elector(api, clock)
    await me.step()
    api.hold("rival", clock.now())  # e.g. after this replica was paused past its lease
    await me.step()
    assert not me.is_leader


async def test_the_leader_leads_on_while_the_api_is_down_until_its_lease_runs_out() -> None:
    api, clock = FakeLeaseApi(), Clock()
    me = elector(api, clock)
    await me.step()
    api.down = True
    for _ in range(3):
        clock.advance(5)
        assert await me.step() == 5.0 and me.is_leader  # 15 s: the lease still holds
    clock.advance(1)
    assert await me.step() == 2.0 and not me.is_leader


async def test_a_replica_that_never_reached_the_api_does_not_lead() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.down = True
    me = elector(api, clock)
    assert await me.step() == 2.0 and not me.is_leader and not me.changed.is_set()


async def test_release_hands_the_lease_over_at_once() -> None:
    api, clock = FakeLeaseApi(), Clock()
    me, standby = elector(api, clock), elector(api, clock, "standby")
    await me.step()
    await standby.step()
    assert not standby.is_leader
    await me.release()
    assert not me.is_leader and api.lease is not None
    assert api.lease.spec.holder_identity is None
    await standby.step()  # no wait for the lease to expire
    assert standby.is_leader


async def test_release_leaves_a_lease_someone_else_holds_alone() -> None:
    api, clock = FakeLeaseApi(), Clock()
    me = elector(api, clock)
    await me.step()
    api.hold("rival", clock.now())
    await me.release()
    assert not me.is_leader and api.lease is not None
    assert api.lease.spec.holder_identity == "rival"


async def test_release_by_a_standby_writes_nothing() -> None:
    api, clock = FakeLeaseApi(), Clock()
    api.hold("rival", START)
    me = elector(api, clock)
    await me.step()
    version = api.lease.metadata.resource_version if api.lease else None
    await me.release()
    assert api.lease is not None and api.lease.metadata.resource_version == version


async def test_run_keeps_stepping_until_cancelled() -> None:
    api, clock = FakeLeaseApi(), Clock()
    me = LeaderElector(api, "ns", "lease", "me", renew_seconds=0.001, retry_seconds=0.001,
                       now=clock.now, monotonic=clock.monotonic)  # fmt: skip
    task = asyncio.create_task(me.run())
    await asyncio.wait_for(me.changed.wait(), timeout=5)
    assert me.is_leader
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
