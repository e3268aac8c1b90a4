"""Request bodies: read whole before a member is picked while they fit (so they can be retried
and a slow upload holds no member), streamed otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

from servicepool_proxy.http.bytestream import ByteStream


class BodyTooLarge(Exception):
    """The client sent more than the pool accepts."""


class StreamedBody:
    """A body too large to buffer: the buffered prefix, then the rest of the client stream.

    It can be sent once; `started` tells whether a retry is still possible.
    """

    def __init__(
        self, prefix: list[bytes], rest: ByteStream, max_bytes: int = 0, held: int = 0
    ) -> None:
        self._prefix = prefix
        self._rest = rest
        self._max_bytes = max_bytes
        self.started = False
        self.held = held  # bytes of the prefix taken from the buffer budget

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


class BufferBudget:
    """Bytes of request bodies the proxy holds at once; a body that would go past it streams."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


def held_bytes(body: bytes | StreamedBody | None) -> int:
    """What `read_body` took from the budget for `body` (to be given back after the exchange)."""
    if body is None:
        return 0
    return len(body) if isinstance(body, bytes) else body.held


async def read_body(
    stream: ByteStream, content_length: int | None, limit: int, budget: BufferBudget,
    max_bytes: int = 0,
) -> bytes | StreamedBody:  # fmt: skip
    """Read the body whole while it stays within `limit` and the budget has room; a longer
    body becomes a StreamedBody of what was read and the rest. What is held is taken from
    `budget` as it arrives.

    Raises BodyTooLarge when the body is (or is declared) over `max_bytes` (0: no limit);
    a streamed body that grows past it later fails while it is being sent.
    """
    if max_bytes and content_length is not None and content_length > max_bytes:
        raise BodyTooLarge(f"request body of {content_length} bytes is over {max_bytes}")
    if content_length is not None and content_length > limit:
        return StreamedBody([], stream, max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = await stream.readany()
            if not chunk:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if max_bytes and size + len(chunk) > max_bytes:
                raise BodyTooLarge(f"request body over {max_bytes} bytes")
            if size + len(chunk) > limit or not budget.take(len(chunk)):
                return StreamedBody([*chunks, chunk], stream, max_bytes, held=size)
            chunks.append(chunk)
            size += len(chunk)
    except BaseException:
        budget.give(size)
        raise
