"""The pacing of what a protocol writes: the transport pauses and resumes it, and a sender
waits while the transport's buffer is full (back-pressure on writes). The base class of both
connection protocols (front.FrontConnection through RequestParsing, and UpstreamConnection)."""

from __future__ import annotations

import asyncio
import asyncio.protocols  # named by the compiled build's code for the base class


class WritePacing(asyncio.Protocol):
    """Protocol flow control for writes: the transport pauses and resumes us, and a sender
    waits for `writable` before writing more."""

    def __init__(self) -> None:
        self._writable: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def writable(self) -> None:
        """Until the transport's buffer has drained (at once when it is not full)."""
        waiter = self._writable
        if waiter is not None and not waiter.done():
            await waiter
