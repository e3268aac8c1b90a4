"""The input side of a client connection: bytes parsed into Requests by llhttp (httptools).

It parses strictly (ambiguous framing is a 400), bounds what a client may send as the bytes
arrive (each line, the whole head and trailer section, the field count), and parses at most
MAX_PIPELINED requests ahead of the one being served (the rest waits unparsed).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, Protocol, cast
from urllib.parse import urlsplit

import httptools

from servicepool_proxy.http.exchange import BodyReader, FrontConnection, Request, RequestRejected
from servicepool_proxy.http.headers import Fields, Names
from servicepool_proxy.http.linemeter import LineMeter, Section
from servicepool_proxy.http.write_pacing import WritePacing

MAX_HEADERS = 128  # header fields, and trailer fields, per request
MAX_PIPELINED = 16  # parsed requests waiting behind the one being served
# Outside a body the parser is fed this much at a time, so that a read full of pipelined
# requests stops being parsed once MAX_PIPELINED wait (the rest waits unparsed).
HEAD_SLICE = 1024


class ParsingLimits(Protocol):
    """What parsing needs of the listener (listener.FrontServer has it)."""

    loop: asyncio.AbstractEventLoop
    max_header_bytes: int
    max_head_bytes: int


def origin_form(raw: bytes) -> str:
    """The request target as a path and query (absolute-form is cut down to them)."""
    target = raw.decode("utf-8", "surrogateescape")
    if target.startswith("/"):
        return target
    if "://" in target:  # absolute-form: keep the path and query only
        parts = urlsplit(target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raise RequestRejected(400, "request target must be a path or an absolute URL")


_FRAMING: Final = Names(frozenset({b"host", b"content-length", b"transfer-encoding", b"expect"}))


def framing(fields: Fields) -> tuple[int, bytes | None, bytes | None, bool, bool]:
    """What a request head says of its host and framing: how many Host headers, the first
    one's value, the Content-Length, whether a Transfer-Encoding is given, and whether it
    expects `100 Continue`."""
    hosts = 0
    host = length = expect = None
    chunked = False
    for name, value in fields:
        lowered = _FRAMING.match(name)
        if lowered is None:
            continue
        if lowered == b"host":
            hosts += 1
            host = value if host is None else host
        elif lowered == b"content-length":
            length = value if length is None else length
        elif lowered == b"transfer-encoding":
            chunked = True
        elif expect is None:
            expect = value
    return hosts, host, length, chunked, expect is not None and expect.lower() == b"100-continue"


class RequestParsing(WritePacing):
    """The parsing half of front.FrontConnection (its base class): the httptools callbacks,
    and the queue of parsed requests that the connection serves one at a time (`_next`)."""

    # Set by the connection (front.FrontConnection):
    remote: str | None
    closed: bool
    must_close: bool
    _busy: bool
    _lingering: bool

    @property
    def connection(self) -> FrontConnection:
        """This parser as the connection it is a half of (front.FrontConnection)."""
        return cast(FrontConnection, self)

    def __init__(self, server: ParsingLimits) -> None:
        super().__init__()
        self._loop = server.loop
        self._max_header_bytes = server.max_header_bytes
        # Dropped when the connection is lost: it holds this protocol's callbacks (a cycle).
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._meter = LineMeter(server.max_header_bytes, server.max_head_bytes)
        self._url = b""
        self._headers: Fields = []
        self._fields = 0
        self._body: BodyReader | None = None
        self._ends_on_line_feed = True  # the previous request ended with a line feed
        self._queue: deque[Request] = deque()
        self._backlog = b""  # received but not parsed while MAX_PIPELINED requests wait
        self._broken = False
        self.idle_since: float | None = None  # loop time when it began waiting for a head
        self.head_since: float | None = None  # loop time of the first byte of a head
        self.trailer_since: float | None = None  # loop time of the first trailer byte

    # -- what the connection does ---------------------------------------------------------

    def _next(self) -> None:
        """Serve the next parsed request, if any (front.FrontConnection)."""
        raise NotImplementedError

    def _reject(self, rejected: RequestRejected) -> None:
        """Answer a request that cannot be parsed, then close (front.FrontConnection)."""
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    # -- feeding the parser ---------------------------------------------------------------

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
                self.trailer_since = self._loop.time()
            start = end

    def _parse_backlog(self) -> None:
        """Parse what waited behind a full queue, now that a request has left it."""
        if not self._backlog or self._broken or self._lingering or self.closed:
            return
        data, self._backlog = self._backlog, b""
        self._feed(data)
        self.resume_reading()

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
        self.head_since = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_header_bytes:
            raise RequestRejected(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        in_head = self._meter.section is Section.HEAD
        size = len(name) + len(value)
        if size > self._max_header_bytes:
            raise RequestRejected(431, ("header" if in_head else "trailer") + " field too large")
        self._fields += 1
        if self._fields > MAX_HEADERS:
            raise RequestRejected(431, "too many header fields")
        rejected = self._meter.add_line(size + 4)  # with ": " and CRLF
        if rejected is not None:
            raise rejected
        if in_head:  # trailer fields are read and dropped
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.idle_since = None  # the idle bound also covered how long the head took
        self.head_since = None
        parser = self._parser
        assert parser is not None
        fields = self._headers
        self._headers = []
        version = parser.get_http_version()
        hosts, host, length_text, chunked, expect = framing(fields)
        if hosts > 1:
            raise RequestRejected(400, "more than one Host header")
        if not hosts and version == "1.1":
            raise RequestRejected(400, "no Host header")
        target = origin_form(self._url)
        content_length = int(length_text) if length_text is not None else None
        if (chunked or content_length) and parser.should_upgrade():
            raise RequestRejected(400, "an upgrade request cannot carry a body")
        # RFC 9112 6.1: HTTP/1.0 framing with Transfer-Encoding is suspect; close after it.
        keep_alive = parser.should_keep_alive() and not (chunked and version == "1.0")
        body = None
        if chunked or content_length:
            body = BodyReader(self.connection, expect)
        elif content_length == 0:
            body = BodyReader(self.connection, False)
            body.feed_eof()
        self._body = body
        if chunked:
            self._meter.begin(Section.CHUNK_SIZE)
        else:
            self._meter.end()
        self._ends_on_line_feed = not content_length
        request = Request(
            self.connection, parser.get_method().decode("ascii"), target, version,
            fields, host, body, content_length, keep_alive, self.remote,
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
