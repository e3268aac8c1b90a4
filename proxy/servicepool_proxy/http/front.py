"""A client connection of the proxy's front door: an HTTP/1.1 server protocol on asyncio.

It serves pipelined requests in order and one at a time (the next one waits until the
previous answer has left the write buffer), enforces the idle, head and trailer deadlines,
applies back-pressure both ways, and is the one writer of responses: whole ones here, the
head of a streamed one through `encode_head`. Parsing is its other half (request_parsing.py).
"""

from __future__ import annotations

import asyncio
import asyncio.protocols  # named by the compiled build's code for the base class
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from multidict import CIMultiDict

from servicepool_proxy.http.exchange import (
    ClientGone,
    Request,
    RequestRejected,
    Response,
    StreamResponse,
    status_line,
)
from servicepool_proxy.http.request_parsing import RequestParsing

if TYPE_CHECKING:  # listener.py imports this module
    from servicepool_proxy.http.listener import FrontServer

log = logging.getLogger("servicepool.proxy")

Handler = Callable[[Request], Awaitable[Response | StreamResponse]]

# After a last answer, what the client still sends is read and dropped for up to this long
# and this much, so the answer is not destroyed by a reset (nginx's lingering close).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024


class FrontConnection(RequestParsing):
    """One client connection: parse, hand each request to the handler, write answers."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        self._handler = server.handler
        self._tasks = server.tasks
        self._access_log = server.access_log
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.closed = False
        self.must_close = False
        self._lingering = False
        self._dropped = 0  # bytes read and dropped while lingering
        self._busy = False
        self._reading_paused = False
        self._serving: asyncio.Task[None] | None = None  # the connection's serving task
        self._waiting: asyncio.Future[None] | None = None  # its wait for the next request
        self._in_hand: Request | None = None  # handed to the serving task, not yet taken
        super().__init__(server)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self.server.connections.add(self)
        self.idle_since = self._loop.time()

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
        self._stop_waiting()
        self.resume_writing()  # a writer waiting to drain sees `closed` and stops

    def check_time(self, now: float) -> None:
        """Enforce the idle, head and trailer deadlines (the server sweeps every connection)."""
        server = self.server
        idle_since, head_since = self.idle_since, self.head_since
        idle_over = idle_since is not None and now - idle_since > server.idle_timeout
        if self.trailer_since is not None and now - self.trailer_since > server.trailer_timeout:
            self._reject(RequestRejected(408, "the trailer section did not arrive in time"))
        elif head_since is not None and (idle_over or now - head_since > server.head_timeout):
            # (the idle bound runs on until a head is complete)
            self._reject(RequestRejected(408, "the request head did not arrive in time"))
        elif idle_over:
            self.close()

    # -- serving --------------------------------------------------------------------------

    def _next(self) -> None:
        """Hand the next parsed request, if any, to the serving task (started or woken)."""
        if self.closed or not self._queue:
            return
        self._busy = True
        self._in_hand = self._queue.popleft()
        if self._backlog:
            self._loop.call_soon(self._parse_backlog)
        task = self._serving
        if task is None:  # named here: a Task named by asyncio formats "Task-N"
            task = self._serving = asyncio.Task(self._serve_all(), loop=self._loop, name="serve")
        else:
            self._stop_waiting()
        self._tasks.add(task)

    async def _serve_all(self) -> None:
        """The connection's serving task: its requests in order, one at a time, waiting for
        the next while the connection is idle (one task per connection, not per request)."""
        task = self._serving
        assert task is not None  # set by _next before this first runs
        try:
            while not self.closed:
                request = self._in_hand
                if request is None:
                    self._busy = False
                    self._tasks.discard(task)
                    if self.server.draining:
                        self.close()
                        return
                    self.idle_since = self._loop.time()
                    waiter = self._waiting = self._loop.create_future()
                    await waiter  # until _next hands over a request, or the connection closes
                    continue
                self._in_hand = None
                await self._serve(request)
                self._next()
        finally:
            self._busy = False
            self._in_hand = self._waiting = None
            self._tasks.discard(task)
            self._serving = None  # the task and this connection no longer hold each other

    def _stop_waiting(self) -> None:
        """Wake the serving task waiting for a request: one has come, or the connection has
        closed."""
        waiter = self._waiting
        if waiter is not None:
            self._waiting = None
            if not waiter.done():
                waiter.set_result(None)

    async def _serve(self, request: Request) -> None:
        """One request: the handler's answer written, then the connection closed or kept."""
        try:
            response = await self._handler(request)
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
        if self._access_log:
            log.info('%s "%s %s" %d', self.remote, request.method, request.target,
                     response.status)  # fmt: skip
        if self.must_close:
            self.close(graceful=True)
            return
        waiter = self._writable  # the next answer waits until this one has (mostly) left
        if waiter is not None and not waiter.done():
            await waiter

    def _write_whole(self, response: Response, request: Request | None) -> None:
        """Send a whole response (to no parsed request: a rejection, then close)."""
        if response.close_after or request is None:
            self.must_close = True
        head = self.encode_head(request, response.status, response.reason, response.lines,
                                response.own_headers, len(response.body))  # fmt: skip
        head_only = request is not None and request.method == "HEAD"
        self.write(head if head_only else head + response.body)

    def encode_head(
        self, request: Request | None, status: int, reason: str, lines: list[bytes],
        headers: CIMultiDict[str] | None, length: int | None = None,
    ) -> bytes:  # fmt: skip
        """Status line, the header `lines` as they are, the proxy's own `headers`, and this
        connection's framing and keep-alive."""
        parts = [status_line(status, reason)]
        parts += lines
        if headers is not None:
            own = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
            parts.append(own.encode("utf-8", "surrogateescape"))
        if length is not None and (headers is None or "Content-Length" not in headers):
            parts.append(b"Content-Length: %d\r\n" % length)
        if self.must_close or request is None or not request.keep_alive or self.server.draining:
            self.must_close = True
            parts.append(b"Connection: close\r\n\r\n")
        elif request.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

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
        self._stop_waiting()
        if not graceful:
            transport.abort()
        elif transport.can_write_eof():
            transport.write_eof()  # our FIN follows the answer; keep reading and dropping
            self._lingering = True
            if self._reading_paused:
                self._reading_paused = False
                transport.resume_reading()
            self._loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    @property
    def idle(self) -> bool:
        return not self._busy
