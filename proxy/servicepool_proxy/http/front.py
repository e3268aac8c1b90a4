"""The proxy's front door: an HTTP/1.1 server on asyncio protocols and llhttp (httptools).

It parses strictly (ambiguous framing is a 400), bounds what a client may send as the bytes
arrive (each line, the whole head and trailer section, the field count, idle, head and
trailer time), serves pipelined requests in order and one at a time (the next one waits
until the previous answer has left the write buffer, and at most MAX_PIPELINED wait
parsed), applies back-pressure both ways, and drains in-flight exchanges on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from servicepool_proxy.http.bytestream import WritePacing
from servicepool_proxy.http.exchange import (
    BodyReader,
    ClientGone,
    Request,
    RequestRejected,
    Response,
    StreamResponse,
)
from servicepool_proxy.http.heap import release_free_memory
from servicepool_proxy.http.linemeter import LineMeter, Section
from servicepool_proxy.tasks import cancel_and_wait

log = logging.getLogger("servicepool.proxy")

Handler = Callable[[Request], Awaitable[Response | StreamResponse]]

MAX_HEADERS = 128  # header fields, and trailer fields, per request
MAX_PIPELINED = 16  # parsed requests waiting behind the one being served
# Outside a body the parser is fed this much at a time, so that a read full of pipelined
# requests stops being parsed once MAX_PIPELINED wait (the rest waits unparsed).
HEAD_SLICE = 1024
# After a last answer, what the client still sends is read and dropped for up to this long
# and this much, so the answer is not destroyed by a reset (nginx's lingering close).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
# A sweep after connections closed gives freed heap memory back, at most this often.
TRIM_SECONDS = 1.0


class FrontConnection(WritePacing, asyncio.Protocol):
    """One client connection: parse, hand each request to the handler, write answers."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.closed = False
        self.must_close = False
        self._lingering = False
        self._dropped = 0  # bytes read and dropped while lingering
        # Dropped when the connection is lost: it holds this protocol's callbacks (a cycle).
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._meter = LineMeter(server.max_header_bytes, server.max_head_bytes)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._fields = 0
        self._body: BodyReader | None = None
        self._ends_on_line_feed = True  # the previous request ended with a line feed
        self._queue: deque[Request] = deque()
        self._backlog = b""  # received but not parsed while MAX_PIPELINED requests wait
        self._busy = False
        self._broken = False
        self._reading_paused = False
        self.idle_since: float | None = None  # loop time when it began waiting for a head
        self.head_since: float | None = None  # loop time of the first byte of a head
        self.trailer_since: float | None = None  # loop time of the first trailer byte

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self.server.connections.add(self)
        self.idle_since = self.server.loop.time()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES and self.transport is not None:
                self.transport.pause_reading()  # a client still sending is not reading
            return
        if self._broken:
            return
        if self._backlog:  # a read that was under way when reading paused
            self._backlog += data
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Parse `data`, checking the line bounds after each piece; keep what follows a full
        queue of pipelined requests for later."""
        parser = self._parser
        if parser is None:  # closed, or broken by an earlier rejection
            return
        meter = self._meter
        size = len(data)
        view = memoryview(data) if size > HEAD_SLICE else None
        start = 0
        while start < size:
            if len(self._queue) >= MAX_PIPELINED:
                self._backlog = data[start:]
                self.pause_reading()
                return
            end = size if self._body is not None else min(size, start + HEAD_SLICE)
            try:
                parser.feed_data(data if view is None else view[start:end])
            except httptools.HttpParserUpgrade:
                # Upgrades are not proxied: answer the request as plain HTTP, read no further.
                self.must_close = True
                self._lingering = True
                return
            except httptools.HttpParserError as exc:
                cause = exc.__context__
                if isinstance(cause, RequestRejected):  # raised by one of our callbacks
                    self._reject(cause.with_traceback(None))  # its frames hold this connection
                else:
                    self._reject(RequestRejected(400, f"malformed request: {exc}"))
                return
            rejected = meter.measure(data, start, end)
            if rejected is not None:
                self._reject(rejected)
                return
            if self.trailer_since is None and meter.in_trailers:
                self.trailer_since = self.server.loop.time()
            start = end

    def _parse_backlog(self) -> None:
        """Parse what waited behind a full queue, now that a request has left it."""
        if not self._backlog or self._broken or self._lingering or self.closed:
            return
        data, self._backlog = self._backlog, b""
        self._feed(data)
        self.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.server.closed_since_trim += 1
        body, self._body = self._body, None
        if body is not None and not body.eof:
            body.fail(ClientGone("the client left before the body was complete"))
        for request in self._queue:
            if request.content is not None:
                request.content.fail(ClientGone("the client left"))
        self._drop_input()
        self.resume_writing()  # a writer waiting to drain sees `closed` and stops

    def _drop_input(self) -> None:
        """Nothing more will be parsed: let go of the parser (a cycle through its callbacks,
        and the partial line it holds), what waits unparsed and unserved requests."""
        self._parser = None
        self._backlog = b""
        self._queue.clear()
        self._headers = []

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._fields = 0
        self._meter.begin(Section.HEAD, self._ends_on_line_feed)
        self.head_since = self.server.loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.server.max_header_bytes:
            raise RequestRejected(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        in_head = self._meter.section is Section.HEAD
        size = len(name) + len(value)
        if size > self.server.max_header_bytes:
            raise RequestRejected(431, ("header" if in_head else "trailer") + " field too large")
        self._fields += 1
        if self._fields > MAX_HEADERS:
            raise RequestRejected(431, "too many header fields")
        rejected = self._meter.add_line(size + 4)  # with ": " and CRLF
        if rejected is not None:
            raise rejected
        if in_head:  # trailer fields are read and dropped
            self._headers.append(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            )

    def on_headers_complete(self) -> None:
        self.idle_since = None  # the idle bound also covered how long the head took
        self.head_since = None
        parser = self._parser
        assert parser is not None
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        self._headers = []
        version = parser.get_http_version()
        hosts = headers.getall("Host", [])
        if len(hosts) > 1:
            raise RequestRejected(400, "more than one Host header")
        if not hosts and version == "1.1":
            raise RequestRejected(400, "no Host header")
        target = self._origin_form(self._url)
        length_text = headers.get("Content-Length")
        content_length = int(length_text) if length_text is not None else None
        chunked = "Transfer-Encoding" in headers
        if (chunked or content_length) and parser.should_upgrade():
            raise RequestRejected(400, "an upgrade request cannot carry a body")
        # RFC 9112 6.1: HTTP/1.0 framing with Transfer-Encoding is suspect; close after it.
        keep_alive = parser.should_keep_alive() and not (chunked and version == "1.0")
        body = None
        if chunked or content_length:
            expect = headers.get("Expect", "").lower() == "100-continue"
            body = BodyReader(self, expect)
        elif content_length == 0:
            body = BodyReader(self, False)
            body.feed_eof()
        self._body = body
        if chunked:
            self._meter.begin(Section.CHUNK_SIZE)
        else:
            self._meter.end()
        self._ends_on_line_feed = not content_length
        request = Request(
            self, parser.get_method().decode("ascii"), target, version,
            headers, body, content_length, keep_alive, self.remote,
        )  # fmt: skip
        self._queue.append(request)
        if not self._busy:
            self._next()

    def on_body(self, body: bytes) -> None:
        self._meter.end()  # chunk data, not a line
        if self._body is not None:
            self._body.feed(body)

    def on_chunk_header(self) -> None:
        self._meter.begin(Section.AFTER_CHUNK_HEADER)

    def on_chunk_complete(self) -> None:
        self._meter.begin(Section.CHUNK_SIZE)

    def on_message_complete(self) -> None:
        self._meter.end()
        self.trailer_since = None
        if self._body is not None:
            self._body.feed_eof()
            self._body = None

    def check_time(self, now: float) -> None:
        """Enforce the idle, head and trailer deadlines (the server sweeps every connection)."""
        server = self.server
        idle_since = self.idle_since
        if self.trailer_since is not None and now - self.trailer_since > server.trailer_timeout:
            self._reject(RequestRejected(408, "the trailer section did not arrive in time"))
        elif (self.head_since is not None and now - self.head_since > server.head_timeout) or (
            idle_since is not None and now - idle_since > server.idle_timeout
        ):
            self.close()

    # -- serving --------------------------------------------------------------------------

    def _origin_form(self, raw: bytes) -> str:
        target = raw.decode("utf-8", "surrogateescape")
        if target.startswith("/"):
            return target
        if "://" in target:  # absolute-form: keep the path and query only
            parts = urlsplit(target)
            return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        raise RequestRejected(400, "request target must be a path or an absolute URL")

    def _next(self) -> None:
        if self._queue and not self.closed:
            self._busy = True
            request = self._queue.popleft()
            self.server.track(self.server.loop.create_task(self._serve(request)))
            if self._backlog:
                self.server.loop.call_soon(self._parse_backlog)
        else:
            self._busy = False
            if self.server.draining:
                self.close()
            else:
                self.idle_since = self.server.loop.time()

    async def _serve(self, request: Request) -> None:
        try:
            response = await self.server.handler(request)
        except RequestRejected as rejected:  # the body turned out malformed
            response = rejected.response()
            self.must_close = True
        except Exception:
            if self.closed:
                return
            log.exception("request %s %s failed", request.method, request.target)
            response = Response(500, body=b'{"error": "internal"}\n',
                                content_type="application/json")  # fmt: skip
            self.must_close = True
        finally:
            if request.content is not None:
                request.content.release()
        if self.closed:
            return
        body = request.content
        if body is not None and not body.eof:
            self.must_close = True  # the rest of the body was not read: no reuse
        if not request.keep_alive or self.server.draining:
            self.must_close = True
        if isinstance(response, Response):
            self._write_whole(response, request)
        if self.server.access_log:
            log.info('%s "%s %s" %d', self.remote, request.method, request.target,
                     response.status)  # fmt: skip
        if self.must_close:
            self.close(graceful=True)
            return
        await self.writable()  # the next answer waits until this one has (mostly) left
        if not self.closed:
            self._next()

    def _write_whole(self, response: Response, request: Request | None) -> None:
        """Send a whole response (to no parsed request: a rejection, then close)."""
        if response.close_after or request is None:
            self.must_close = True
        head = self.encode_head(request, response.status, response.reason,
                                response.headers, len(response.body))  # fmt: skip
        head_only = request is not None and request.method == "HEAD"
        self.write(head if head_only else head + response.body)

    def encode_head(
        self, request: Request | None, status: int, reason: str, headers: CIMultiDict[str],
        length: int | None = None,
    ) -> bytes:  # fmt: skip
        """Status line and headers, with this connection's framing and keep-alive."""
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        if length is not None and "Content-Length" not in headers:
            lines.append(f"Content-Length: {length}\r\n")
        if self.must_close or request is None or not request.keep_alive or self.server.draining:
            self.must_close = True
            lines.append("Connection: close\r\n")
        elif request.version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    def _reject(self, rejected: RequestRejected) -> None:
        """Answer a request that cannot be parsed or is too large, then close."""
        self._broken = True
        self.head_since = self.trailer_since = None
        self._drop_input()
        self.pause_reading()
        if self._body is not None:
            self._body.fail(rejected)  # the handler reading it answers with rejected.status
        if self._busy:
            self.must_close = True  # the exchange in progress ends the connection
            return
        self._write_whole(rejected.response(), None)
        self.close(graceful=True)

    # -- I/O helpers ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise ClientGone("the client connection is closed")
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the client is not reading what was written."""
        await self.writable()
        if self.closed:
            raise ClientGone("the client connection is closed")

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._broken
            and not self._backlog
            and (self._body is None or not self._body.full)
            and self.transport is not None
            and not self.closed
        ):
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self, graceful: bool = False) -> None:
        """Close now, or (graceful) after what was written has gone out, lingering a while."""
        transport = self.transport
        if self.closed or transport is None:
            return
        self.closed = True
        self.idle_since = self.head_since = self.trailer_since = None
        self._drop_input()
        if not graceful:
            transport.abort()
        elif transport.can_write_eof():
            transport.write_eof()  # our FIN follows the answer; keep reading and dropping
            self._lingering = True
            if self._reading_paused:
                self._reading_paused = False
                transport.resume_reading()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    @property
    def idle(self) -> bool:
        return not self._busy


class FrontServer:
    """Listens for clients and serves each request with `handler`."""

    def __init__(
        self, handler: Handler, *, idle_timeout: float, head_timeout: float,
        trailer_timeout: float, max_header_bytes: int, max_head_bytes: int,
        access_log: bool = False,
    ) -> None:  # fmt: skip
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.head_timeout = head_timeout
        self.trailer_timeout = trailer_timeout
        self.max_header_bytes = max_header_bytes
        self.max_head_bytes = max_head_bytes
        self.access_log = access_log
        self.connections: set[FrontConnection] = set()
        self.closed_since_trim = 0
        self.draining = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()  # built inside the proxy's running loop

    def track(self, task: asyncio.Future[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen; returns the bound port."""
        loop = self.loop
        self._sweeper = loop.create_task(self._sweep_idle(), name="idle-sweep")
        self._server = await loop.create_server(
            lambda: FrontConnection(self), host, port,
            reuse_port=reuse_port or None, backlog=1024, reuse_address=True,
        )  # fmt: skip
        return int(self._server.sockets[0].getsockname()[1])

    async def _sweep_idle(self) -> None:
        """Close connections idle, or slow to send a head or trailers, past their deadline,
        and give memory freed by many closed connections back to the system.

        One sweep a quarter of the shortest timeout: cheaper than a timer per request, and
        a deadline is overrun by at most a quarter of that timeout.
        """
        period = max(0.05, min(self.idle_timeout, self.head_timeout, self.trailer_timeout) / 4)
        trimmed = 0.0
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for connection in list(self.connections):
                connection.check_time(now)
            if self.closed_since_trim and now - trimmed >= TRIM_SECONDS:
                self.closed_since_trim = 0
                trimmed = now
                release_free_memory()

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop accepting, let exchanges in progress finish within the grace period."""
        self.draining = True
        await cancel_and_wait(self._sweeper)
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.idle:
                connection.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_seconds)
        for connection in list(self.connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
