"""Streaming pass-through and header handling."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time

from aiohttp import web
from multidict import CIMultiDict

from .conftest import pool_document


async def test_sse_chunks_reach_the_client_before_the_member_finishes(members, proxy, client):
    member = await members("llm")
    running = await proxy(pool_document([{"name": "llm", "url": member.url}]))
    arrivals: list[float] = []
    start = time.monotonic()
    async with client.get(running.url + "/stream?chunks=10&interval=0.1") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["X-ServicePool-Member"] == "llm"
        async for line in response.content:
            if line.startswith(b"data:"):
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 11
    # The member needs ~1 s for all chunks; the first must arrive long before that.
    assert arrivals[0] < 0.3, arrivals
    assert arrivals[-1] > 0.9, arrivals
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) < 0.3, gaps


async def test_forwarding_headers_and_hop_by_hop(proxy, client, handler_servers):
    seen: CIMultiDict[str] = CIMultiDict()

    async def inspect(request: web.Request) -> web.Response:
        if request.path == "/healthz":
            return web.Response(text="ok")
        seen.clear()
        seen.extend(request.headers)
        return web.Response(
            text="ok",
            headers={"Connection": "X-Secret", "X-Secret": "hop", "X-Kept": "end-to-end"},
        )

    url = await handler_servers(inspect)
    # The test client is a trusted proxy here: its X-Forwarded-For is extended, not replaced.
    running = await proxy(
        pool_document([{"name": "m", "url": url}]),
        trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    async with client.get(
        running.url + "/h?q=1%202",
        headers={
            "X-Forwarded-For": "10.1.2.3",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "Proxy-Authorization": "Basic abc",
            "X-Custom": "kept",
        },
    ) as response:
        assert response.status == 200
        assert response.headers["X-Kept"] == "end-to-end"
        assert "X-Secret" not in response.headers
    assert seen["X-Forwarded-For"] == "10.1.2.3, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == f"127.0.0.1:{running.server.port}"
    assert len(seen["X-Request-Id"]) == 32
    assert seen["X-Custom"] == "kept"
    assert "X-Drop-Me" not in seen and "Proxy-Authorization" not in seen
    assert seen["Host"] == url.removeprefix("http://")

    async with client.get(running.url, headers={"X-Request-Id": "abc"}) as response:
        await response.read()
    assert seen["X-Request-Id"] == "abc"


async def test_member_header_can_be_turned_off(members, proxy, client):
    member = await members("m")
    running = await proxy(pool_document([{"name": "m", "url": member.url}], memberHeader=False))
    async with client.get(running.url) as response:
        assert response.status == 200
        assert "X-ServicePool-Member" not in response.headers


async def test_head_and_large_bodies_pass_through(members, proxy, client):
    member = await members("m")
    running = await proxy(pool_document([{"name": "m", "url": member.url}]))
    async with client.head(running.url + "/x?size=5000") as response:
        assert response.status == 200
        assert await response.read() == b""
    async with client.get(running.url + "/x?size=600000") as response:
        body = await response.read()
        assert len(body) == int(response.headers["Content-Length"]) >= 599_000
    async with client.get(running.url + "/x?size=2000") as response:
        assert len(await response.read()) == int(response.headers["Content-Length"])


async def test_metrics_and_status_pages(members, proxy, client):
    member = await members("m")
    running = await proxy(pool_document([{"name": "m", "url": member.url}]))
    for _ in range(3):
        async with client.get(running.url + "/x") as response:
            await response.read()
    async with client.get(running.admin_url + "/metrics") as response:
        text = await response.text()
    assert 'servicepool_requests_total{code="200",member="m",pool="test"} 3.0' in text
    assert 'servicepool_member_in_flight{member="m",pool="test"} 0.0' in text
    assert "servicepool_request_duration_seconds_bucket" in text
    async with client.get(running.admin_url + "/status") as response:
        status = await response.json()
    assert status["pool"] == "test" and status["totalMembers"] == 1
    assert status["members"][0]["requests"] == 3
    assert status["members"][0]["ewmaLatencyMs"] > 0
    async with client.get(running.admin_url + "/healthz") as response:
        assert response.status == 200


async def test_slow_drip_headers_get_408_by_the_idle_deadline(members, proxy):
    member = await members("m")
    running = await proxy(pool_document([{"name": "m", "url": member.url}]), idle_timeout=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    started = time.monotonic()
    answer = b""
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
        writer.write(bytes([byte]))
        await writer.drain()
        try:  # a byte every 0.1 s, until an answer comes
            answer = await asyncio.wait_for(reader.read(65536), 0.1)
            break
        except TimeoutError:
            continue
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert time.monotonic() - started < 3
    assert member.behaviour.requests == 0
    writer.close()
