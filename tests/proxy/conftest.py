"""Real member servers and real proxies on 127.0.0.1 for the proxy tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from servicepool_api.loader import parse_pool
from servicepool_dev.samplemember import Behaviour, make_member_app
from servicepool_proxy.server import ProxyOptions, ProxyServer

from ..support import MemberProcess, ProxyProcess, start_member_process


@dataclass
class RunningMember:
    """A member server running in the test's event loop."""

    behaviour: Behaviour
    url: str
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def members() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await members("a", delay=0.1)` starts an in-process member."""
    started: list[RunningMember] = []

    async def start(name: str, delay: float = 0.0, port: int = 0, **fields: Any) -> RunningMember:
        behaviour = Behaviour(name=name, delay=delay, **fields)
        runner = web.AppRunner(make_member_app(behaviour), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        member = RunningMember(behaviour, f"http://127.0.0.1:{bound}", runner)
        started.append(member)
        return member

    yield start
    for member in started:
        await member.stop()


async def serve_handler(handler: Callable[[web.Request], Any]) -> tuple[web.AppRunner, str]:
    """Serve one catch-all aiohttp handler on a free loopback port; returns (runner, url)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def handler_servers() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `url = await handler_servers(handler)`; stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(handler: Callable[[web.Request], Any]) -> str:
        runner, url = await serve_handler(handler)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


RawBehaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_member() -> AsyncIterator[Callable[[RawBehaviour], Awaitable[str]]]:
    """Factory: `url = await raw_member(behaviour)` serves raw bytes from a socket handler."""
    servers: list[asyncio.Server] = []

    async def start(behaviour: RawBehaviour) -> str:
        server = await asyncio.start_server(behaviour, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def member_processes() -> Any:
    """Factory for members in their own processes; all are killed afterwards."""
    started: list[MemberProcess] = []

    def start(name: str, port: int | None = None, delay: float = 0.0) -> MemberProcess:
        member = start_member_process(name, port, delay)
        started.append(member)
        return member

    yield start
    for member in started:
        member.kill()


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Processes to stop after the test: member processes are killed, proxies stopped."""
    processes: list[Any] = []
    yield processes
    for process in processes:
        process.stop() if isinstance(process, ProxyProcess) else process.kill()


def pool_document(members: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A ServicePool document with fast health checks unless the test says otherwise."""
    spec.setdefault("healthCheck", {"intervalSeconds": 0.5, "timeoutSeconds": 0.4})
    return {
        "apiVersion": "servicepool.dev/v1alpha1",
        "kind": "ServicePool",
        "metadata": {"name": "test"},
        "spec": {"members": members, **spec},
    }


@dataclass
class RunningProxy:
    server: ProxyServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"


@pytest.fixture
async def proxy() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await proxy(document, **options)` starts a proxy on free ports."""
    started: list[ProxyServer] = []

    async def start(document: dict[str, Any], **options: Any) -> RunningProxy:
        options.setdefault("listen_host", "127.0.0.1")
        options.setdefault("admin_host", "127.0.0.1")
        options.setdefault("listen_port", 0)
        options.setdefault("admin_port", 0)
        options.setdefault("grace_seconds", 5.0)
        pool_path = options.get("pool_path")
        pool_text = pool_path.read_text() if pool_path is not None else None
        server = ProxyServer(parse_pool(document), ProxyOptions(**options), pool_text)
        await server.start()
        started.append(server)
        return RunningProxy(server)

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def recorded(members: Any, proxy: Any) -> tuple[RunningMember, RunningProxy]:
    """A proxy in front of one member that records every request it receives."""
    member = await members("m")
    running = await proxy(pool_document([{"name": "m", "url": member.url}],
                                        healthCheck={"enabled": False}))  # fmt: skip
    return member, running


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for talking to proxies."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(limit=0),
    ) as session:
        yield session


async def fetch_member(client: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    """GET and return (status, member header)."""
    async with client.get(url) as response:
        await response.read()
        return response.status, response.headers.get("X-ServicePool-Member", "")


async def raw_exchange(port: int, payload: bytes, wait: float = 1.0) -> bytes:
    """Send raw bytes, return everything the proxy answers until it closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), wait)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return received


async def wait_for(predicate: Callable[[], bool], seconds: float, step: float = 0.02) -> bool:
    """Poll a condition until it holds or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()
