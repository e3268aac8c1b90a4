"""Failures of members: kills, 503s, resets, retries and what is never retried."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from .conftest import fetch_member, pool_document, wait_for


async def test_member_killed_under_load_loses_no_get(member_processes, proxy, client):
    started = [member_processes(name, delay=0.01) for name in ("a", "b", "c")]
    doc = pool_document(
        [{"name": m.name, "url": m.url} for m in started],
        strategy="leastInFlight",
        healthCheck={"intervalSeconds": 0.5, "timeoutSeconds": 0.3},
    )
    running = await proxy(doc)
    statuses: Counter[int] = Counter()
    by_member: Counter[str] = Counter()
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            status, member = await fetch_member(client, running.url + "/load")
            statuses[status] += 1
            by_member[member] += 1

    workers = [asyncio.create_task(worker()) for _ in range(16)]
    await asyncio.sleep(1.0)
    started[1].kill()
    killed_at = sum(statuses.values())
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*workers)
    assert statuses[200] > 200, statuses
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > killed_at + 100  # traffic went on after the kill
    status = running.server.runtime.balancer.by_name["b"]
    assert status.failures >= 1


async def test_failing_member_is_ejected_and_comes_back(members, proxy, client):
    good = await members("good")
    bad = await members("bad")
    doc = pool_document(
        [{"name": "good", "url": good.url}, {"name": "bad", "url": bad.url}],
        outlierDetection={
            "consecutiveFailures": 3,
            "baseEjectionSeconds": 0.5,
            "maxEjectionPercent": 50,
        },
        healthCheck={"enabled": False},
    )
    running = await proxy(doc)
    bad.behaviour.fail_status = 503
    statuses = Counter()
    for _ in range(20):
        async with client.get(running.url + "/e") as response:
            statuses[response.status] += 1
    # 503s are retried on the good member: the client never sees them.
    assert statuses == Counter({200: 20}), statuses
    async with client.get(running.admin_url + "/status") as response:
        bad_status = next(m for m in (await response.json())["members"] if m["name"] == "bad")
    assert bad_status["state"] == "Ejected", bad_status
    assert bad_status["ejections"] == 1
    requests_while_ejected = bad.behaviour.requests
    for _ in range(10):
        await fetch_member(client, running.url + "/e")
    assert bad.behaviour.requests == requests_while_ejected

    bad.behaviour.fail_status = 0
    await asyncio.sleep(0.6)
    seen = Counter([(await fetch_member(client, running.url + "/e"))[1] for _ in range(10)])
    assert seen["bad"] >= 3, seen  # half-open trial succeeded, member is back in rotation
    async with client.get(running.admin_url + "/metrics") as response:
        metrics = await response.text()
    assert 'servicepool_ejections_total{member="bad",pool="test"} 1.0' in metrics


async def test_ejection_respects_max_ejection_percent(members, proxy, client):
    started = [await members(name) for name in ("a", "b", "c")]
    for member in started:
        member.behaviour.fail_status = 500
    doc = pool_document(
        [{"name": m.behaviour.name, "url": m.url} for m in started],
        outlierDetection={"consecutiveFailures": 1, "maxEjectionPercent": 50},
        retries={"attempts": 0},
        healthCheck={"enabled": False},
    )
    running = await proxy(doc)
    for _ in range(12):
        await fetch_member(client, running.url)
    now = asyncio.get_running_loop().time()
    ejected = [m for m in running.server.runtime.members if m.ejected_until > 0]
    assert len(ejected) == 1, now


async def test_post_is_not_retried_after_it_reached_a_member(members, proxy, client):
    first = await members("first")
    second = await members("second")
    first.behaviour.fail_status = 503
    doc = pool_document(
        [{"name": "first", "url": first.url}, {"name": "second", "url": second.url}],
        healthCheck={"enabled": False},
    )
    running = await proxy(doc)
    async with client.post(running.url + "/create", data=b"payload") as response:
        assert response.status == 503
        assert response.headers["X-ServicePool-Member"] == "first"
    assert second.behaviour.requests == 0
    # With an Idempotency-Key the client says a retry is safe.
    async with client.post(
        running.url + "/create", data=b"payload", headers={"Idempotency-Key": "k1"}
    ) as response:
        assert response.status == 200


async def test_post_is_retried_on_connect_failure_with_its_body(members, proxy, client):
    alive = await members("alive")
    doc = pool_document(
        [{"name": "dead", "url": "http://127.0.0.1:9"}, {"name": "alive", "url": alive.url}],
        strategy="roundRobin",
        healthCheck={"enabled": False},
    )
    running = await proxy(doc)
    body = b"x" * 100_000
    for _ in range(4):
        async with client.post(running.url + "/upload", data=body) as response:
            assert response.status == 200
            payload = await response.json()
            assert payload["bodyBytes"] == len(body)
            assert payload["member"] == "alive"


async def test_large_streamed_body_reaches_the_member_whole(members, proxy, client):
    member = await members("m")
    doc = pool_document(
        [{"name": "m", "url": member.url}],
        retries={"bufferBytes": 1024},
        healthCheck={"enabled": False},
    )
    running = await proxy(doc)

    async def chunks():
        for _ in range(64):
            yield b"y" * 4096

    async with client.post(running.url + "/big", data=chunks()) as response:
        assert response.status == 200
        assert (await response.json())["bodyBytes"] == 64 * 4096
    async with client.put(running.url + "/big", data=b"z" * 50_000) as response:
        assert (await response.json())["bodyBytes"] == 50_000


async def test_all_members_down_gives_a_clear_error(proxy, client):
    doc = pool_document(
        [{"name": "x", "url": "http://127.0.0.1:9"}, {"name": "y", "url": "http://127.0.0.1:7"}],
        healthCheck={"enabled": False},
    )
    running = await proxy(doc)
    async with client.get(running.url + "/") as response:
        assert response.status == 502
        body = await response.json()
    assert body["error"] == "upstream-failed"
    assert "x: connect-failure" in body["detail"] and "y: connect-failure" in body["detail"]


async def test_unhealthy_pool_is_not_ready_and_says_why(members, proxy, client):
    member = await members("m")
    member.behaviour.healthy = False
    doc = pool_document(
        [{"name": "m", "url": member.url}],
        healthCheck={"intervalSeconds": 0.1, "timeoutSeconds": 0.1, "unhealthyThreshold": 1},
    )
    running = await proxy(doc)
    assert await wait_for(lambda: running.server.runtime.balancer.routable_count(0) == 0, 3)
    async with client.get(running.admin_url + "/readyz") as response:
        assert response.status == 503
        assert "m: Unhealthy (probe /healthz returned HTTP 503)" in await response.text()
    async with client.get(running.url + "/") as response:
        assert response.status == 503
        assert (await response.json())["error"] == "no-member"
    member.behaviour.healthy = True
    assert await wait_for(lambda: running.server.runtime.balancer.routable_count(0) == 1, 3)
    async with client.get(running.admin_url + "/readyz") as response:
        assert response.status == 200


async def test_rate_limited_member_cools_down_for_retry_after(proxy, client, handler_servers):
    calls = Counter()

    async def limited(request: web.Request) -> web.Response:
        calls["limited"] += 1
        return web.Response(status=429, headers={"Retry-After": "1"})

    async def fine(request: web.Request) -> web.Response:
        calls["fine"] += 1
        return web.Response(text="ok")

    urls = [await handler_servers(limited), await handler_servers(fine)]
    doc = pool_document(
        [{"name": "limited", "url": urls[0]}, {"name": "fine", "url": urls[1]}],
        retries={"attempts": 1, "retryOn": ["429", "connect-failure"]},
        healthCheck={"enabled": False},
        models={"discover": False},  # the members see only the clients' requests
    )
    running = await proxy(doc)
    statuses = Counter()
    for _ in range(10):
        async with client.get(running.url) as response:
            statuses[response.status] += 1
    assert statuses == Counter({200: 10})
    assert calls["limited"] == 1  # cooled down after its first 429
    state = running.server.runtime.balancer.by_name["limited"]
    assert state.failures == 0 and state.rate_limited == 1
    await asyncio.sleep(1.1)
    for _ in range(4):
        async with client.get(running.url) as response:
            await response.read()
    assert calls["limited"] == 2
