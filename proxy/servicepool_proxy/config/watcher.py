"""Config sources: a pool file polled for changes, with one gate that validates and dedupes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from servicepool_api.loader import PoolFileError, parse_pool_text
from servicepool_api.spec import ServicePool
from servicepool_proxy.tasks import cancel_and_wait

log = logging.getLogger("servicepool.proxy")


class ConfigGate:
    """Where every new config text goes: unchanged text is ignored, invalid text is
    logged and skipped (the last good config keeps serving), valid text is applied."""

    def __init__(
        self,
        on_change: Callable[[ServicePool], None],
        on_error: Callable[[str], None],
        initial_text: str | None = None,
    ) -> None:
        self.on_change = on_change
        self.on_error = on_error
        self.digest = _digest(initial_text) if initial_text is not None else ""

    def offer(self, text: str, source: str) -> bool:
        """Consider new text; True when it was applied."""
        digest = _digest(text)
        if digest == self.digest:
            return False
        self.digest = digest
        try:
            pool = parse_pool_text(text)
        except PoolFileError as exc:
            log.error(
                "new config from %s is invalid, keeping the last good config: %s", source, exc
            )
            self.on_error(str(exc))
            return False
        self.on_change(pool)
        return True


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PoolFileWatcher:
    """Polls a file (following symlinks, as ConfigMap volumes swap them) for new content."""

    def __init__(
        self,
        path: str | Path,
        gate: ConfigGate,
        interval: float = 1.0,
        enabled: Callable[[], bool] = lambda: True,
    ) -> None:
        self.path = Path(path)
        self.gate = gate
        self.interval = interval
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None

    def check(self) -> bool:
        """Look once; True when a new valid version was applied."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return False
        return self.gate.offer(text, str(self.path))

    def start(self) -> None:
        """Poll in the background."""
        self._task = asyncio.create_task(self._run(), name="pool-file-watcher")

    async def stop(self) -> None:
        """Stop polling."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.enabled():
                continue
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise
                log.exception("checking %s failed", self.path)
