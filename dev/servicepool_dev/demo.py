"""`python -m servicepool_dev.demo`: a real pool of three member processes behind the proxy.

It sends steady traffic and prints, second by second, how requests split across members,
while one member starts failing, another is killed, and both come back.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

import aiohttp
import yaml

from servicepool_proxy.server import free_port

RATE_PER_SECOND = 100


class Demo:
    """The member processes, the proxy process, and the traffic between them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in ("fast", "slow", "flaky")}
        self.proxy_port = free_port()
        self.admin_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.window: Counter[str] = Counter()
        self.errors = 0
        self.total = Counter[str]()

    def start_member(self, name: str, delay: float) -> None:
        self.processes[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "servicepool_dev.samplemember",
                "--name",
                name,
                "--port",
                str(self.ports[name]),
                "--delay",
                str(delay),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_proxy(self) -> None:
        pool = {
            "apiVersion": "servicepool.dev/v1alpha1",
            "kind": "ServicePool",
            "metadata": {"name": "demo"},
            "spec": {
                "strategy": "leastInFlight",
                "members": [
                    {"name": name, "url": f"http://127.0.0.1:{port}"}
                    for name, port in self.ports.items()
                ],
                "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
                "outlierDetection": {"consecutiveFailures": 3, "baseEjectionSeconds": 3},
            },
        }
        pool_file = self.workdir / "pool.yaml"
        pool_file.write_text(yaml.safe_dump(pool, sort_keys=False))
        print(f"pool file {pool_file}:\n{pool_file.read_text()}")
        self.processes["proxy"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "servicepool_proxy.cli",
                "--pool",
                str(pool_file),
                "--listen",
                f"127.0.0.1:{self.proxy_port}",
                "--admin",
                f"127.0.0.1:{self.admin_port}",
                "--log-level",
                "WARNING",
            ],
        )

    async def wait_ready(self, client: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with suppress(aiohttp.ClientError):
                async with client.get(f"http://127.0.0.1:{self.admin_port}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise SystemExit("the proxy did not become ready within 20 s")

    async def send(self, client: aiohttp.ClientSession) -> None:
        try:
            async with client.get(f"http://127.0.0.1:{self.proxy_port}/work") as response:
                await response.read()
                member = response.headers.get("X-ServicePool-Member", "?")
                if response.status == 200:
                    self.window[member] += 1
                    self.total[member] += 1
                else:
                    self.errors += 1
        except aiohttp.ClientError:
            self.errors += 1

    async def traffic(self, client: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        interval = 1 / RATE_PER_SECOND
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(self.send(client))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    async def states(self, client: aiohttp.ClientSession) -> str:
        async with client.get(f"http://127.0.0.1:{self.admin_port}/status") as response:
            status = await response.json()
        return " ".join(f"{m['name']}={m['state']}" for m in status["members"])

    async def report(self, client: aiohttp.ClientSession, seconds: int, started: float) -> None:
        for _ in range(seconds):
            await asyncio.sleep(1)
            split = "  ".join(f"{name}:{self.window[name]:3d}" for name in self.ports)
            print(
                f"[{time.monotonic() - started:5.1f}s] {split}  errors:{self.errors}  "
                f"| {await self.states(client)}",
                flush=True,
            )
            self.window.clear()

    async def control(self, client: aiohttp.ClientSession, member: str, action: str) -> None:
        url = f"http://127.0.0.1:{self.ports[member]}/control/{action}"
        async with client.post(url) as response:
            await response.read()

    async def run(self) -> int:
        self.start_member("fast", 0.005)
        self.start_member("slow", 0.05)
        self.start_member("flaky", 0.005)
        self.start_proxy()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            await self.wait_ready(client)
            stop = asyncio.Event()
            load = asyncio.create_task(self.traffic(client, stop))
            started = time.monotonic()
            print(
                f"\n== {RATE_PER_SECOND} GET/s through the proxy (strategy leastInFlight); "
                "the slow member gets less =="
            )
            await self.report(client, 4, started)
            print(
                "\n== 'flaky' now answers every request with 503: retried elsewhere, "
                "then ejected =="
            )
            await self.control(client, "flaky", "fail")
            await self.report(client, 4, started)
            print(
                "\n== 'fast' is killed with SIGKILL: in-flight GETs are retried, "
                "probes mark it Unhealthy =="
            )
            self.processes["fast"].send_signal(signal.SIGKILL)
            await self.report(client, 4, started)
            print("\n== 'flaky' heals and 'fast' restarts: both get traffic again ==")
            await self.control(client, "flaky", "heal")
            self.start_member("fast", 0.005)
            await self.report(client, 6, started)
            stop.set()
            await load
        print(f"\ntotal split: {dict(self.total)}; client-visible errors: {self.errors}")
        return 0 if self.errors == 0 else 1

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(10)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="servicepool-demo-") as workdir:
        demo = Demo(Path(workdir))
        try:
            return asyncio.run(demo.run())
        finally:
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
