"""Hostile HTTP at the proxy's front door: smuggling attempts, broken framing, absurd input.

A member records every request it receives; the proxy must answer ambiguous requests with a
clean 4xx and never forward a smuggled request, and it must keep serving afterwards.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.conftest import raw_exchange

SMUGGLING = {
    "CL.TE": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "TE.CL": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 40\r\n\r\nhello",
    "obfuscated TE (space before colon)": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    "TE chunked, identity": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "TE xchunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "invalid chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    "negative chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"-5\r\nhello\r\n0\r\n\r\n",
    "smuggled GET after chunked body": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\n"
    b"GET /admin-smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "header line too long": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "too many headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    + b"\r\n",
    "NUL in path": b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad request line": b"GET\r\n\r\n",
    "LF-only line endings with CL.TE": b"POST / HTTP/1.1\nHost: x\nContent-Length: 6\n"
    b"Transfer-Encoding: chunked\n\n0\n\nG",
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_ambiguous_or_broken_requests_get_4xx_and_reach_no_member(name, recorded, client):
    member, running = recorded
    answer = await raw_exchange(running.server.port, SMUGGLING[name])
    status_lines = [line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    assert status_lines, (name, answer[:200])
    first = int(status_lines[0].split()[1])
    if member.behaviour.requests == 0:
        assert 400 <= first < 500, (name, status_lines)  # rejected cleanly
    else:
        # Only an unambiguous reading may pass, and only the one request: never a second one.
        assert member.behaviour.requests == 1, (name, status_lines)
    assert b"SMUGGLED" not in answer and len(status_lines) <= 1, (name, answer[:300])
    assert not any("smuggled" in (rid or "") for rid in member.behaviour.seen_request_ids)
    # The proxy still serves afterwards.
    async with client.get(running.url + "/after") as response:
        assert response.status == 200


async def test_absurd_urls_do_not_break_the_proxy(recorded, client):
    _, running = recorded
    for target in (b"/" + b"a" * 7000, b"/..%2f..%2fetc%2fpasswd", b"http://evil.example/x",
                   b"/\xc3\xa9t\xc3\xa9?q=%ff%fe", b"*"):  # fmt: skip
        answer = await raw_exchange(
            running.server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n", 0.5
        )
        assert answer.startswith(b"HTTP/1."), (target[:40], answer[:100])  # an answer, not a crash
    async with client.get(running.url + "/still-fine") as response:
        assert response.status == 200


async def test_client_closing_mid_body_leaves_no_damage(recorded, client):
    member, running = recorded
    _, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.3)
    assert member.behaviour.requests == 0  # an incomplete body is never forwarded as complete
    async with client.get(running.url + "/after") as response:
        assert response.status == 200
    assert running.server.runtime.members[0].in_flight == 0
