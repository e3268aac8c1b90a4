"""cacheAware, tokens, speed and adaptive through real proxies in front of real members."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp

from .conftest import pool_document


def chat(tenant: str, turn: int, max_tokens: int = 4) -> dict[str, Any]:
    """A chat request of a tenant: a long shared system prompt, then `turn` user turns."""
    messages = [{"role": "system", "content": f"You are tenant {tenant}'s assistant. " * 40}]
    for index in range(turn + 1):
        messages.append({"role": "user", "content": f"question {index} of conversation"})
    return {"model": "m", "messages": messages, "max_tokens": max_tokens}


async def post(client: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str:
    async with client.post(url + "/v1/chat/completions", json=body) as response:
        await response.read()
        assert response.status == 200
        return response.headers["X-ServicePool-Member"]


async def status(client: aiohttp.ClientSession, admin_url: str) -> dict[str, Any]:
    async with client.get(admin_url + "/status") as response:
        return await response.json()


async def test_two_cache_aware_proxies_without_shared_state_agree_on_every_tenant(
    members, proxy, client
):
    started = [await members(name, service_time=0.005) for name in ("a", "b", "c", "d")]
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in started], strategy="cacheAware"
    )
    one, two = await proxy(doc), await proxy(doc)
    homes: dict[str, set[str]] = {}
    for turn in range(3):
        for tenant in range(12):
            for running in (one, two):  # every turn through both replicas
                member = await post(client, running.url, chat(str(tenant), turn))
                homes.setdefault(str(tenant), set()).add(member)
    assert all(len(served) == 1 for served in homes.values()), homes
    assert len(set().union(*homes.values())) >= 3, homes  # tenants spread over the pool
    report = await status(client, one.admin_url)
    prefix = {m["name"]: m["prefixCache"] for m in report["members"]}
    assert sum(p["lookups"] for p in prefix.values()) == 36
    assert sum(p["hits"] for p in prefix.values()) == 36 - 12  # all but each first turn
    assert all(p["hitRate"] is None or p["hitRate"] > 0.5 for p in prefix.values()), prefix
    async with client.get(one.admin_url + "/metrics") as response:
        metrics = await response.text()
    assert "servicepool_member_prefix_hits_total{" in metrics
    assert 'servicepool_member_prefix_blocks_total{kind="matched"' in metrics


async def test_a_hot_prefix_stays_on_its_member_until_the_load_bound_then_spills(
    members, proxy, client
):
    started = [await members(name, service_time=0.3) for name in ("a", "b", "c")]
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in started],
        strategy="cacheAware",
        cacheAware={"requestCostTokens": 200},  # ~3.5 in flight outweigh a 22-block move
    )
    running = await proxy(doc)
    home = await post(client, running.url, chat("hot", 0))  # warms one member
    for index in range(4):  # sequential: no load, every one sticks
        assert await post(client, running.url, chat("hot", index)) == home
    burst = await asyncio.gather(*(post(client, running.url, chat("hot", 1)) for _ in range(9)))
    seen = Counter(burst)
    # The home member takes requests until its load outweighs computing the prompt elsewhere.
    assert seen[home] == max(seen.values()) and len(seen) > 1, seen
    assert seen[home] <= 5, seen


async def test_cache_aware_without_a_prompt_is_least_in_flight(members, proxy, client):
    slow = await members("slow", delay=0.2)
    fast = await members("fast")
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in (slow, fast)], strategy="cacheAware"
    )
    running = await proxy(doc)

    semaphore = asyncio.Semaphore(4)

    async def get() -> str:
        async with semaphore, client.get(running.url + "/plain") as response:
            await response.read()
            return response.headers["X-ServicePool-Member"]

    seen = Counter(await asyncio.gather(*(get() for _ in range(60))))
    assert seen["slow"] < 0.25 * 60, seen  # round-robin would give it half


async def test_tokens_splits_tokens_by_weight(members, proxy, client):
    started = [await members(name, service_time=0.001) for name in ("a", "b")]
    doc = pool_document(
        [{"name": "a", "url": started[0].url, "weight": 1},
         {"name": "b", "url": started[1].url, "weight": 3}],
        strategy="tokens", tokens={"windowSeconds": 60},
    )  # fmt: skip
    running = await proxy(doc)
    seen = Counter([await post(client, running.url, chat("t", 0)) for _ in range(40)])
    assert 8 <= seen["a"] <= 12 and 28 <= seen["b"] <= 32, seen


async def test_speed_prefers_the_fast_member_and_still_measures_the_slow_one(
    members, proxy, client
):
    fast = await members("fast", service_time=0.01)
    slow = await members("slow", service_time=0.2)
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in (fast, slow)],
        strategy="speed", speed={"explorationRatio": 0.1},
    )  # fmt: skip
    running = await proxy(doc)
    seen = Counter(
        [await post(client, running.url, chat("t", 0, max_tokens=20)) for _ in range(40)]
    )
    assert seen["slow"] >= 1 and seen["fast"] >= 30, seen
    report = await status(client, running.admin_url)
    rates = {m["name"]: m["tokensPerSecond"] for m in report["members"]}
    assert rates["fast"] > rates["slow"] > 0, rates


async def test_adaptive_avoids_the_slow_member(members, proxy, client):
    slow = await members("slow", service_time=0.15)
    fast = [await members(name, service_time=0.01) for name in ("f1", "f2")]
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in (slow, *fast)], strategy="adaptive"
    )
    running = await proxy(doc)
    semaphore = asyncio.Semaphore(4)

    async def one() -> str:
        async with semaphore:
            return await post(client, running.url, chat("t", 0))

    seen = Counter(await asyncio.gather(*(one() for _ in range(90))))
    assert seen["slow"] < 20, seen  # round-robin would give it 30
