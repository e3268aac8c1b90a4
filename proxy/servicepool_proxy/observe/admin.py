"""The admin port: metrics, liveness, readiness and a JSON status page."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.compiled import build_name
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime


def member_status(member: MemberState, now: float) -> dict[str, Any]:
    """What /status says about one member."""
    return {
        "name": member.name,
        "url": member.url,
        "state": member.state_label(now),
        "health": member.health.value,
        "weight": member.weight,
        "priority": member.priority,
        "maxInFlight": member.max_in_flight,
        "inFlight": member.in_flight,
        "requests": member.requests,
        "failures": member.failures,
        "consecutiveFailures": member.consecutive_failures,
        "authErrors": member.auth_errors,
        "rateLimited": member.rate_limited,
        "ejections": member.ejections,
        "ejectedForSeconds": round(max(0.0, member.ejected_until - now), 3),
        "ewmaLatencyMs": (
            None if member.ewma_latency is None else round(member.ewma_latency * 1e3, 3)
        ),
        "lastError": member.last_error,
        "probeMessage": member.probe_message,
        "authFailed": member.auth_failed,
        "models": sorted(member.models()),
        "capabilities": sorted(member.kinds()),
        "capacity": capacity_status(member, now),
        "prefixCache": {
            **member.prefixes.to_status(),
            "cacheSize": None if member.cache_size is None else member.cache_size.to_status(),
        },
        **member.stats.to_status(),
    }


def capacity_status(member: MemberState, now: float) -> dict[str, Any] | None:
    """The member's last load report, if it ever sent one."""
    if member.reported_at <= 0:
        return {"error": member.report_error} if member.report_error else None
    return {
        "queued": member.reported_queued,
        "running": member.reported_running,
        "workers": member.reported_workers,
        "cacheUsage": member.reported_cache_usage,
        "ageSeconds": round(now - member.reported_at, 3),
        "error": member.report_error,
    }


def pool_status(runtime: PoolRuntime, now: float) -> dict[str, Any]:
    """What /status says about the pool."""
    return {
        "pool": runtime.name,
        "generation": runtime.generation,
        "strategy": runtime.spec.strategy.value,
        "build": build_name(),
        "routableMembers": runtime.balancer.routable_count(now),
        "totalMembers": len(runtime.members),
        "queued": len(runtime.queue),
        "members": [member_status(m, now) for m in runtime.members],
        "explain": runtime.explain,
        "decisions": [d.to_json() for d in runtime.decisions],
    }


def make_admin_app(
    runtime: PoolRuntime, metrics: ProxyMetrics, shutting_down: Callable[[], bool]
) -> web.Application:
    """The admin application; readiness fails while draining or with no routable member."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if shutting_down():
            return web.Response(status=503, text="shutting down\n")
        now = time.monotonic()
        if runtime.balancer.routable_count(now) == 0:
            return web.Response(status=503, text=runtime.balancer.describe_unavailable(now) + "\n")
        return web.Response(text="ready\n")

    async def status(_: web.Request) -> web.Response:
        return web.json_response(pool_status(runtime, time.monotonic()))

    async def prometheus(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", prometheus)
    return app
