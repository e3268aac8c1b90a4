"""The live pool page on the admin port: GET /ui (one self-contained page) and GET /events
(server-sent events: a snapshot at once, then one on every change, at most every 250 ms)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from servicepool_proxy.observe.snapshot import PoolView, RateMeter, pool_snapshot
from servicepool_proxy.observe.ui_page import PAGE
from servicepool_proxy.runtime import PoolRuntime

TICK_SECONDS = 0.25  # the most often a snapshot is sent
KEEPALIVE_SECONDS = 15.0  # a comment line so idle connections are not cut


def view_of(runtime: PoolRuntime, now: float) -> PoolView:
    """What the page shows of the live pool."""
    return PoolView(
        name=runtime.name,
        strategy=runtime.spec.strategy.value,
        generation=runtime.generation,
        members=list(runtime.members),
        routable=runtime.balancer.routable_count(now),
        waiting=len(runtime.queue),
        max_waiting=runtime.queue.max_waiting,
        queue_timeout=runtime.spec.queue.timeoutSeconds,
        explain=runtime.explain,
        decisions=list(runtime.decisions),
    )


class LiveFeed:
    """One snapshot per tick, shared by every open /events stream."""

    def __init__(self, runtime: PoolRuntime, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.clock = clock
        self.rates = RateMeter()
        self._taken_at = float("-inf")
        self._text = ""

    def current(self) -> str:
        """The latest snapshot as JSON, taken again when a tick has passed."""
        now = self.clock()
        if now - self._taken_at >= TICK_SECONDS:
            rates = self.rates.update(self.runtime.members, now)
            snapshot: dict[str, Any] = pool_snapshot(view_of(self.runtime, now), now, rates)
            self._text = json.dumps(snapshot, separators=(",", ":"))
            self._taken_at = now
        return self._text


def closed(request: web.Request) -> bool:
    """Whether the client of a stream has gone (closed its page)."""
    return request.transport is None or request.transport.is_closing()


def add_live_routes(
    app: web.Application, runtime: PoolRuntime, shutting_down: Callable[[], bool]
) -> None:
    """Serve /ui and /events on the admin application."""
    feed = LiveFeed(runtime)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                     "X-Accel-Buffering": "no"},
        )  # fmt: skip
        await response.prepare(request)
        sent, quiet_since = "", time.monotonic()
        try:
            while not shutting_down() and not closed(request):
                text = feed.current()
                if text != sent:
                    await response.write(f"data: {text}\n\n".encode())
                    sent, quiet_since = text, time.monotonic()
                elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                    await response.write(b": keep-alive\n\n")
                    quiet_since = time.monotonic()
                await asyncio.sleep(TICK_SECONDS)
        except ConnectionResetError:  # the page went away between two looks
            pass
        return response

    app.router.add_get("/ui", page)
    app.router.add_get("/events", events)
