"""The proxy's own HTTP/1.1 front door and member connections, spoken to with raw sockets."""

from __future__ import annotations

import asyncio
import json

from .conftest import pool_document, raw_exchange

NO_DISCOVERY = {"discover": False}  # the member sees only the clients' requests


def bodies(answer: bytes) -> list[dict]:
    """The JSON bodies of the (Content-Length framed) responses in `answer`, in order."""
    found = []
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        found.append(json.loads(rest[:length]))
        answer = rest[length:]
    return found


async def test_pipelined_requests_are_answered_in_order(recorded):
    _, running = recorded
    payload = b"".join(
        b"GET /%d?delay=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (i, b"0.05" if i == 0 else b"0")
        for i in range(3)
    )
    answer = await raw_exchange(running.server.port, payload)
    assert [b["path"] for b in bodies(answer)] == ["/0?delay=0.05", "/1?delay=0", "/2?delay=0"]


async def test_expect_100_continue_is_answered_before_the_body(recorded):
    member, running = recorded
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")  # fmt: skip
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"hello")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    assert member.behaviour.requests == 1


async def test_http_1_0_gets_one_answer_and_a_close(recorded):
    _, running = recorded
    answer = await raw_exchange(running.server.port, b"GET /old HTTP/1.0\r\n\r\n", wait=2)
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
    assert bodies(answer)[0]["path"] == "/old"


async def test_head_answers_carry_no_body(recorded):
    _, running = recorded
    answer = await raw_exchange(
        running.server.port,
        b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 200")  # the next answer follows the head directly
    assert bodies(rest)[0]["path"] == "/after"


async def test_upgrade_requests_are_answered_as_plain_http_then_closed(recorded):
    member, running = recorded
    answer = await raw_exchange(
        running.server.port,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"\x81\x05hello",
    )
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
    assert member.behaviour.requests == 1


async def test_a_member_closing_kept_alive_connections_costs_no_failures(raw_member, proxy, client):
    """The member answers with keep-alive, then closes each connection: the proxy's pooled
    connection is stale, and the next request must go out on a fresh one, not fail."""
    served = 0

    async def one_answer_per_connection(reader, writer) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    url = await raw_member(one_answer_per_connection)
    running = await proxy(pool_document([{"name": "curt", "url": url}],
                                        healthCheck={"enabled": False}, models=NO_DISCOVERY,
                                        retries={"attempts": 0}))  # fmt: skip
    for _ in range(5):
        async with client.get(running.url) as response:
            assert response.status == 200
            assert await response.read() == b"ok"
        await asyncio.sleep(0.1)
    assert served == 5
    assert running.server.runtime.members[0].failures == 0


async def test_a_member_keep_alive_hint_is_honoured(raw_member, proxy, client):
    """`Keep-Alive: timeout=1` means the member drops idle connections after a second: the
    proxy must not keep them longer (it keeps none shorter than a second's margin)."""
    connections = 0

    async def hinting(reader, writer) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    url = await raw_member(hinting)
    running = await proxy(pool_document([{"name": "hint", "url": url}],
                                        healthCheck={"enabled": False},
                                        models=NO_DISCOVERY))  # fmt: skip
    for _ in range(3):
        async with client.get(running.url) as response:
            assert response.status == 200
    assert connections == 3  # with a hint of 1 s there is no safe idle time: no reuse
