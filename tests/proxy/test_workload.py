"""Workload-aware routing with inference-like members: capacity, models, affinity, 429s."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from servicepool_dev.samplemember import Behaviour

from .conftest import pool_document, wait_for


async def gpu_members(members, specs: list[tuple[str, float, list[str]]], workers: int = 2):
    return [
        await members(name, workers=workers, service_time=service_time, models=models)
        for name, service_time, models in specs
    ]


async def open_loop(client, url: str, rate: float, seconds: float, body: dict[str, Any]):
    """Send at a fixed rate regardless of answers; return the statuses."""
    statuses: Counter[int] = Counter()
    tasks = []

    async def one() -> None:
        async with client.post(url, json=body) as response:
            await response.read()
            statuses[response.status] += 1

    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        tasks.append(asyncio.create_task(one()))
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    return statuses


async def queue_spread(behaviours: list[Behaviour], stop: asyncio.Event) -> int:
    """Largest difference between members' queue lengths seen while load runs."""
    worst = 0
    while not stop.is_set():
        queued = [b.queued for b in behaviours]
        worst = max(worst, max(queued) - min(queued))
        await asyncio.sleep(0.01)
    return worst


async def run_capacity_scenario(members, proxy, client, strategy: str) -> tuple[int, Counter]:
    started = await gpu_members(
        members, [("fast1", 0.02, []), ("fast2", 0.02, []), ("slow", 0.08, [])]
    )
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in started],
        strategy=strategy,
        capacity={"intervalSeconds": 0.05},
        healthCheck={"enabled": False},
        queue={"timeoutSeconds": 30},
    )
    running = await proxy(doc)
    await wait_for(lambda: all(m.reported_at > 0 for m in running.server.runtime.members), 3)
    stop = asyncio.Event()
    spread = asyncio.create_task(queue_spread([m.behaviour for m in started], stop))
    statuses = await open_loop(client, running.url + "/v1/chat/completions", 150, 3.0,
                               {"model": "m", "max_tokens": 1})  # fmt: skip
    stop.set()
    assert statuses == Counter({200: statuses[200]}), statuses
    split = Counter({m.behaviour.name: m.behaviour.requests for m in started})
    return await spread, split


async def test_capacity_keeps_queues_level_where_round_robin_does_not(members, proxy, client):
    rr_spread, rr_split = await run_capacity_scenario(members, proxy, client, "roundRobin")
    cap_spread, cap_split = await run_capacity_scenario(members, proxy, client, "capacity")
    # Round-robin gives the 4x slower member a third of the load: its queue runs away.
    assert rr_spread >= 20, (rr_spread, rr_split)
    # Capacity routing follows the reports: queue depths stay within a small spread.
    assert cap_spread <= 6, (cap_spread, cap_split)
    assert cap_split["slow"] < rr_split["slow"] / 2, (cap_split, rr_split)


async def test_stale_capacity_reports_fall_back_to_in_flight(members, proxy, client):
    started = await gpu_members(members, [("a", 0.01, []), ("b", 0.01, [])])
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url + "/nowhere"} for m in started],
        strategy="capacity", capacity={"intervalSeconds": 0.05}, healthCheck={"enabled": False},
    )  # fmt: skip
    running = await proxy(doc)
    await asyncio.sleep(0.2)
    state = running.server.runtime.members[0]
    assert state.reported_at == 0 and "no field 'queued'" in state.report_error
    statuses = await open_loop(client, running.url + "/x", 50, 0.5, {})
    assert set(statuses) == {200}  # no signal: least-in-flight scoring still routes


async def test_model_aware_routing_and_model_listing(members, proxy, client):
    started = await gpu_members(
        members, [("a", 0.001, ["llama"]), ("b", 0.001, ["llama", "qwen"]), ("c", 0.001, ["qwen"])],
        workers=4,
    )  # fmt: skip
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in started],
        strategy="roundRobin", models={"intervalSeconds": 1}, healthCheck={"enabled": False},
    )  # fmt: skip
    running = await proxy(doc)
    await wait_for(lambda: all(m.discovered_models for m in running.server.runtime.members), 3)
    url = running.url + "/v1/chat/completions"
    for model in ["qwen"] * 20 + ["llama"] * 20:
        async with client.post(url, json={"model": model, "max_tokens": 1}) as response:
            assert response.status == 200
    a, _, c = (m.behaviour for m in started)
    assert "qwen" not in a.models_served and "llama" not in c.models_served
    assert a.models_served["llama"] > 0 and c.models_served["qwen"] > 0
    async with client.post(url, json={"model": "gpt-9", "max_tokens": 1}) as response:
        assert response.status == 404
        body = await response.json()
        assert body["error"] == "unknown-model"
        assert "gpt-9" in body["detail"] and "llama, qwen" in body["detail"]
    async with client.get(running.url + "/v1/models") as response:
        listing = await response.json()
    assert sorted(item["id"] for item in listing["data"]) == ["llama", "qwen"]


async def test_declared_models_need_no_discovery(members, proxy, client):
    started = await gpu_members(members, [("a", 0.001, []), ("b", 0.001, [])], workers=4)
    doc = pool_document(
        [{"name": "a", "url": started[0].url, "models": ["small"]},
         {"name": "b", "url": started[1].url, "models": ["large"]}],
        models={"discover": False}, healthCheck={"enabled": False},
    )  # fmt: skip
    running = await proxy(doc)
    for _ in range(6):
        async with client.post(running.url + "/v1/completions",
                               json={"model": "large", "max_tokens": 1}) as response:  # fmt: skip
            assert response.headers["X-ServicePool-Member"] == "b"


async def test_affinity_is_the_same_on_two_proxies_and_moves_few_keys(members, proxy, client):
    started = [await members(f"m{i}") for i in range(5)]
    member_list = [{"name": m.behaviour.name, "url": m.url} for m in started]
    affinity = {"source": "header", "name": "X-Session-Id"}
    doc = pool_document(member_list, strategy="random", affinity=affinity,
                        healthCheck={"enabled": False})  # fmt: skip
    first, second = await proxy(doc), await proxy(doc)

    async def owner(running, key: str) -> str:
        async with client.get(running.url + "/chat", headers={"X-Session-Id": key}) as response:
            await response.read()
            return response.headers["X-ServicePool-Member"]

    keys = [f"session-{i}" for i in range(200)]
    on_first = {k: await owner(first, k) for k in keys}
    on_second = {k: await owner(second, k) for k in keys}
    assert on_first == on_second
    assert {k: await owner(first, k) for k in keys[:50]} == {k: on_first[k] for k in keys[:50]}
    spread = Counter(on_first.values())
    assert len(spread) == 5 and min(spread.values()) >= 15, spread

    # m2 leaves the pool: only its own keys move.
    fewer = pool_document([m for m in member_list if m["name"] != "m2"], strategy="random",
                          affinity=affinity, healthCheck={"enabled": False})  # fmt: skip
    from servicepool_api.loader import parse_pool

    first.server.apply(parse_pool(fewer))
    after = {k: await owner(first, k) for k in keys}
    moved = [k for k in keys if after[k] != on_first[k]]
    assert all(on_first[k] == "m2" for k in moved)
    assert len(moved) == spread["m2"]
    assert 0.1 < len(moved) / len(keys) < 0.3  # about 1/N


async def test_affinity_bounded_load_spills_a_hot_key(members, proxy, client):
    started = [await members(f"m{i}", delay=0.2) for i in range(3)]
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in started],
        affinity={"source": "cookie", "name": "sid", "loadFactor": 1.25},
        healthCheck={"enabled": False},
    )  # fmt: skip

    running = await proxy(doc)

    async def get() -> str:
        async with client.get(running.url, headers={"Cookie": "sid=hot; other=1"}) as response:
            await response.read()
            return response.headers["X-ServicePool-Member"]

    results = Counter(await asyncio.gather(*(get() for _ in range(12))))
    # One hot key may not pin all 12 concurrent requests to one member.
    assert len(results) >= 2 and max(results.values()) <= 8, results


async def test_429_retry_after_cools_the_member_and_post_is_retried(members, proxy, client):
    started = await gpu_members(members, [("a", 0.001, []), ("b", 0.001, [])], workers=4)
    a, b = started
    doc = pool_document(
        [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}],
        retries={"attempts": 1, "retryOn": ["connect-failure", "429"]},
        healthCheck={"enabled": False},
    )  # fmt: skip
    running = await proxy(doc)
    loop = asyncio.get_running_loop()
    a.behaviour.rate_limited_until = loop.time() + 2.0
    url = running.url + "/v1/chat/completions"
    seen = Counter()
    for _ in range(10):
        async with client.post(url, json={"model": "m", "max_tokens": 1}) as response:
            assert response.status == 200  # the POST was retried on b after a's 429
            seen[response.headers["X-ServicePool-Member"]] += 1
    assert seen == Counter({"b": 10})
    state = running.server.runtime.balancer.by_name["a"]
    assert state.rate_limited == 1 and state.failures == 0
    assert 1.5 < state.rate_limited_until - loop.time() <= 2.0
    await asyncio.sleep(2.1)
    for _ in range(4):
        async with client.post(url, json={"model": "m", "max_tokens": 1}) as response:
            seen[response.headers["X-ServicePool-Member"]] += 1
    assert seen["a"] >= 1


async def test_token_usage_and_first_token_stats(members, proxy, client):
    (member,) = await gpu_members(members, [("llm", 0.2, [])], workers=2)
    running = await proxy(pool_document([{"name": "llm", "url": member.url}],
                                        healthCheck={"enabled": False}))  # fmt: skip
    url = running.url + "/v1/chat/completions"
    async with client.post(url, json={"model": "m", "max_tokens": 10}) as response:
        assert (await response.json())["usage"]["completion_tokens"] == 10
    async with client.post(url, json={"model": "m", "max_tokens": 20, "stream": True}) as response:
        text = await response.text()
        assert "[DONE]" in text
    async with client.get(running.admin_url + "/status") as response:
        status = (await response.json())["members"][0]
    assert status["promptTokens"] == 10 and status["completionTokens"] == 30
    assert status["tokensPerSecond"] > 10
    assert status["ttftMs"]["p50"] < status["latencyMs"]["p99"]
    assert status["latencyMs"]["p99"] >= 190
    async with client.get(running.admin_url + "/metrics") as response:
        metrics = await response.text()
    assert 'servicepool_member_tokens_total{kind="completion",member="llm",pool="test"} 30.0' in (
        metrics
    )
    assert (
        'servicepool_member_ttft_quantile_seconds{member="llm",pool="test",quantile="0.99"}'
        in metrics
    )
    assert 'servicepool_member_ttft_seconds_count{member="llm",pool="test"} 2.0' in metrics
