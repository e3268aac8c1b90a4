"""Active health: probe every member's healthCheck.path on an interval."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aiohttp

from .balancer.pool import apply_probe
from .metrics import ProxyMetrics
from .runtime import PoolRuntime
from .tasks import cancel_and_wait

log = logging.getLogger("servicepool.proxy")


async def probe_once(
    session: aiohttp.ClientSession, base_url: str, path: str, limit_seconds: float
) -> tuple[bool, str]:
    """GET the member's health path; 2xx/3xx is healthy. Returns (ok, message)."""
    try:
        async with session.get(
            base_url + path,
            timeout=aiohttp.ClientTimeout(total=limit_seconds),
            allow_redirects=False,
        ) as response:
            await response.read()
            if 200 <= response.status < 400:
                return True, ""
            return False, f"probe {path} returned HTTP {response.status}"
    except TimeoutError:
        return False, f"probe {path} timed out after {limit_seconds:g}s"
    except aiohttp.ClientError as exc:
        return False, f"probe {path} failed: {exc}"


class ActiveProber:
    """Probes all current members each interval and folds the results into their health."""

    def __init__(self, runtime: PoolRuntime, metrics: ProxyMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Begin probing in the background."""
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )
        self._task = asyncio.create_task(self._run(), name="active-prober")

    async def stop(self) -> None:
        """Stop probing and close the probe session."""
        await cancel_and_wait(self._task)
        if self._session is not None:
            await self._session.close()

    async def probe_all(self) -> None:
        """One round of probes over the current members."""
        assert self._session is not None
        runtime = self.runtime
        check = runtime.spec.healthCheck
        members = list(runtime.members)
        results = await asyncio.gather(
            *(probe_once(self._session, m.url, check.path, check.timeoutSeconds) for m in members)
        )
        changed = False
        for member, (ok, message) in zip(members, results, strict=True):
            self.metrics.probes.labels(runtime.name, member.name, "ok" if ok else "fail").inc()
            if member.removed:
                continue
            if apply_probe(member, ok, message, check):
                changed = True
                log.info(
                    "pool %s: member %s is %s%s",
                    runtime.name,
                    member.name,
                    member.health.value,
                    f" ({message})" if message else "",
                )
        if changed:
            runtime.queue.wake_all()

    async def _run(self) -> None:
        while True:
            check = self.runtime.spec.healthCheck
            started = time.monotonic()
            if check.enabled:
                try:
                    await self.probe_all()
                except Exception:  # a probe round must never end probing
                    log.exception("probe round failed")
            elapsed = time.monotonic() - started
            jitter = random.uniform(0, 0.05 * check.intervalSeconds)
            await asyncio.sleep(max(0.0, check.intervalSeconds - elapsed) + jitter)
