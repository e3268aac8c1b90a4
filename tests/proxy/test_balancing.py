"""Each strategy's split over real member servers."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from .conftest import fetch_member, pool_document


async def split(client, url: str, count: int, concurrency: int = 1) -> Counter[str]:
    seen: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            status, member = await fetch_member(client, url)
            assert status == 200
            seen[member] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return seen


async def test_round_robin_takes_turns(members, proxy, client):
    started = [await members(name) for name in ("a", "b", "c")]
    doc = pool_document([{"name": m.behaviour.name, "url": m.url} for m in started])
    running = await proxy(doc)
    order = [(await fetch_member(client, running.url + "/x"))[1] for _ in range(9)]
    assert order == ["a", "b", "c"] * 3
    assert [m.behaviour.requests for m in started] == [3, 3, 3]


@pytest.mark.parametrize("strategy", ["weightedRoundRobin", "random", "leastInFlight"])
async def test_weights_shape_the_split(members, proxy, client, strategy):
    started = [await members(name) for name in ("a", "b", "c")]
    weights = {"a": 1, "b": 2, "c": 5}
    doc = pool_document(
        [
            {"name": m.behaviour.name, "url": m.url, "weight": weights[m.behaviour.name]}
            for m in started
        ],
        strategy=strategy,
    )
    running = await proxy(doc)
    total = 400
    seen = await split(client, running.url + "/w", total)
    for name, weight in weights.items():
        expected = total * weight / 8
        tolerance = 0.02 * total if strategy != "random" else 0.08 * total
        assert abs(seen[name] - expected) <= tolerance, (strategy, seen)


async def test_least_in_flight_avoids_the_slow_member(members, proxy, client):
    slow = await members("slow", delay=0.2)
    fast = [await members(name) for name in ("f1", "f2")]
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in [slow, *fast]],
        strategy="leastInFlight",
    )
    running = await proxy(doc)
    seen = await split(client, running.url + "/q", 300, concurrency=6)
    assert seen["slow"] < 0.12 * 300, seen


@pytest.mark.parametrize("strategy", ["powerOfTwoChoices", "latency"])
async def test_load_aware_strategies_favour_fast_members(members, proxy, client, strategy):
    slow = await members("slow", delay=0.1)
    fast = [await members(name, delay=0.005) for name in ("f1", "f2")]
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in [slow, *fast]], strategy=strategy
    )
    running = await proxy(doc)
    seen = await split(client, running.url + "/p", 300, concurrency=6)
    # Round-robin would give the slow member a third (100).
    assert seen["slow"] < 60, seen
    assert seen["f1"] > 90 and seen["f2"] > 90, seen


async def test_priority_tiers_fail_over_and_back(members, proxy, client):
    primary = await members("primary")
    backup = await members("backup")
    doc = pool_document(
        [
            {"name": "primary", "url": primary.url, "priority": 0},
            {"name": "backup", "url": backup.url, "priority": 1},
        ],
        healthCheck={"intervalSeconds": 0.2, "timeoutSeconds": 0.1, "unhealthyThreshold": 1},
    )
    running = await proxy(doc)
    assert {(await fetch_member(client, running.url))[1] for _ in range(10)} == {"primary"}
    primary.behaviour.healthy = False
    await asyncio.sleep(0.6)
    assert {(await fetch_member(client, running.url))[1] for _ in range(10)} == {"backup"}
    primary.behaviour.healthy = True
    await asyncio.sleep(0.6)
    assert {(await fetch_member(client, running.url))[1] for _ in range(10)} == {"primary"}


async def test_max_in_flight_is_never_exceeded(members, proxy, client):
    started = [await members(name, delay=0.05) for name in ("a", "b")]
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url, "maxInFlight": 2} for m in started],
        strategy="leastInFlight",
    )
    running = await proxy(doc)
    seen = await split(client, running.url + "/limit", 60, concurrency=20)
    assert sum(seen.values()) == 60
    assert all(m.behaviour.max_in_flight_seen <= 2 for m in started)


async def test_queue_is_bounded_and_times_out_with_a_clear_503(members, proxy, client):
    member = await members("only", delay=0.5)
    doc = pool_document(
        [{"name": "only", "url": member.url, "maxInFlight": 1}],
        queue={"maxWaiting": 2, "timeoutSeconds": 0.3},
    )
    running = await proxy(doc)

    async def get() -> tuple[int, str]:
        async with client.get(running.url + "/busy") as response:
            return response.status, await response.text()

    results = await asyncio.gather(*(get() for _ in range(6)))
    statuses = sorted(status for status, _ in results)
    assert statuses.count(200) == 1, results
    assert statuses.count(503) == 5, results
    bodies = [body for status, body in results if status == 503]
    assert any("wait queue is full" in body for body in bodies), bodies
    assert any("no member became free within 0.3s" in body for body in bodies), bodies
    assert member.behaviour.max_in_flight_seen == 1
