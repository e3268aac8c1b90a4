"""Members that misbehave at the socket level: hang, reset mid-stream, speak garbage,
drip slowly, or close without answering. Bounded time, a clear error, the member marked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from tests.proxy.conftest import pool_document

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def hang(reader, writer) -> None:
    await read_request(reader)
    await asyncio.sleep(3600)


async def garbage(reader, writer) -> None:
    await read_request(reader)
    writer.write(b"\x00\x01NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    writer.close()


async def close_silently(reader, writer) -> None:
    await read_request(reader)
    writer.close()


async def reset_mid_stream(reader, writer) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    for index in range(3):
        data = f"data: {index}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        await asyncio.sleep(0.05)
    writer.transport.abort()  # RST, no terminating chunk


async def drip(reader, writer) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def status_of(client, running, name: str) -> dict:
    async with client.get(running.admin_url + "/status") as response:
        return next(m for m in (await response.json())["members"] if m["name"] == name)


async def test_hanging_member_gets_a_504_in_bounded_time(raw_member, proxy, client):
    url = await raw_member(hang)
    running = await proxy(pool_document([{"name": "hang", "url": url}],
                                        timeouts={"requestSeconds": 1},
                                        healthCheck={"enabled": False}))  # fmt: skip
    started = time.monotonic()
    async with client.get(running.url) as response:
        assert response.status == 504
        assert "hang: timeout" in (await response.json())["detail"]
    assert time.monotonic() - started < 1 + 2 * 1 + 1  # the first try and its retries
    assert (await status_of(client, running, "hang"))["failures"] >= 1


async def test_garbage_member_gets_a_clear_502(raw_member, proxy, client):
    url = await raw_member(garbage)
    running = await proxy(pool_document([{"name": "junk", "url": url}],
                                        healthCheck={"enabled": False}))  # fmt: skip
    async with client.get(running.url) as response:
        assert response.status == 502
        body = await response.json()
    assert body["error"] == "upstream-failed" and "junk" in body["detail"]
    assert (await status_of(client, running, "junk"))["failures"] >= 1


async def test_silent_close_is_retried_on_a_healthy_member(raw_member, members, proxy, client):
    url = await raw_member(close_silently)
    good = await members("good")
    running = await proxy(pool_document(
        [{"name": "rude", "url": url}, {"name": "good", "url": good.url}],
        healthCheck={"enabled": False}))  # fmt: skip
    for _ in range(10):
        async with client.get(running.url) as response:
            assert response.status == 200
            assert response.headers["X-ServicePool-Member"] == "good"


async def test_reset_mid_stream_reaches_the_client_as_a_broken_stream(raw_member, proxy, client):
    url = await raw_member(reset_mid_stream)
    running = await proxy(pool_document([{"name": "flaky", "url": url}],
                                        healthCheck={"enabled": False}))  # fmt: skip
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(running.url + "/stream") as response:
            assert response.status == 200
            async for chunk in response.content.iter_any():
                received += chunk
    assert b"data: 2" in received  # what arrived was passed through before the break
    state = await status_of(client, running, "flaky")
    assert state["failures"] >= 1 and "mid-stream" in state["lastError"]


async def test_dripping_member_is_bounded_by_request_seconds(raw_member, proxy, client):
    url = await raw_member(drip)
    running = await proxy(pool_document([{"name": "drip", "url": url}],
                                        timeouts={"requestSeconds": 1},
                                        retries={"attempts": 0},
                                        healthCheck={"enabled": False}))  # fmt: skip
    started = time.monotonic()
    try:
        async with client.get(running.url) as response:
            assert response.status in (200, 504)
            await response.read()
    except aiohttp.ClientPayloadError:
        pass  # headers were out: the stream is cut, not faked complete
    assert time.monotonic() - started < 3
