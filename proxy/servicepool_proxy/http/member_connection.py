"""One keep-alive connection to a member: an asyncio protocol with one llhttp parser
(httptools), sending a request (a streamed body from a task of its own) and parsing one
response at a time into the `UpstreamResponse` it was given.

It names no error class: it tells the response what went wrong, and the response fails with
the matching UpstreamError. upstream.py imports this module; the types it names from there
are for type checking (and the compiled build's direct attribute access) only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import urlsplit

import httptools

from servicepool_proxy.http.headers import Names
from servicepool_proxy.http.write_pacing import WritePacing

if TYPE_CHECKING:
    from servicepool_proxy.http.upstream import UpstreamPool, UpstreamResponse

# How long an idle connection is kept (less when the member's Keep-Alive header says so).
IDLE_SECONDS = 30.0
# A member that closes a connection this soon after a streamed answer ended closes after
# every streamed answer (llama.cpp's server does, while its Keep-Alive header says otherwise).
CLOSED_AFTER_STREAM_SECONDS = 1.0
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# The response header fields the connection reads (a name of another length is none of them).
_NOTED: Final = Names(
    frozenset({b"content-length", b"content-type", b"transfer-encoding", b"keep-alive"})
)


@dataclass(frozen=True, slots=True)
class Address:
    """Where a member's base URL points: the connection key and the request prefix."""

    scheme: str
    host: str
    port: int
    host_header: str
    path_prefix: str
    host_line: bytes  # the Host header line of requests to it

    @classmethod
    def parse(cls, base_url: str) -> Address:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname or ""
        shown = f"[{host}]" if ":" in host else host
        default = port == (443 if tls else 80)
        host_header = shown if default else f"{shown}:{port}"
        return cls(parts.scheme, host, port, host_header, parts.path.rstrip("/"),
                   f"Host: {host_header}\r\n".encode("utf-8", "surrogateescape"))  # fmt: skip


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


_media_types: Final[dict[bytes, str]] = {}


def media_type(value: bytes) -> str:
    """A Content-Type's media type without parameters, lower-cased (remembered for the
    few short values members send)."""
    known = _media_types.get(value)
    if known is None:
        known = _text(value).split(";", 1)[0].strip().lower()
        if len(value) <= 128:
            if len(_media_types) >= 256:
                _media_types.clear()
            _media_types[value] = known
    return known


class UpstreamConnection(WritePacing):
    """One keep-alive connection to a member, parsing one response at a time."""

    def __init__(self, address: Address, pool: UpstreamPool) -> None:
        super().__init__()
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
        self.streamed = False  # the last answer had no length (chunked, or until close)
        self.released_at = 0.0  # monotonic time the last answer ended

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
            response.fail_garbled(str(exc))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._parser = None  # it holds this protocol's callbacks: a cycle otherwise
        self.pool.unwatch(self)
        if self._response is None and self.closed_right_after_a_stream():
            self.pool.note_closes_after_streams(self.address)
        response = self._response
        if response is not None and not response.complete:
            if response.head_done and response.until_eof and exc is None:
                response.body.feed_eof()
            else:
                response.fail_closed(str(exc) if exc else "the member closed the connection")
        self.resume_writing()  # a sender waiting to write sees `closed` and stops

    # -- httptools callbacks --------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        response = self._response
        assert response is not None
        response.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        assert response is not None
        response.raw_headers.append((name, value))

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
            lowered = _NOTED.match(name)
            if lowered is None:
                continue
            if lowered == b"content-length":
                response.content_length = int(value)  # llhttp validated it: ASCII digits
            elif lowered == b"content-type":
                response.content_type = media_type(value)
            elif lowered == b"transfer-encoding" and "chunked" in _text(value).lower():
                chunked = True
            elif lowered == b"keep-alive":
                self._note_keep_alive(_text(value))
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
        self, response: UpstreamResponse, head: bytes, body: bytes | AsyncIterable[bytes] | None,
        head_only: bool, deadline: float, chunked: bool,
    ) -> None:  # fmt: skip
        """Send a request; its answer fills `response`."""
        assert self.transport is not None
        self._response = response
        self._head_only = head_only
        self.deadline = deadline
        self.pool.watch(self)
        if body is None or isinstance(body, bytes):
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self._writer = asyncio.get_running_loop().create_task(self._send_body(body, chunked))

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
                if isinstance(exc, Exception):
                    response.body.fail(exc)
                else:
                    response.fail_closed("cancelled")
            self.close()
            if not isinstance(exc, Exception):
                raise

    def timed_out(self) -> None:
        """The deadline passed: fail the exchange and drop the connection."""
        response = self._response
        if response is not None:
            writer = self._writer
            stalled: str | None = None  # how the client held the exchange up, if it did
            if writer is not None and not writer.done() and self._awaiting_body:
                stalled = "the request body did not arrive in time"
            elif self._reading_paused:  # the answer waits for the client to read it
                stalled = "the client did not read the answer in time"
            response.fail_expired(stalled)
        self.close()

    def closed_right_after_a_stream(self) -> bool:
        """True when the connection's last answer was streamed and ended moments ago."""
        return self.streamed and time.monotonic() - self.released_at < CLOSED_AFTER_STREAM_SECONDS

    def finish(self, response: UpstreamResponse) -> None:
        """The forwarder is done with `response`: pool the connection or close it."""
        self.pool.unwatch(self)
        self.streamed = response.content_length is None
        self.released_at = time.monotonic()
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
            and not (self.streamed and self.pool.closes_after_streams(self.address))
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
