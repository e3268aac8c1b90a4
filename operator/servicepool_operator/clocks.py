"""Where a pool loop reads the time and waits; tests pass a fake one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Protocol


def now_iso() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock(Protocol):
    """Monotonic seconds for intervals, wall time for status, and a wait a wake can cut short."""

    def monotonic(self) -> float: ...

    def wall(self) -> str: ...

    async def wait(self, wake: asyncio.Event, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        return time.monotonic()

    def wall(self) -> str:
        """Now, as Kubernetes writes timestamps."""
        return now_iso()

    async def wait(self, wake: asyncio.Event, seconds: float) -> None:
        """Return after `seconds`, or as soon as `wake` is set.

        A timeout around the wait, not `wait_for`: that wraps the wait in a task of its own,
        and a thousand pools each wait once per pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()


SYSTEM_CLOCK = SystemClock()
