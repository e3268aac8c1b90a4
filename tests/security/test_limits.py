"""Configurable limits on what a client may send: body size, header size, slow bodies."""

from __future__ import annotations

import asyncio
import time

from tests.proxy.conftest import pool_document


async def start(members, proxy, **options):
    member = await members("m")
    doc = pool_document([{"name": "m", "url": member.url}], healthCheck={"enabled": False},
                        limits={"maxRequestBodyBytes": 1000}, retries={"bufferBytes": 512},
                        timeouts={"requestSeconds": 1})  # fmt: skip
    return member, await proxy(doc, **options)


async def test_oversized_bodies_get_413_and_never_reach_the_member(members, proxy, client):
    member, running = await start(members, proxy)
    async with client.post(running.url, data=b"x" * 1001) as response:  # declared length
        assert response.status == 413
        assert (await response.json())["error"] == "body-too-large"
    assert member.behaviour.requests == 0  # refused before anything was sent

    async def chunks():
        for _ in range(10):
            yield b"y" * 300
            await asyncio.sleep(0.02)  # arrives piece by piece: the limit trips mid-upload

    async with client.post(running.url, data=chunks()) as response:  # chunked, grows past it
        assert response.status == 413
    # The upload was cut mid-way: the member may have seen its start, never a whole request.
    await asyncio.sleep(0.2)
    assert member.behaviour.max_in_flight_seen <= 1
    async with client.post(running.url, data=b"z" * 1000) as response:  # at the limit: fine
        assert response.status == 200
        assert (await response.json())["bodyBytes"] == 1000
    state = running.server.runtime.members[0]
    assert state.failures == 0  # the client's excess is not the member's fault


async def test_header_size_limit_is_configurable(members, proxy, client):
    member, running = await start(members, proxy, max_header_bytes=1024)
    async with client.get(running.url, headers={"X-Big": "a" * 2000}) as response:
        assert response.status in (400, 431)
    async with client.get(running.url, headers={"X-Ok": "a" * 500}) as response:
        assert response.status == 200
    assert member.behaviour.requests == 1


async def test_slow_drip_body_is_cut_with_408(members, proxy):
    member, running = await start(members, proxy)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    await writer.drain()
    started = time.monotonic()
    for _ in range(30):
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.1)
        if time.monotonic() - started > 1.5:
            break
    answer = await asyncio.wait_for(reader.read(200), 3)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert member.behaviour.requests == 0
