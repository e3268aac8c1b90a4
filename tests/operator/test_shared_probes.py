"""One probe per member address for every pool that has it, at most so many at once."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

import pytest

from servicepool_api.spec import PoolSpec
from servicepool_operator.controller import PoolController
from servicepool_operator.records import ProbeResult
from servicepool_operator.shared_probes import SharedProbes

from .fakes import Events, FakeClock, FakeCluster, FakeKube, FakeProbe


def spec(**check: object) -> PoolSpec:
    return PoolSpec.model_validate(
        {"members": [{"name": "a", "url": "http://a:1"}], "healthCheck": check}
    )


class GatedProbe:
    """Probes that wait until the test opens the gate; counts how many run at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, url: str, spec: PoolSpec) -> ProbeResult:
        self.started.append(url)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return ProbeResult(url.endswith("ok"), "")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_pools_that_ask_for_one_member_at_once_share_one_probe() -> None:
    probe = GatedProbe()
    shared = SharedProbes(probe, clock=FakeClock())
    calls = [asyncio.ensure_future(shared("http://m/ok", spec())) for _ in range(50)]
    await settle()
    probe.gate.set()
    results = await asyncio.gather(*calls)
    assert probe.started == ["http://m/ok"] and shared.probes == 1
    assert set(results) == {ProbeResult(True, "")}


@pytest.mark.parametrize(
    ("first", "second", "probes"),
    [
        ({}, {}, 1),
        ({}, {"path": "/ready"}, 2),
        ({}, {"timeoutSeconds": 0.5}, 2),
        ({}, {"intervalSeconds": 10}, 1),  # the interval is not part of the address
    ],
)
async def test_a_probe_is_shared_only_for_the_same_url_path_and_timeout(
    first: dict[str, Any], second: dict[str, Any], probes: int
) -> None:
    fake = FakeProbe()
    shared = SharedProbes(fake, clock=FakeClock())
    await shared("http://m:1", spec(**first))
    await shared("http://m:1", spec(**second))
    assert len(fake.probed) == probes


async def test_a_result_is_shared_for_half_the_askers_interval_then_probed_anew() -> None:
    fake, clock = FakeProbe(), FakeClock()
    shared = SharedProbes(fake, clock=clock)
    await shared("http://m:1", spec(intervalSeconds=4))
    clock.advance(1.9)
    fake.answer("http://m:1", False, "probe /healthz returned HTTP 503")
    assert await shared("http://m:1", spec(intervalSeconds=4)) == ProbeResult(True, "")
    clock.advance(0.1)
    assert not (await shared("http://m:1", spec(intervalSeconds=4))).ok
    assert len(fake.probed) == 2


async def test_no_more_probes_run_at_once_than_the_limit() -> None:
    probe = GatedProbe()
    shared = SharedProbes(probe, limit=3, clock=FakeClock())
    calls = [asyncio.ensure_future(shared(f"http://m{i}/ok", spec())) for i in range(10)]
    await settle()
    assert probe.running == 3
    probe.gate.set()
    await asyncio.gather(*calls)
    assert len(probe.started) == 10 and probe.most_at_once == 3


async def test_a_pool_that_leaves_mid_probe_does_not_cancel_it_for_the_others() -> None:
    probe = GatedProbe()
    shared = SharedProbes(probe, clock=FakeClock())
    leaving = asyncio.ensure_future(shared("http://m/ok", spec()))
    staying = asyncio.ensure_future(shared("http://m/ok", spec()))
    await settle()
    leaving.cancel()
    await settle()
    probe.gate.set()
    assert (await staying).ok and probe.started == ["http://m/ok"]


def pool(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "servicepool.dev/v1alpha1",
        "kind": "ServicePool",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
        "spec": {"members": [{"name": "a", "url": "http://a:1"}]},  # probed every 5 s
    }


class Loops:
    """Pool loops run on the fake clock, each pass when the one before asked for it."""

    def __init__(self, clock: FakeClock, pools: list[tuple[float, PoolController]]) -> None:
        self.clock = clock
        self.pools = [controller for _, controller in pools]
        self.due = [(start, index) for index, (start, _) in enumerate(pools)]
        heapq.heapify(self.due)
        self.unhealthy: dict[str, float] = {}  # when each pool first wrote member a Unhealthy

    async def run(self, until: float) -> None:
        while self.due[0][0] <= until:
            at, index = heapq.heappop(self.due)
            self.clock.seconds = at
            controller = self.pools[index]
            heapq.heappush(self.due, (at + await controller.reconcile(), index))
            statuses = controller.kube.statuses  # type: ignore[attr-defined]
            if statuses and statuses[-1]["members"][0]["state"] == "Unhealthy":
                self.unhealthy.setdefault(controller.pool.name, at)


@pytest.mark.parametrize("fails_at", [1030.01, 1032.5, 1034.99])
async def test_with_shared_probes_a_state_change_reaches_every_pool_within_two_intervals(
    fails_at: float,
) -> None:
    clock, fake = FakeClock(), FakeProbe()
    shared = SharedProbes(fake, clock=clock)
    starts = [1000.0, 1001.3, 1002.6, 1003.9, 1004.7]  # pools created at different moments
    pools = [
        (start, PoolController(FakeKube(), FakeCluster().view(), shared, Events(),
                               pool(f"p{i}"), clock=clock))
        for i, start in enumerate(starts)
    ]  # fmt: skip
    loops = Loops(clock, pools)
    await loops.run(fails_at)
    fake.answer("http://a:1", False, "probe /healthz returned HTTP 503")
    await loops.run(fails_at + 15)
    unhealthy = loops.unhealthy
    assert sorted(unhealthy) == [f"p{i}" for i in range(5)]
    assert max(unhealthy.values()) - fails_at <= 2 * 5.0
    # After the first passes, one probe per round serves all five pools.
    assert len(fake.probed) <= 5 + (fails_at + 15 - 1005) / 5 + 1
