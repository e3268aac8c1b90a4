"""Real member servers and real proxies on 127.0.0.1 for the proxy tests."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from servicepool_proxy.loader import parse_pool
from servicepool_proxy.samplemember import Behaviour, make_member_app
from servicepool_proxy.server import ProxyOptions, ProxyServer, free_port


@dataclass
class RunningMember:
    """A member server running in the test's event loop."""

    behaviour: Behaviour
    url: str
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


@dataclass
class MemberProcess:
    """A member server in its own process, so it can be killed for real."""

    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)


def start_member_process(name: str, port: int | None = None, delay: float = 0.0) -> MemberProcess:
    """Start `servicepool-sample-member` and wait until it accepts connections."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servicepool_proxy.samplemember",
            "--name",
            name,
            "--port",
            str(port),
            "--delay",
            str(delay),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return MemberProcess(name, port, process)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"member {name} exited with {process.returncode}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"member {name} did not start on port {port}")


@pytest.fixture
async def members() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await members("a", delay=0.1)` starts an in-process member."""
    started: list[RunningMember] = []

    async def start(name: str, delay: float = 0.0, port: int = 0) -> RunningMember:
        behaviour = Behaviour(name=name, delay=delay)
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


async def wait_for(predicate: Callable[[], bool], seconds: float, step: float = 0.02) -> bool:
    """Poll a condition until it holds or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()
