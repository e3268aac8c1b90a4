"""Probing members over HTTP, and the clock's wait that a wake cuts short."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from servicepool_api.health import auth_refused
from servicepool_api.probes import probe_once
from servicepool_api.spec import PoolSpec
from servicepool_operator.clocks import SystemClock
from servicepool_operator.probing import HttpProbe
from servicepool_operator.records import ProbeResult


@pytest.fixture
async def member() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """A member that is healthy on /healthz and sick on /sick."""

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def sick(_: web.Request) -> web.Response:
        return web.Response(status=503)

    async def keyed(request: web.Request) -> web.Response:
        return web.Response(status=200 if request.headers.get("Authorization") else 401)

    app = web.Application()
    app.router.add_get("/healthz", healthy)
    app.router.add_get("/sick", sick)
    app.router.add_get("/keyed", keyed)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield str(server.make_url("")).rstrip("/"), session
    await server.close()


def spec(**fields: object) -> PoolSpec:
    return PoolSpec.model_validate({"members": [{"name": "a", "url": "http://a:1"}], **fields})


async def test_a_healthy_member_passes_and_a_failing_one_says_why(
    member: tuple[str, aiohttp.ClientSession],
) -> None:
    url, session = member
    assert await HttpProbe(session)(url, spec()) == ProbeResult(True, "")
    result = await HttpProbe(session)(url, spec(healthCheck={"path": "/sick"}))
    assert (result.ok, result.message) == (False, "probe /sick returned HTTP 503")


async def test_a_probe_refused_with_401_says_auth_failed_and_headers_are_sent(
    member: tuple[str, aiohttp.ClientSession],
) -> None:
    url, session = member
    result = await HttpProbe(session)(url, spec(healthCheck={"path": "/keyed"}))
    assert (result.ok, auth_refused(result.message)) == (False, True), result
    assert not auth_refused("probe /sick returned HTTP 503")
    headers = {"Authorization": "Bearer k"}  # what the proxy's prober sends with upstreamAuth
    assert await probe_once(session, url, "/keyed", 1.0, headers) == (True, "")


async def test_the_wait_between_passes_ends_early_on_a_wake() -> None:
    wake = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, wake.set)
    started = time.monotonic()
    await SystemClock().wait(wake, 60.0)
    assert time.monotonic() - started < 5.0
    await SystemClock().wait(asyncio.Event(), 0.01)  # and otherwise after its time
