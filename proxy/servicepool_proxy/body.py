"""Request bodies: buffered when small enough to retry, streamed otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import StreamReader


class StreamedBody:
    """A body too large to buffer: the buffered prefix, then the rest of the client stream.

    It can be sent once; `started` tells whether a retry is still possible.
    """

    def __init__(self, prefix: list[bytes], rest: StreamReader) -> None:
        self._prefix = prefix
        self._rest = rest
        self.started = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body; marks it started at the first chunk."""
        self.started = True
        for chunk in self._prefix:
            yield chunk
        self._prefix = []
        while True:
            chunk = await self._rest.readany()
            if not chunk:
                return
            yield chunk


async def read_body(
    stream: StreamReader, content_length: int | None, limit: int
) -> bytes | StreamedBody:
    """Buffer up to `limit` bytes; a longer body becomes a StreamedBody."""
    if content_length is not None and content_length <= limit:
        return await stream.readexactly(content_length) if content_length else b""
    if content_length is not None:
        return StreamedBody([], stream)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.readany()
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return StreamedBody(chunks, stream)
