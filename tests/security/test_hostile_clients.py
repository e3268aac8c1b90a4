"""One hostile client must not stall, bloat or empty the pool.

Each attack runs against a real proxy and real members while a normal client keeps asking;
each test bounds the time the attack may cost and, where memory is the risk, the proxy's
RSS (read from its own process). The bounds are loose enough for a loaded 2-core machine
and far below what the unbounded behaviour cost (stalls of seconds, hundreds of MB).
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from tests.proxy.conftest import pool_document, raw_exchange, wait_for
from tests.support import (
    MemberProcess,
    ProxyProcess,
    start_member_process,
    start_proxy_process,
)

pytestmark = pytest.mark.timeout(60)

HEADER_FLOOD = b"GET /flood HTTP/1.1\r\nHost: x\r\nX-Big: "
TRAILER_FLOOD = (
    b"POST /flood HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: "
)
# A flood is answered once the proxy has read one header line (8 KiB); loopback socket
# buffers take a few MB more before it reads at all. Far more than that sent without an
# answer means the line was not bounded as it arrived.
FLOOD_CAP = 32 << 20
SLOWEST_NORMAL_SECONDS = 2.0  # an unbounded line stalled normal requests for 6-8 s
RSS_GROWTH_MB = 60  # ten unbounded lines grew the proxy by 556 MB


@dataclass
class Pool:
    member: MemberProcess
    proxy: ProxyProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    async def member_status(self, client: aiohttp.ClientSession) -> dict:
        async with client.get(f"http://127.0.0.1:{self.proxy.admin_port}/status") as response:
            return (await response.json())["members"][0]


@pytest.fixture
def pool(tmp_path) -> Iterator[Pool]:
    """A proxy process in front of one member process, health probes off (so only passive
    health could eject the member), retries buffered up to 64 KiB."""
    member = start_member_process("m")
    spec = {"members": [{"name": "m", "url": member.url}], "healthCheck": {"enabled": False},
            "retries": {"bufferBytes": 65536}, "timeouts": {"requestSeconds": 2}}  # fmt: skip
    proxy = start_proxy_process(tmp_path, spec, "--trailer-timeout", "1", "--head-timeout", "1")
    yield Pool(member, proxy)
    proxy.stop()
    member.kill()


async def flood(port: int, head: bytes) -> tuple[bytes, int]:
    """Send `head`, then endless `a` until the proxy answers or closes (or FLOOD_CAP);
    returns the start of the answer and how much was sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(reader.read(200))
    sent = 0
    try:
        writer.write(head)
        while not answer.done() and sent < FLOOD_CAP:
            writer.write(b"a" * 16384)
            sent += 16384
            await writer.drain()
            await asyncio.sleep(0)
    except OSError:
        pass
    try:
        return await asyncio.wait_for(answer, 5), sent
    except (OSError, TimeoutError):
        return b"", sent
    finally:
        writer.transport.abort()


async def normal_client(url: str, until: float) -> tuple[list[float], list[str]]:
    """GET every 20 ms until `until`; the time each took and every failure."""
    times: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                async with session.get(url + "/ok") as response:
                    await response.read()
                    if response.status != 200:
                        errors.append(str(response.status))
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(type(exc).__name__)
            times.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
    return times, errors


async def under_attack(pool: Pool, attack, seconds: float = 2.5):
    """Run `attack` (a coroutine factory taking the port) in a loop for `seconds` beside a
    normal client; returns (attack results, normal times, normal errors)."""
    until = time.monotonic() + seconds
    results: list = []

    async def keep_attacking() -> None:
        while time.monotonic() < until:
            results.append(await attack(pool.proxy.port))

    normal = asyncio.create_task(normal_client(pool.url, until))
    await asyncio.gather(*(keep_attacking() for _ in range(10)))
    times, errors = await normal
    return results, times, errors


async def assert_unharmed(pool: Pool, times: list[float], errors: list[str], before: float):
    assert not errors, errors
    assert times and max(times) < SLOWEST_NORMAL_SECONDS, max(times)
    assert pool.proxy.rss_mb() - before < RSS_GROWTH_MB, (before, pool.proxy.rss_mb())
    async with aiohttp.ClientSession() as client:
        member = await pool.member_status(client)
    assert member["ejections"] == 0 and member["consecutiveFailures"] == 0, member


async def test_an_endless_header_line_is_refused_without_stalling_other_clients(pool):
    before = pool.proxy.rss_mb()
    results, times, errors = await under_attack(pool, lambda port: flood(port, HEADER_FLOOD))
    assert results
    for answer, sent in results:
        assert answer.startswith(b"HTTP/1.1 431") and sent < FLOOD_CAP, (answer, sent)
    await assert_unharmed(pool, times, errors, before)


async def test_an_endless_trailer_line_is_refused_without_stalling_other_clients(pool):
    before = pool.proxy.rss_mb()
    results, times, errors = await under_attack(pool, lambda port: flood(port, TRAILER_FLOOD))
    assert results
    for answer, sent in results:
        # The member may have answered the body before the trailers ran away; then the
        # connection is closed without a second answer. Either way: bounded.
        assert sent < FLOOD_CAP, sent
        assert answer == b"" or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 200")), answer
    await assert_unharmed(pool, times, errors, before)


async def test_endless_header_fields_of_legal_size_are_refused(pool):
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(200))
    answer = await raw_exchange(pool.proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def send_head_slowly(port: int, give_up: float) -> bytes:
    """A head that never ends, one byte every 0.2 s (never idle), until an answer comes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        while not select.select([sock], [], [], 0.2)[0]:
            if time.monotonic() > give_up:
                return b""
            sock.sendall(b"X")
        return sock.recv(65536)


async def test_a_request_head_sent_too_slowly_gets_408_by_its_deadline(pool):
    started = time.monotonic()
    answer = await asyncio.to_thread(send_head_slowly, pool.proxy.port, started + 6)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b"the request head did not arrive in time" in answer
    assert time.monotonic() - started < 4  # --head-timeout 1, swept every 0.25 s


async def test_trailers_sent_too_slowly_get_408_by_their_deadline(pool):
    started = time.monotonic()
    answer = await raw_exchange(pool.proxy.port, TRAILER_FLOOD + b"a", wait=5)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert time.monotonic() - started < 4  # --trailer-timeout 1


async def test_unread_pipelined_answers_wait_instead_of_filling_memory(pool):
    before = pool.proxy.rss_mb()
    _, writer = await asyncio.open_connection("127.0.0.1", pool.proxy.port)
    writer.write(b"GET /x?size=200000 HTTP/1.1\r\nHost: x\r\n\r\n" * 4000)  # 160 kB in
    until = time.monotonic() + 2
    times, errors = await normal_client(pool.url, until)
    async with aiohttp.ClientSession() as client:
        async with client.get(pool.member.url + "/control/stats") as response:
            served = (await response.json())["requests"]
        member = await pool.member_status(client)
    writer.transport.abort()
    # Unbounded, all 4000 were served (800 MB of answers); bounded, a socket buffer's worth.
    assert served - len(times) - 1 < 100, served
    assert member["failures"] == 0
    await assert_unharmed(pool, times, errors, before)


async def test_abandoned_uploads_never_eject_the_member(pool):
    async def abandon(port: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        writer.write(b"u" * 200_000)  # past the 64 KiB buffer: the upload streams
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    before = pool.proxy.rss_mb()
    _, times, errors = await under_attack(pool, abandon, seconds=1.5)
    await assert_unharmed(pool, times, errors, before)
    async with aiohttp.ClientSession() as client:
        assert (await pool.member_status(client))["failures"] == 0


async def test_a_body_that_stops_mid_upload_gets_408_and_is_not_the_members_fault(pool):
    reader, writer = await asyncio.open_connection("127.0.0.1", pool.proxy.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
    writer.write(b"u" * 200_000)  # streams to the member, then nothing more comes
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(200), 6)  # timeouts.requestSeconds 2
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    async with aiohttp.ClientSession() as client:
        member = await pool.member_status(client)
    assert member["failures"] == 0 and member["consecutiveFailures"] == 0, member


async def test_a_malformed_chunked_body_mid_upload_is_not_the_members_fault(pool):
    reader, writer = await asyncio.open_connection("127.0.0.1", pool.proxy.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(b"%x\r\n%s\r\n" % (100_000, b"u" * 100_000))  # streams to the member
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(b"zz\r\n")  # not a chunk size
    answer = await asyncio.wait_for(reader.read(200), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer
    async with aiohttp.ClientSession() as client:
        assert (await pool.member_status(client))["failures"] == 0


async def test_slow_uploads_are_received_whole_before_a_member_is_picked(members, proxy):
    member = await members("m")
    running = await proxy(pool_document([{"name": "m", "url": member.url}],
                                        healthCheck={"enabled": False}))  # fmt: skip
    writers = []
    for _ in range(50):
        _, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        writer.write(b"s" * 1024)
        writers.append(writer)
    await asyncio.sleep(0.5)
    assert member.behaviour.requests == 0  # 2 MB is under retries.bufferBytes (8 MiB)
    for writer in writers:
        writer.transport.abort()


async def test_untrusted_clients_cannot_set_forwarding_headers(members, proxy, client):
    member = await members("m")
    document = pool_document([{"name": "m", "url": member.url}], healthCheck={"enabled": False})
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
              "X-Forwarded-Host": "bank.example", "Forwarded": "for=203.0.113.9;proto=https",
              "X-Real-IP": "203.0.113.9"}  # fmt: skip
    untrusted = await proxy(document)
    trusting = await proxy(document, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    async with client.get(untrusted.url + "/echo", headers=forged) as response:
        seen = await response.json()
        assert seen["forwardedFor"] == "127.0.0.1"
        assert seen["forwarded"] is None and seen["realIp"] is None
    async with client.get(trusting.url + "/echo", headers=forged) as response:
        seen = await response.json()
        assert seen["forwardedFor"] == "203.0.113.9, 127.0.0.1"
        assert seen["forwarded"] == forged["Forwarded"] and seen["realIp"] == "203.0.113.9"


@pytest.mark.parametrize(
    "head",
    [b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
     b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"],
    ids=["no Host", "two Hosts", "two Hosts in HTTP/1.0"],
)  # fmt: skip
async def test_a_missing_or_repeated_host_gets_400(recorded, head):
    member, running = recorded
    answer = await raw_exchange(running.server.port, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert member.behaviour.requests == 0


async def test_http_1_0_with_transfer_encoding_is_answered_then_closed(recorded):
    member, running = recorded
    answer = await raw_exchange(
        running.server.port,
        b"POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        b"GET /second HTTP/1.0\r\nHost: x\r\n\r\n",
        wait=2,
    )
    assert answer.count(b"HTTP/1.1 ") == 1 and b"connection: close" in answer.lower(), answer
    assert member.behaviour.requests == 1


async def test_an_upgrade_with_a_body_gets_a_clean_400(recorded, caplog):
    member, running = recorded
    with caplog.at_level(logging.ERROR, logger="servicepool.proxy"):
        answer = await raw_exchange(
            running.server.port,
            b"POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Content-Length: 5\r\n\r\nhello",
        )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert member.behaviour.requests == 0


async def test_closed_connections_are_freed_without_a_garbage_collection(recorded, client):
    member, running = recorded
    port = running.server.port
    attacks = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /x?size=300000 HTTP/1.1\r\nHost: x\r\n\r\n",
        HEADER_FLOOD + b"a" * 20000,
        TRAILER_FLOOD + b"a" * 20000,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: ws\r\nConnection: upgrade\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        b"GET /x?size=1000 HTTP/1.1\r\nHost: x\r\n\r\n" * 40,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10,
    ]
    gc.collect()
    gc.disable()
    try:
        for payload in attacks * 3:
            await raw_exchange(port, payload, wait=0.2)
        assert await wait_for(lambda: not running.server._front.connections, 5)
        assert await wait_for(lambda: member.behaviour.in_flight == 0, 5)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kept = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    ours = {"FrontConnection", "UpstreamConnection", "Request", "BodyReader", "ByteStream",
            "UpstreamResponse", "HttpRequestParser", "HttpResponseParser"}  # fmt: skip
    assert not kept & ours, kept & ours


async def test_memory_returns_near_its_baseline_after_floods_without_a_forced_collection(pool):
    before = pool.proxy.rss_mb()
    for head in (HEADER_FLOOD, TRAILER_FLOOD):
        await under_attack(pool, lambda port, head=head: flood(port, head), seconds=1.5)
    await asyncio.sleep(3)  # the last connections linger up to 2 s after their answer
    assert pool.proxy.rss_mb() - before < 20, (before, pool.proxy.rss_mb())
