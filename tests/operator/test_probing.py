"""Probing members over HTTP, and the clock's wait that a wake cuts short."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from servicepool_api.spec import PoolSpec
from servicepool_operator.clocks import SystemClock
from servicepool_operator.probing import HttpProbe


@pytest.fixture
async def member() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """A member that is healthy on /healthz, sick on /sick, and reports its load."""

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def sick(_: web.Request) -> web.Response:
        return web.Response(status=503)

    async def load(_: web.Request) -> web.Response:
        return web.json_response({"queued": 2, "dispatched": 1})

    app = web.Application()
    app.router.add_get("/healthz", healthy)
    app.router.add_get("/sick", sick)
    app.router.add_get("/v1/status", load)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield str(server.make_url("")).rstrip("/"), session
    await server.close()


def spec(**fields: object) -> PoolSpec:
    return PoolSpec.model_validate({"members": [{"name": "a", "url": "http://a:1"}], **fields})


async def test_a_healthy_member_reports_its_latency_and_its_load(
    member: tuple[str, aiohttp.ClientSession],
) -> None:
    url, session = member
    ticks = iter([10.0, 10.25])
    result = await HttpProbe(session, timer=lambda: next(ticks))(url, spec(capacity={}))
    assert (result.ok, result.message, result.latency_ms) == (True, "", 250.0)
    assert result.capacity == {"queued": 2, "running": 1}


async def test_a_failing_member_says_why_and_is_not_asked_for_its_load(
    member: tuple[str, aiohttp.ClientSession],
) -> None:
    url, session = member
    result = await HttpProbe(session)(url, spec(healthCheck={"path": "/sick"}, capacity={}))
    assert (result.ok, result.message, result.capacity) == (
        False, "probe /sick returned HTTP 503", None)  # fmt: skip


async def test_an_unreadable_load_report_is_shown_as_an_error(
    member: tuple[str, aiohttp.ClientSession],
) -> None:
    url, session = member
    result = await HttpProbe(session)(url, spec(capacity={"path": "/missing"}))
    assert result.ok and result.capacity is not None and "404" in result.capacity["error"]


async def test_the_wait_between_passes_ends_early_on_a_wake() -> None:
    wake = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, wake.set)
    started = time.monotonic()
    await SystemClock().wait(wake, 60.0)
    assert time.monotonic() - started < 5.0
    await SystemClock().wait(asyncio.Event(), 0.01)  # and otherwise after its time
