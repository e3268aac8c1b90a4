"""A reference point, not a product: the least a Python reverse proxy can do per request.

    python bench/bare_proxy.py LISTEN_PORT MEMBER_HOST:MEMBER_PORT

One member, keep-alive both ways, uvloop and llhttp (httptools), callbacks only: no tasks,
no balancing, health, retries, timeouts, limits or metrics. The benchmark runs it beside
servicepool so the report can say how much of the gap to nginx is Python itself and how
much is servicepool's own work.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import httptools
import uvloop

_HOP = (b"connection", b"keep-alive", b"transfer-encoding")
_CONNECTING: set[asyncio.Future[None]] = set()


def _keep(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(n + b": " + v + b"\r\n" for n, v in headers if n.lower() not in _HOP)


class Upstream(asyncio.Protocol):
    def __init__(self, idle: list[Upstream]) -> None:
        self.idle = idle
        self.parser = httptools.HttpResponseParser(self)
        self.client: Downstream | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        body = b"".join(self.body)
        head = b"HTTP/1.1 %d OK\r\n%bContent-Length: %d\r\n\r\n" % (
            self.parser.get_status_code(),
            _keep([h for h in self.headers if h[0].lower() != b"content-length"]),
            len(body),
        )
        self.headers, self.body = [], []
        if client is not None and not client.transport.is_closing():
            client.transport.write(head + body)
        if self.parser.should_keep_alive():
            self.idle.append(self)


class Downstream(asyncio.Protocol):
    def __init__(self, idle: list[Upstream], member: tuple[str, int]) -> None:
        self.idle = idle
        self.member = member
        self.parser = httptools.HttpRequestParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        request = b"%b %b HTTP/1.1\r\n%b\r\n" % (
            self.parser.get_method(),
            self.url,
            _keep(self.headers),
        )
        self.headers = []
        while self.idle:
            upstream = self.idle.pop()
            if not upstream.closed:
                upstream.client = self
                upstream.transport.write(request)
                return
        task = asyncio.ensure_future(self._connect_and_send(request))
        _CONNECTING.add(task)
        task.add_done_callback(_CONNECTING.discard)

    async def _connect_and_send(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(lambda: Upstream(self.idle), *self.member)
        upstream.client = self
        upstream.transport.write(request)


async def main() -> None:
    port = int(sys.argv[1])
    host, member_port = sys.argv[2].rsplit(":", 1)
    idle: list[Upstream] = []
    loop = asyncio.get_running_loop()
    await loop.create_server(
        lambda: Downstream(idle, (host, int(member_port))), "127.0.0.1", port, backlog=1024
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
