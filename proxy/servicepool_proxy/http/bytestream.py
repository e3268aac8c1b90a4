"""Bodies in transit: bytes a protocol receives, read by one coroutine, with back-pressure
on the protocol that feeds them."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class FlowControlled(Protocol):
    """The connection a stream comes from: it stops and restarts reading its socket."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class ByteStream:
    """Chunks fed by a protocol callback and taken by a reader.

    More than `high_water` unread bytes pause the source; taking them resumes it. A failure
    (`fail`) is raised to the reader unless the stream had already ended.
    """

    __slots__ = ("_chunks", "_error", "_high_water", "_loop", "_size", "_waiter", "eof", "source")

    def __init__(
        self, source: FlowControlled | None, high_water: int,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:  # fmt: skip
        self.source = source  # None once the stream is detached from its connection
        self._loop = loop  # the reader's (asked for at each wait when not given)
        self._high_water = high_water
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.eof = False

    # -- fed by the protocol --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._high_water and self.source is not None:
            self.source.pause_reading()
        self.wake()

    def feed_eof(self) -> None:
        self.eof = True
        self.wake()

    def fail(self, error: BaseException) -> None:
        if not self.eof and self._error is None:
            self._error = error
        self.wake()

    def release(self) -> None:
        """The reader is done: drop what is buffered, and the failure's traceback (it holds
        the reader's frames, which hold this stream: a reference cycle)."""
        self._chunks.clear()
        self._size = 0
        if self._error is not None:
            self._error.__traceback__ = None

    def wake(self) -> None:
        """Let a waiting reader look again."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- read by one coroutine ------------------------------------------------------------

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def full(self) -> bool:
        """More is buffered than the reader has taken: the source should wait."""
        return self._size > self._high_water

    async def wait(self) -> None:
        """Until something happens: data, the end, a failure (raised), or a `wake`."""
        self._raise_failure()
        loop = self._loop
        if loop is None:
            loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        await waiter
        self._raise_failure()  # a method call: mypyc would keep `_error` narrowed to None

    def _raise_failure(self) -> None:
        error = self._error
        if error is not None:
            raise error

    def _take(self) -> bytes:
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size -= len(data)
        if self._size <= self._high_water and self.source is not None:
            self.source.resume_reading()
        return data

    async def readany(self) -> bytes:
        """What has arrived, merged when several chunks wait (waiting for something); b""
        at the end."""
        while not self._chunks:
            if self.eof:
                return b""
            await self.wait()
        return self._take()

    async def read(self) -> bytes:
        """Everything, once the stream has ended."""
        while not self.eof:
            await self.wait()
        return self._take() if self._chunks else b""
