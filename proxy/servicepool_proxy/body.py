"""Request bodies: buffered when small enough to retry, streamed otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .bytestream import ByteStream


class BodyTooLarge(Exception):
    """The client sent more than the pool accepts."""


class StreamedBody:
    """A body too large to buffer: the buffered prefix, then the rest of the client stream.

    It can be sent once; `started` tells whether a retry is still possible.
    """

    def __init__(self, prefix: list[bytes], rest: ByteStream, max_bytes: int = 0) -> None:
        self._prefix = prefix
        self._rest = rest
        self._max_bytes = max_bytes
        self.started = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body; marks it started at the first chunk."""
        self.started = True
        sent = 0
        for chunk in self._prefix:
            sent += len(chunk)
            yield chunk
        self._prefix = []
        while True:
            chunk = await self._rest.readany()
            if not chunk:
                return
            sent += len(chunk)
            if self._max_bytes and sent > self._max_bytes:
                raise BodyTooLarge(f"request body over {self._max_bytes} bytes")
            yield chunk


async def read_body(
    stream: ByteStream, content_length: int | None, limit: int, max_bytes: int = 0
) -> bytes | StreamedBody:
    """Buffer up to `limit` bytes; a longer body becomes a StreamedBody.

    Raises BodyTooLarge when the body is (or is declared) over `max_bytes` (0: no limit);
    a streamed body that grows past it later fails while it is being sent.
    """
    if max_bytes and content_length is not None and content_length > max_bytes:
        raise BodyTooLarge(f"request body of {content_length} bytes is over {max_bytes}")
    if content_length is not None and content_length <= limit:
        return await stream.readexactly(content_length) if content_length else b""
    if content_length is not None:
        return StreamedBody([], stream, max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.readany()
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if max_bytes and size > max_bytes:
            raise BodyTooLarge(f"request body over {max_bytes} bytes")
        if size > limit:
            return StreamedBody(chunks, stream, max_bytes)
