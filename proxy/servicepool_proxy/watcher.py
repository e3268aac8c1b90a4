"""Follow a pool file: when its content changes, validate it and hand it over."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from .loader import PoolFileError, parse_pool_text
from .spec import ServicePool
from .tasks import cancel_and_wait

log = logging.getLogger("servicepool.proxy")


class PoolFileWatcher:
    """Polls a file (following symlinks, as ConfigMap mounts swap them) for new content.

    An invalid new version is logged and skipped: the last good config keeps serving.
    """

    def __init__(
        self,
        path: str | Path,
        on_change: Callable[[ServicePool], None],
        on_error: Callable[[str], None],
        interval: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.on_error = on_error
        self.interval = interval
        self._digest = self._read_digest()[0]
        self._task: asyncio.Task[None] | None = None

    def _read_digest(self) -> tuple[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return "", ""
        return hashlib.sha256(text.encode()).hexdigest(), text

    def check(self) -> bool:
        """Look once; True when a new valid version was applied."""
        digest, text = self._read_digest()
        if not digest or digest == self._digest:
            return False
        self._digest = digest
        try:
            pool = parse_pool_text(text)
        except PoolFileError as exc:
            log.error(
                "pool file %s changed but is invalid, keeping the last good config: %s",
                self.path,
                exc,
            )
            self.on_error(str(exc))
            return False
        self.on_change(pool)
        return True

    def start(self) -> None:
        """Poll in the background."""
        self._task = asyncio.create_task(self._run(), name="pool-file-watcher")

    async def stop(self) -> None:
        """Stop polling."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise
                log.exception("checking %s failed", self.path)
