"""One client exchange as the forwarder sees it: the request, its body, the response."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Final, Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from servicepool_proxy.compiled import mypyc_attr
from servicepool_proxy.http.bytestream import ByteStream
from servicepool_proxy.http.headers import Fields, fields_view


class FrontConnection(Protocol):
    """What an exchange needs of the client connection it belongs to (front.py has it)."""

    must_close: bool

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    async def drain(self) -> None: ...

    def close(self, graceful: bool = False) -> None: ...

    def encode_head(
        self, request: Request | None, status: int, reason: str, lines: list[bytes],
        headers: CIMultiDict[str] | None, length: int | None = None,
    ) -> bytes: ...  # fmt: skip


# Unread request-body bytes above this pause reading from the client (back-pressure).
BODY_HIGH_WATER = 256 * 1024


_PHRASES: Final = {status.value: status.phrase for status in HTTPStatus}


_STATUS_LINES: Final = {
    status: (phrase, f"HTTP/1.1 {status} {phrase}\r\n".encode())
    for status, phrase in _PHRASES.items()
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase of a status code ('' for unknown codes)."""
    return _PHRASES.get(status, "")


def status_line(status: int, reason: str) -> bytes:
    """The status line of a response (prepared once for each standard code and phrase)."""
    prepared = _STATUS_LINES.get(status)
    if prepared is not None and prepared[0] == reason:
        return prepared[1]
    return f"HTTP/1.1 {status} {reason}\r\n".encode("utf-8", "surrogateescape")


@mypyc_attr(native_class=False)  # compiled classes cannot derive from this builtin
class ClientGone(ConnectionResetError):
    """The client closed the connection before the exchange was over."""


class RequestRejected(Exception):
    """The client's request cannot be served: answer `status` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status

    def response(self) -> Response:
        body = json.dumps({"error": "bad-request", "detail": str(self)}) + "\n"
        return Response(self.status, body=body.encode(), content_type="application/json")


class BodyReader(ByteStream):
    """The request body as the client sends it; `Expect: 100-continue` is answered when the
    handler first waits for it."""

    __slots__ = ("_connection", "continue_needed")

    def __init__(self, connection: FrontConnection, continue_needed: bool) -> None:
        super().__init__(connection, BODY_HIGH_WATER)
        self._connection = connection
        self.continue_needed = continue_needed

    async def wait(self) -> None:
        if self.continue_needed and self.error is None:
            self.continue_needed = False
            self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await super().wait()


class Request:
    """A parsed client request (origin-form target; the body arrives through `content`).

    `fields` are its header fields as they came; `headers` is a view of them, made on first
    use (the forwarding path reads the fields).
    """

    __slots__ = (
        "_headers",
        "connection",
        "content",
        "content_length",
        "fields",
        "keep_alive",
        "method",
        "raw_host",
        "remote",
        "target",
        "version",
    )

    def __init__(
        self, connection: FrontConnection, method: str, target: str, version: str,
        fields: Fields, raw_host: bytes | None, content: BodyReader | None,
        content_length: int | None, keep_alive: bool, remote: str | None,
    ) -> None:  # fmt: skip
        self.connection = connection
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields
        self.raw_host = raw_host  # the Host header's value
        self._headers: CIMultiDictProxy[str] | None = None
        self.content = content
        self.content_length = content_length
        self.keep_alive = keep_alive
        self.remote = remote

    scheme = "http"

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The request's headers (made on first use)."""
        if self._headers is None:
            self._headers = fields_view(self.fields)
        return self._headers

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def host(self) -> str | None:
        raw = self.raw_host
        return raw.decode("utf-8", "surrogateescape") if raw is not None else None


class Response:
    """A whole response, written in one go after the handler returns it: the header `lines`
    (a member's, as they came) go out first, then the proxy's own `headers`."""

    __slots__ = ("_headers", "body", "close_after", "lines", "reason", "status")

    def __init__(
        self, status: int = 200, *, body: bytes = b"", reason: str | None = None,
        headers: CIMultiDict[str] | dict[str, str] | None = None,
        content_type: str | None = None, lines: list[bytes] | None = None,
    ) -> None:  # fmt: skip
        self.status = status
        self.reason = reason or reason_phrase(status)
        self.body = body
        self.lines: list[bytes] = lines if lines is not None else []
        self._headers: CIMultiDict[str] | None = (
            headers if isinstance(headers, CIMultiDict) or headers is None else CIMultiDict(headers)
        )
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        self.close_after = False

    @property
    def headers(self) -> CIMultiDict[str]:
        """The proxy's own headers (made on first use)."""
        if self._headers is None:
            self._headers = CIMultiDict()
        return self._headers

    @property
    def own_headers(self) -> CIMultiDict[str] | None:
        """The proxy's own headers, None when it added none."""
        return self._headers

    def force_close(self) -> None:
        """Close the connection once this response is out."""
        self.close_after = True


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON body."""
    return Response(status, body=(json.dumps(data) + "\n").encode(), headers=headers,
                    content_type="application/json")  # fmt: skip


class StreamResponse:
    """A response whose head (the header `lines` as they go out) goes out first and whose
    body follows as it comes."""

    __slots__ = ("_chunked", "_connection", "content_length", "lines", "reason", "status")

    def __init__(self, status: int, *, reason: str | None, lines: list[bytes]) -> None:
        self.status = status
        self.reason = reason or reason_phrase(status)
        self.lines = lines
        self.content_length: int | None = None
        self._connection: FrontConnection | None = None
        self._chunked = False

    async def prepare(self, request: Request, no_body: bool = False) -> None:
        """Send the status line and headers (`no_body`: HEAD, 204 or 304; none follows)."""
        connection = request.connection
        self._connection = connection
        if self.content_length is None and not no_body:
            if request.version == "1.1":
                self._chunked = True
                self.lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                connection.must_close = True  # the end of the body is the end of the connection
        connection.write(connection.encode_head(
            request, self.status, self.reason, self.lines, None, self.content_length
        ))  # fmt: skip

    async def write(self, data: bytes) -> None:
        """Send a body chunk, waiting while the client is slow to read."""
        connection = self._connection
        assert connection is not None
        if not data:
            return
        connection.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        await connection.drain()

    async def write_eof(self) -> None:
        """End the body."""
        connection = self._connection
        assert connection is not None
        if self._chunked:
            connection.write(b"0\r\n\r\n")
        await connection.drain()
