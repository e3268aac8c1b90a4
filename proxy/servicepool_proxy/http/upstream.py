"""The proxy's HTTP/1.1 client: keep-alive connections to members on asyncio protocols.

Purpose-built for the request path: one parser (llhttp, through httptools) per connection,
responses handed over as raw header pairs and body chunks, no cookie, redirect or
decompression machinery, and a task of its own only to send a streamed request body. A
whole exchange (connect, send, head, body) is bounded by one deadline.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from servicepool_proxy.http.bytestream import ByteStream, WritePacing

# Unread response bytes above this pause reading from the member (back-pressure).
READ_HIGH_WATER = 256 * 1024
# Idle connections kept per member address, and for how long.
MAX_IDLE_PER_ADDRESS = 1024
IDLE_SECONDS = 30.0
# Exchange deadlines are checked this often (one timer per pool, not one per request).
DEADLINE_TICK = 0.05
_NO_BODY_STATUSES = frozenset({204, 304})
_SEND_LENGTH_ALWAYS = frozenset({"POST", "PUT", "PATCH"})


class UpstreamError(Exception):
    """An exchange with a member failed; `kind` is how retryOn names it."""

    kind = "reset"


class ConnectFailed(UpstreamError):
    """No connection to the member could be made."""

    kind = "connect-failure"


class UpstreamTimeout(UpstreamError, TimeoutError):
    """The exchange did not finish within its deadline."""

    kind = "timeout"


class ClientStalled(UpstreamError):
    """The deadline passed while the exchange waited on the client: for more of its body,
    or for it to read the answer. The member is not at fault."""

    kind = "client-stalled"


class UpstreamClosed(UpstreamError):
    """The member closed or reset the connection before the response was complete."""


class UpstreamProtocolError(UpstreamError):
    """The member did not speak HTTP/1.x."""


@dataclass(frozen=True, slots=True)
class Address:
    """Where a member's base URL points: the connection key and the request prefix."""

    scheme: str
    host: str
    port: int
    host_header: str
    path_prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Address:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname or ""
        shown = f"[{host}]" if ":" in host else host
        default = port == (443 if tls else 80)
        return cls(parts.scheme, host, port, shown if default else f"{shown}:{port}",
                   parts.path.rstrip("/"))  # fmt: skip


class UpstreamResponse:
    """One member response: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_connection",
        "_headers",
        "body",
        "content_length",
        "content_type",
        "head_done",
        "informational",
        "raw_headers",
        "reason",
        "status",
        "until_eof",
    )

    def __init__(self, connection: UpstreamConnection) -> None:
        self._connection: UpstreamConnection | None = connection
        self.status = 0
        self.reason = ""
        self.raw_headers: list[tuple[str, str]] = []
        self._headers: CIMultiDictProxy[str] | None = None
        self.content_length: int | None = None
        self.content_type = ""  # the media type without parameters, lower-cased
        self.until_eof = False  # the body ends when the member closes the connection
        self.head_done = False
        self.informational = False  # a 1xx head is being skipped
        self.body = ByteStream(connection, READ_HIGH_WATER)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The member's response headers (built on first use)."""
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(self.raw_headers))
        return self._headers

    @property
    def complete(self) -> bool:
        """The whole response is in."""
        return self.body.eof

    async def read(self) -> bytes:
        """The whole body (raises UpstreamError when the member fails before its end)."""
        return await self.body.read()

    def iter_any(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive, merged when several are waiting."""
        return self.body.iter_any()

    def release(self) -> None:
        """Give the connection back (kept alive when the exchange ended cleanly)."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            self.body.source = None
            connection.finish(self)
            self.body.release()


class UpstreamConnection(WritePacing, asyncio.Protocol):
    """One keep-alive connection to a member, parsing one response at a time."""

    def __init__(self, address: Address, pool: UpstreamPool) -> None:
        self.address = address
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive_until = 0.0  # when an idle wait would outlast the member's patience
        self._idle_limit = IDLE_SECONDS
        self._keep_alive = True
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._response: UpstreamResponse | None = None
        self._head_only = False
        self._reading_paused = False
        self.deadline = 0.0  # loop time by which the exchange in progress must be over
        self._writer: asyncio.Task[None] | None = None
        self._awaiting_body = False  # the body sender waits for the client's next chunk

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None or response.complete:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        parser = self._parser
        assert parser is not None  # set to None only once the connection is lost
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response.body.fail(UpstreamProtocolError(f"not a valid HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._parser = None  # it holds this protocol's callbacks: a cycle otherwise
        self.pool.unwatch(self)
        response = self._response
        if response is not None and not response.complete:
            if response.head_done and response.until_eof and exc is None:
                response.body.feed_eof()
            else:
                detail = str(exc) if exc else "the member closed the connection"
                response.body.fail(UpstreamClosed(detail))
        self.resume_writing()  # a sender waiting to write sees `closed` and stops

    # -- httptools callbacks --------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        response = self._response
        assert response is not None
        response.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        assert response is not None
        response.raw_headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        response = self._response
        assert response is not None
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200:  # 1xx: informational, the real answer follows
            response.informational = True
            response.raw_headers = []
            return
        response.status = status
        chunked = False
        for name, value in response.raw_headers:
            lowered = name.lower()
            if lowered == "content-length":
                response.content_length = int(value)  # llhttp validated it
            elif lowered == "content-type":
                response.content_type = value.split(";", 1)[0].strip().lower()
            elif lowered == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif lowered == "keep-alive":
                self._note_keep_alive(value)
        if chunked:
            response.content_length = None
        if self._head_only or status in _NO_BODY_STATUSES:
            response.content_length = None if self._head_only else 0
        else:
            response.until_eof = response.content_length is None and not chunked
        response.head_done = True
        if self._head_only:
            response.body.feed_eof()  # no body follows; the parser is not reused
        else:
            response.body.wake()

    def on_body(self, body: bytes) -> None:
        response = self._response
        assert response is not None
        response.body.feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        assert response is not None
        if response.informational:
            response.informational = False
            return
        parser = self._parser
        assert parser is not None
        if not parser.should_keep_alive():
            self._keep_alive = False
        response.body.feed_eof()

    # -- the exchange ---------------------------------------------------------------------

    def _note_keep_alive(self, value: str) -> None:
        for part in value.split(","):
            key, _, number = part.strip().partition("=")
            if key.strip().lower() == "timeout" and number.strip().isdigit():
                # Leave a second's margin before the member's own idle timer fires.
                self._idle_limit = min(self._idle_limit, int(number) - 1.0)

    def start(
        self, head: bytes, body: bytes | AsyncIterable[bytes] | None, head_only: bool,
        deadline: float, chunked: bool,
    ) -> UpstreamResponse:  # fmt: skip
        """Send a request and return its (not yet answered) response."""
        assert self.transport is not None
        response = UpstreamResponse(self)
        self._response = response
        self._head_only = head_only
        self.deadline = deadline
        self.pool.watch(self)
        if body is None or isinstance(body, bytes):
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self._writer = asyncio.get_running_loop().create_task(self._send_body(body, chunked))
        return response

    async def _send_body(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            self._awaiting_body = True
            async for chunk in body:
                self._awaiting_body = False
                if self.closed:
                    return
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    await self.writable()
                self._awaiting_body = True
            self._awaiting_body = False
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
        except BaseException as exc:
            response = self._response
            if response is not None:
                response.body.fail(
                    exc if isinstance(exc, Exception) else UpstreamClosed("cancelled")
                )
            self.close()
            if not isinstance(exc, Exception):
                raise

    def timed_out(self) -> None:
        """The deadline passed: fail the exchange and drop the connection."""
        response = self._response
        if response is not None:
            writer = self._writer
            if writer is not None and not writer.done() and self._awaiting_body:
                error: UpstreamError = ClientStalled("the request body did not arrive in time")
            elif self._reading_paused:  # the answer waits for the client to read it
                error = ClientStalled("the client did not read the answer in time")
            else:
                error = UpstreamTimeout("no answer in time")
            response.body.fail(error)
        self.close()

    def finish(self, response: UpstreamResponse) -> None:
        """The forwarder is done with `response`: pool the connection or close it."""
        self.pool.unwatch(self)
        writer = self._writer
        self._writer = None
        body_sent = writer is None or writer.done()
        if writer is not None and not writer.done():
            writer.cancel()
        reusable = (
            response.complete
            and response.body.error is None
            and body_sent
            and not self._head_only
            and not self.closed
            and self._keep_alive
            and self._idle_limit > 0
        )
        self._response = None
        if self._reading_paused:
            self.resume_reading()
        if reusable:
            self.keep_alive_until = time.monotonic() + self._idle_limit
            self.pool.put_idle(self)
        else:
            self.close()

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()


class UpstreamPool:
    """Keep-alive connections to every member address, reused most-recent first."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, str, int], list[UpstreamConnection]] = {}
        self._addresses: dict[str, Address] = {}
        self._ssl_context = ssl_context
        self._closing = False
        self._busy: set[UpstreamConnection] = set()
        self._tick: asyncio.TimerHandle | None = None

    def watch(self, connection: UpstreamConnection) -> None:
        """Hold `connection` to its deadline until it is unwatched."""
        self._busy.add(connection)
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(DEADLINE_TICK, self._expire)

    def unwatch(self, connection: UpstreamConnection) -> None:
        self._busy.discard(connection)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [c for c in self._busy if c.deadline <= now]:
            self._busy.discard(connection)
            connection.timed_out()
        self._tick = loop.call_later(DEADLINE_TICK, self._expire) if self._busy else None

    def address(self, base_url: str) -> Address:
        """The parsed address of a member's base URL (cached)."""
        address = self._addresses.get(base_url)
        if address is None:
            if len(self._addresses) > 4096:
                self._addresses.clear()
            address = self._addresses[base_url] = Address.parse(base_url)
        return address

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def take_idle(self, address: Address) -> UpstreamConnection | None:
        """The most recently used live idle connection to `address`, if any."""
        idle = self._idle.get((address.scheme, address.host, address.port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.keep_alive_until > now:
                return connection
            connection.close()
        return None

    async def connect(self, address: Address, limit_seconds: float) -> UpstreamConnection:
        """A new connection to `address` within `limit_seconds`."""
        loop = asyncio.get_running_loop()
        tls = address.scheme == "https"
        try:
            async with asyncio.timeout(limit_seconds):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(address, self),
                    address.host,
                    address.port,
                    ssl=self._tls() if tls else None,
                    server_hostname=address.host if tls else None,
                )
        except TimeoutError as exc:
            raise ConnectFailed(f"connect to {address.host}:{address.port} timed out") from exc
        except OSError as exc:
            raise ConnectFailed(
                f"cannot connect to {address.host}:{address.port}: {exc.strerror or exc}"
            ) from exc
        return protocol

    def put_idle(self, connection: UpstreamConnection) -> None:
        if self._closing:
            connection.close()
            return
        address = connection.address
        key = (address.scheme, address.host, address.port)
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if len(idle) >= MAX_IDLE_PER_ADDRESS:
            idle.pop(0).close()
        idle.append(connection)

    async def request(
        self, base_url: str, method: str, target: str, headers: Iterable[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None, *, total_seconds: float, connect_seconds: float,
        replayable: bool = True,
    ) -> UpstreamResponse:  # fmt: skip
        """Send one request; return once the response's status and headers are in.

        A reused connection that the member had already closed is replaced by a new one
        when the request can be sent again (`replayable` and the body is not a stream).
        """
        address = self.address(base_url)
        deadline = asyncio.get_running_loop().time() + total_seconds
        streamed = body is not None and not isinstance(body, bytes)
        head, chunked = encode_head(method, address, target, headers, body)
        head_only = method == "HEAD"
        while True:
            connection = self.take_idle(address)
            fresh = connection is None
            if connection is None:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise UpstreamTimeout("no answer in time")
                connection = await self.connect(address, min(connect_seconds, remaining))
            response = connection.start(head, body, head_only, deadline, chunked)
            try:
                while not response.head_done:
                    await response.body.wait()
                return response
            except UpstreamClosed:
                response.release()
                if fresh or streamed or not replayable or response.status:
                    raise
                # A stale keep-alive connection: the member never saw this request.
            except BaseException:
                response.release()
                raise

    async def close(self) -> None:
        """Close every idle connection; later releases close theirs."""
        self._closing = True
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def encode_head(
    method: str, address: Address, target: str, headers: Iterable[tuple[str, str]],
    body: bytes | AsyncIterable[bytes] | None,
) -> tuple[bytes, bool]:  # fmt: skip
    """The request line and headers as bytes, and whether the body goes chunked."""
    lines = [f"{method} {address.path_prefix}{target} HTTP/1.1\r\nHost: {address.host_header}\r\n"]
    has_length = False
    for name, value in headers:
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name} carries a line break")
        if name.lower() == "content-length":
            has_length = True
        lines.append(f"{name}: {value}\r\n")
    chunked = False
    if isinstance(body, bytes):
        if not has_length and (body or method in _SEND_LENGTH_ALWAYS):
            lines.append(f"Content-Length: {len(body)}\r\n")
    elif body is not None:
        if not has_length:
            chunked = True
            lines.append("Transfer-Encoding: chunked\r\n")
    elif method in _SEND_LENGTH_ALWAYS and not has_length:
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape"), chunked
