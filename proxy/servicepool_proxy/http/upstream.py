"""The proxy's HTTP/1.1 client: keep-alive connections to members on asyncio protocols.

Purpose-built for the request path: one parser (llhttp, through httptools) per connection,
responses handed over as raw header pairs and body chunks, no cookie, redirect or
decompression machinery, and a task of its own only to send a streamed request body. A
whole exchange (connect, send, head, body) is bounded by one deadline. Here: the errors,
the response, and the pool with its request API; each connection is in member_connection.py.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterable
from typing import Final

from multidict import CIMultiDictProxy

from servicepool_proxy.compiled import mypyc_attr
from servicepool_proxy.http.bytestream import ByteStream
from servicepool_proxy.http.headers import Fields, Names, field_line, fields_view
from servicepool_proxy.http.member_connection import Address, UpstreamConnection

# Unread response bytes above this pause reading from the member (back-pressure).
READ_HIGH_WATER = 256 * 1024
# Idle connections kept per member address.
MAX_IDLE_PER_ADDRESS = 1024
# Exchange deadlines are checked this often (one timer per pool, not one per request).
DEADLINE_TICK = 0.05
_SEND_LENGTH_ALWAYS: Final = frozenset({"POST", "PUT", "PATCH"})
_LENGTH: Final = Names(frozenset({b"content-length"}))


@mypyc_attr(native_class=False)  # plain Python classes: UpstreamTimeout is a TimeoutError
class UpstreamError(Exception):
    """An exchange with a member failed; `kind` is how retryOn names it."""

    kind = "reset"


@mypyc_attr(native_class=False)
class ConnectFailed(UpstreamError):
    """No connection to the member could be made."""

    kind = "connect-failure"


@mypyc_attr(native_class=False)
class UpstreamTimeout(UpstreamError, TimeoutError):
    """The exchange did not finish within its deadline."""

    kind = "timeout"


@mypyc_attr(native_class=False)
class ClientStalled(UpstreamError):
    """The deadline passed while the exchange waited on the client: for more of its body,
    or for it to read the answer. The member is not at fault."""

    kind = "client-stalled"


@mypyc_attr(native_class=False)
class UpstreamClosed(UpstreamError):
    """The member closed or reset the connection before the response was complete."""


@mypyc_attr(native_class=False)
class UpstreamProtocolError(UpstreamError):
    """The member did not speak HTTP/1.x."""


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

    def __init__(
        self, connection: UpstreamConnection, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._connection: UpstreamConnection | None = connection
        self.status = 0
        self.reason = ""
        self.raw_headers: Fields = []  # as the member sent them
        self._headers: CIMultiDictProxy[str] | None = None
        self.content_length: int | None = None
        self.content_type = ""  # the media type without parameters, lower-cased
        self.until_eof = False  # the body ends when the member closes the connection
        self.head_done = False
        self.informational = False  # a 1xx head is being skipped
        self.body = ByteStream(connection, READ_HIGH_WATER, loop)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The member's response headers (built on first use)."""
        if self._headers is None:
            self._headers = fields_view(self.raw_headers)
        return self._headers

    @property
    def complete(self) -> bool:
        """The whole response is in."""
        return self.body.eof

    async def read(self) -> bytes:
        """The whole body (raises UpstreamError when the member fails before its end)."""
        return await self.body.read()

    async def readany(self) -> bytes:
        """The body bytes that have arrived, merged (waiting for some); b"" at the end."""
        return await self.body.readany()

    def release(self) -> None:
        """Give the connection back (kept alive when the exchange ended cleanly)."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            self.body.source = None
            connection.finish(self)
            self.body.release()

    # -- what the connection reports (it names no error class) ----------------------------

    def fail_garbled(self, detail: str) -> None:
        """The member's bytes are not a valid HTTP response."""
        self.body.fail(UpstreamProtocolError(f"not a valid HTTP response: {detail}"))

    def fail_closed(self, detail: str) -> None:
        """The member closed or reset the connection, or the body sender was cancelled."""
        self.body.fail(UpstreamClosed(detail))

    def fail_expired(self, stalled: str | None) -> None:
        """The deadline passed; `stalled` says how the client held the exchange up, if it did."""
        self.body.fail(ClientStalled(stalled) if stalled else UpstreamTimeout("no answer in time"))


class UpstreamPool:
    """Keep-alive connections to every member address, reused most-recent first."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, str, int], list[UpstreamConnection]] = {}
        self._addresses: dict[str, Address] = {}
        self._ssl_context = ssl_context
        self._closing = False
        self._busy: set[UpstreamConnection] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Members seen closing connections right after streamed answers (not kept after one).
        self._close_after_streams: set[tuple[str, str, int]] = set()

    def note_closes_after_streams(self, address: Address) -> None:
        """The member closed a connection right after a streamed answer."""
        self._close_after_streams.add((address.scheme, address.host, address.port))

    def closes_after_streams(self, address: Address) -> bool:
        """True when the member was seen closing connections after streamed answers."""
        return (address.scheme, address.host, address.port) in self._close_after_streams

    def running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the pool serves in, asked for once (each asyncio.get_running_loop() call
        costs a getpid() system call)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

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
        self, base_url: str, method: str, target: str, headers: Fields,
        body: bytes | AsyncIterable[bytes] | None, *, total_seconds: float, connect_seconds: float,
        replayable: bool = True,
    ) -> UpstreamResponse:  # fmt: skip
        """Send one request; return once the response's status and headers are in.

        A reused connection that the member had already closed is replaced by a new one
        when the request can be sent again (`replayable` and the body is not a stream).
        """
        address = self.address(base_url)
        loop = self.running_loop()
        deadline = loop.time() + total_seconds
        streamed = body is not None and not isinstance(body, bytes)
        head, chunked = encode_head(method, address, target, headers, body)
        head_only = method == "HEAD"
        while True:
            connection = self.take_idle(address)
            fresh = connection is None
            if connection is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise UpstreamTimeout("no answer in time")
                connection = await self.connect(address, min(connect_seconds, remaining))
            response = UpstreamResponse(connection, loop)
            connection.start(response, head, body, head_only, deadline, chunked)
            try:
                while not response.head_done:
                    await response.body.wait()
                return response
            except UpstreamClosed:
                after_stream = connection.closed_right_after_a_stream()  # before release
                response.release()
                if fresh or streamed or response.status:
                    raise
                if after_stream:
                    # It closed after its streamed answer, before this request came: it
                    # never read it, so even a POST goes again (on a new connection).
                    self.note_closes_after_streams(address)
                elif not replayable:
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
    method: str, address: Address, target: str, headers: Fields,
    body: bytes | AsyncIterable[bytes] | None,
) -> tuple[bytes, bool]:  # fmt: skip
    """The request line and headers as bytes, and whether the body goes chunked."""
    line = f"{method} {address.path_prefix}{target} HTTP/1.1\r\n"
    parts = [line.encode("utf-8", "surrogateescape"), address.host_line]
    sized = False
    for name, value in headers:
        parts.append(field_line(name, value))
        if not sized and _LENGTH.match(name) is not None:
            sized = True
    block = b"".join(parts)
    lines = len(parts)
    if block.count(b"\n") != lines or block.count(b"\r") != lines:
        _refuse_line_break(headers)
    chunked = False
    if isinstance(body, bytes):
        if (body or method in _SEND_LENGTH_ALWAYS) and not sized:
            block += b"Content-Length: %d\r\n" % len(body)
    elif body is not None:
        if not sized:
            chunked = True
            block += b"Transfer-Encoding: chunked\r\n"
    elif method in _SEND_LENGTH_ALWAYS and not sized:
        block += b"Content-Length: 0\r\n"
    return block + b"\r\n", chunked


def _refuse_line_break(headers: Fields) -> None:
    """Name the header whose name or value carries a line break."""
    for name, value in headers:
        if any(c in name or c in value for c in (b"\r", b"\n")):
            raise ValueError(
                f"header {name.decode('utf-8', 'surrogateescape')} carries a line break"
            )
    raise ValueError("a header carries a line break")
