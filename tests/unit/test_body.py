"""Request bodies: read whole within the limit and the process-wide budget, else streamed."""

from __future__ import annotations

import asyncio

import pytest

from servicepool_proxy.http.body import (
    BodyTooLarge,
    BufferBudget,
    StreamedBody,
    held_bytes,
    read_body,
)
from servicepool_proxy.http.bytestream import ByteStream


def stream_of(*chunks: bytes) -> ByteStream:
    stream = ByteStream(None, 1 << 30)
    for chunk in chunks:
        stream.feed(chunk)
    stream.feed_eof()
    return stream


async def test_a_body_within_the_limit_is_read_whole_and_held_from_the_budget() -> None:
    budget = BufferBudget(100)
    body = await read_body(stream_of(b"a" * 30, b"b" * 30), 60, 80, budget)
    assert body == b"a" * 30 + b"b" * 30
    assert budget.used == held_bytes(body) == 60
    budget.give(held_bytes(body))
    assert budget.used == 0


async def test_a_declared_length_over_the_limit_streams_at_once() -> None:
    budget = BufferBudget(100)
    body = await read_body(stream_of(b"a" * 200), 200, 80, budget)
    assert isinstance(body, StreamedBody) and held_bytes(body) == 0 and budget.used == 0


async def test_a_body_streams_when_the_budget_runs_out() -> None:
    budget = BufferBudget(50)
    stream = ByteStream(None, 1 << 30)

    async def arrive() -> None:  # one chunk at a time, as from a socket
        for chunk in (b"a" * 30, b"b" * 30, b"c"):
            stream.feed(chunk)
            await asyncio.sleep(0.01)
        stream.feed_eof()

    arriving = asyncio.create_task(arrive())
    body = await read_body(stream, None, 1000, budget)
    assert isinstance(body, StreamedBody)
    assert held_bytes(body) == budget.used == 30
    assert b"".join([chunk async for chunk in body.chunks()]) == b"a" * 30 + b"b" * 30 + b"c"
    await arriving


async def test_an_oversized_body_gives_its_share_back() -> None:
    budget = BufferBudget(1000)
    with pytest.raises(BodyTooLarge):
        await read_body(stream_of(b"a" * 30, b"b" * 30), None, 1000, budget, max_bytes=40)
    assert budget.used == 0
