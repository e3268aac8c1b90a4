"""The admin port of a proxy run as workers, against real worker admin servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from servicepool_proxy.observe.workers_admin import WorkersAdmin
from servicepool_proxy.server import free_port

Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve an app on 127.0.0.1; returns its base URL. All are stopped afterwards."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


async def raw_get(base: str, path: str) -> bytes:
    """Everything the server sends for one GET, until it closes the connection."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    received = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return received


async def test_a_worker_that_dies_mid_stream_ends_that_answer_and_starts_no_second(serve) -> None:
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "text/event-stream"
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await asyncio.sleep(0.1)
        assert request.transport is not None
        request.transport.abort()  # the worker process dies
        return response

    worker = web.Application()
    worker.router.add_get("/events", events)
    worker_base = await serve(worker)
    admin = WorkersAdmin(lambda: [worker_base], lambda: False)
    admin_base = await serve(admin.app())

    received = await raw_get(admin_base, "/events")
    assert received.count(b"HTTP/1.1 ") == 1  # one status line: no 503 written after it
    assert received.startswith(b"HTTP/1.1 200")
    assert b"data: first" in received
    assert not received.endswith(b"0\r\n\r\n")  # cut short, not a complete chunked answer


async def test_no_worker_is_a_503_with_a_reason(serve) -> None:
    admin = WorkersAdmin(lambda: [f"http://127.0.0.1:{free_port()}"], lambda: False)
    admin_base = await serve(admin.app())
    received = await raw_get(admin_base, "/ui")
    assert received.startswith(b"HTTP/1.1 503") and received.endswith(b"no worker answered\n")
