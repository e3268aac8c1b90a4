"""Keep-alive connections to members that close them in ways their headers do not say."""

from __future__ import annotations

import asyncio
from typing import Any

from .conftest import pool_document

EVENT = b'data: {"a":1}\n\n'
CHUNKED_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Keep-Alive: timeout=5, max=100\r\n\r\n"
    + f"{len(EVENT):x}\r\n".encode()
    + EVENT
    + b"\r\n0\r\n\r\n"
)


async def read_request(reader: asyncio.StreamReader) -> bool:
    """One request head and its Content-Length body; False at the end of the stream."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return False
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return True


async def closes_after_each_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """As llama.cpp's server does: a streamed answer, then a close a moment later, while its
    Keep-Alive header promised to keep the connection."""
    try:
        if await read_request(reader):
            writer.write(CHUNKED_ANSWER)
            await writer.drain()
            await asyncio.sleep(0.02)  # the next request may already be on its way
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def test_a_member_that_closes_after_every_stream_fails_no_post(
    raw_member: Any, proxy: Any, client: Any
) -> None:
    url = await raw_member(closes_after_each_stream)
    running = await proxy(pool_document([{"name": "m", "url": url}],
                                        healthCheck={"enabled": False}))  # fmt: skip
    statuses = []
    for _ in range(20):  # one after another: each may meet the connection the last one used
        async with client.post(f"{running.url}/v1/chat/completions", json={"x": 1}) as response:
            await response.read()
            statuses.append(response.status)
    assert statuses == [200] * 20
