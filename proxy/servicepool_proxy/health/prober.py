"""Background polling of members: active health probes, capacity reports, model lists, the
size of their prompt caches."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp

from servicepool_api.engine_cache import CACHE_SIZE_PATHS, parse_cache_size
from servicepool_api.health import apply_probe
from servicepool_api.probes import fetch, probe_once
from servicepool_api.signals import (
    SignalError,
    parse_load_report,
    parse_model_list,
)
from servicepool_api.spec import Strategy
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.model_routing import discovery
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime
from servicepool_proxy.tasks import cancel_and_wait

log = logging.getLogger("servicepool.proxy")

# A check looks at one member and says whether routing-relevant state changed.
Check = Callable[[aiohttp.ClientSession, MemberState], Awaitable[bool]]


class MemberPoller:
    """Runs one check on every current member each interval, in the background."""

    def __init__(
        self,
        name: str,
        runtime: PoolRuntime,
        interval: Callable[[], float | None],
        check: Check,
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.interval = interval  # None: this poller is off under the current spec
        self.check = check
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Begin polling in the background."""
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop polling and close the session."""
        await cancel_and_wait(self._task)
        if self._session is not None:
            await self._session.close()

    async def poll_all(self) -> None:
        """One round over the current members."""
        assert self._session is not None
        members = list(self.runtime.members)
        changed = await asyncio.gather(*(self.check(self._session, m) for m in members))
        if any(changed):
            self.runtime.queue.offer()

    async def _run(self) -> None:
        while True:
            interval = self.interval()
            started = time.monotonic()
            if interval is not None:
                try:
                    await self.poll_all()
                except Exception:  # a round must never end polling
                    log.exception("%s: round failed", self.name)
            period = interval if interval is not None else 1.0
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, period - elapsed) + random.uniform(0, 0.05 * period))


def health_poller(runtime: PoolRuntime, metrics: ProxyMetrics) -> MemberPoller:
    """Active health: probe healthCheck.path (with the pool's credential, as requests carry
    it); thresholds decide Healthy/Unhealthy."""

    async def check(session: aiohttp.ClientSession, member: MemberState) -> bool:
        spec = runtime.spec.healthCheck
        credential = runtime.upstream_credential
        sent = credential.header() if credential is not None else None
        headers = dict([sent]) if sent is not None else None
        ok, message = await probe_once(session, member.url, spec.path, spec.timeoutSeconds, headers)
        metrics.probes.labels(runtime.name, member.name, "ok" if ok else "fail").inc()
        if member.removed:
            return False
        returned = runtime.balancer.record_probe(member, ok, time.monotonic())
        if returned:
            log.info("pool %s: member %s passes its probes: back from ejection (half-open)",
                     runtime.name, member.name)  # fmt: skip
        if not apply_probe(member, ok, message, spec):
            return returned
        log.info("pool %s: member %s is %s%s", runtime.name, member.name,
                 member.health.value, f" ({message})" if message else "")  # fmt: skip
        return True

    def interval() -> float | None:
        spec = runtime.spec.healthCheck
        return spec.intervalSeconds if spec.enabled else None

    return MemberPoller("active-health", runtime, interval, check)


def capacity_poller(runtime: PoolRuntime) -> MemberPoller:
    """Capacity signal: each member's status endpoint or metrics page, every interval."""

    async def check(session: aiohttp.ClientSession, member: MemberState) -> bool:
        policy = runtime.spec.capacity
        if policy is None:
            return False
        try:
            body = await fetch(session, member.url + policy.endpoint(), policy.intervalSeconds * 2)
            report = parse_load_report(body, policy)
        except SignalError as exc:
            member.report_error = str(exc)
            return False
        member.record_report(time.monotonic(), report.queued, report.running, report.workers,
                             report.cache_usage)  # fmt: skip
        return True

    def interval() -> float | None:
        policy = runtime.spec.capacity
        return None if policy is None else policy.intervalSeconds

    return MemberPoller("capacity", runtime, interval, check)


def model_poller(runtime: PoolRuntime) -> MemberPoller:
    """Model discovery: each member's model list (OpenAI shape), and the request kinds its
    cards say it serves, every interval."""

    async def check(session: aiohttp.ClientSession, member: MemberState) -> bool:
        routing = discovery(runtime.pool.spec)
        if routing is None:
            return False
        try:
            listed = parse_model_list(await fetch(session, member.url + routing.path, 5.0))
        except SignalError as exc:
            log.debug("pool %s: member %s: %s", runtime.name, member.name, exc)
            return False
        kinds = frozenset(kind.value for kind in listed.kinds)
        if listed.owners == member.discovered_models and kinds == member.discovered_kinds:
            return False
        member.discovered_models, member.discovered_kinds = listed.owners, kinds
        runtime.models_discovered()
        log.info("pool %s: member %s serves %s (request kinds: %s)", runtime.name, member.name,
                 ", ".join(sorted(listed.owners)) or "no models",
                 ", ".join(sorted(kinds)) or "any")  # fmt: skip
        return True

    def interval() -> float | None:
        routing = discovery(runtime.pool.spec)
        return None if routing is None else routing.intervalSeconds

    return MemberPoller("model-discovery", runtime, interval, check)


# How often cacheAware asks each member what its prompt cache holds (an engine restarted with
# other settings is seen within this).
CACHE_SIZE_INTERVAL_SECONDS = 60.0


def cache_size_poller(runtime: PoolRuntime) -> MemberPoller:
    """cacheAware: what each member's engine says its prompt cache holds (llama.cpp's /props,
    vLLM's vllm:cache_config_info in /metrics), every CACHE_SIZE_INTERVAL_SECONDS."""

    async def check(session: aiohttp.ClientSession, member: MemberState) -> bool:
        for path in CACHE_SIZE_PATHS:
            try:
                size = parse_cache_size(path, await fetch(session, member.url + path, 5.0))
            except SignalError:
                continue
            if size is not None:
                if runtime.balancer.tell_cache_size(member, size):
                    log.info("pool %s: member %s holds %d prompt tokens (%s)", runtime.name,
                             member.name, size.tokens, size.source)  # fmt: skip
                return False
        return False

    def interval() -> float | None:
        cache_aware = runtime.spec.strategy is Strategy.CACHE_AWARE
        return CACHE_SIZE_INTERVAL_SECONDS if cache_aware else None

    return MemberPoller("cache-size", runtime, interval, check)
