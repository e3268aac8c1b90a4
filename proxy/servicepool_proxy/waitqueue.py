"""A bounded queue where requests wait while every available member is at its limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from enum import Enum


class WaitResult(Enum):
    """Why a wait ended."""

    WOKEN = "woken"
    TIMED_OUT = "timed out"
    QUEUE_FULL = "queue full"


class WaitQueue:
    """FIFO of waiting requests; a freed slot wakes the oldest waiter."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self, seconds: float) -> WaitResult:
        """Wait for a wake-up, at most `seconds`."""
        if seconds <= 0:
            return WaitResult.TIMED_OUT
        if len(self._waiters) >= self.max_waiting:
            return WaitResult.QUEUE_FULL
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
            return WaitResult.WOKEN
        except TimeoutError:
            return WaitResult.TIMED_OUT
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def wake_one(self) -> None:
        """Let the oldest waiter try again."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        """Let every waiter try again (membership or health changed)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
