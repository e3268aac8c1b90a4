"""Hot reload of the pool file, the command line, and graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import yaml

from servicepool_proxy.server import free_port

from .conftest import fetch_member, pool_document, wait_for


def write_pool(path: Path, document: dict) -> None:
    """Replace the file atomically, as a ConfigMap volume update does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(document))
    tmp.replace(path)


async def test_reload_under_load_loses_no_request(members, proxy, client, tmp_path):
    a, b, c = [await members(name, delay=0.02) for name in ("a", "b", "c")]
    slow = await members("slow", delay=0.4)
    path = tmp_path / "pool.yaml"
    first = pool_document(
        [
            {"name": "a", "url": a.url},
            {"name": "b", "url": b.url},
            {"name": "slow", "url": slow.url},
        ]
    )
    write_pool(path, first)
    running = await proxy(first, pool_path=path, watch_interval=0.05)
    state_a = running.server.runtime.balancer.by_name["a"]
    statuses: Counter[int] = Counter()
    members_seen: Counter[str] = Counter()
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            status, member = await fetch_member(client, running.url + "/r")
            statuses[status] += 1
            members_seen[member] += 1

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.sleep(0.5)
    # Remove "slow" (requests may be in flight on it) and "b", add "c", change strategy.
    second = pool_document(
        [{"name": "a", "url": a.url}, {"name": "c", "url": c.url}], strategy="leastInFlight"
    )
    write_pool(path, second)
    assert await wait_for(lambda: running.server.runtime.generation == 2, 3)
    await asyncio.sleep(0.5)  # requests already on removed members finish there
    before = Counter(members_seen)
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.gather(*workers)

    assert set(statuses) == {200}, statuses
    assert running.server.runtime.balancer.by_name["a"] is state_a  # state carried over
    assert state_a.requests > 0
    after = members_seen - before
    assert after["c"] > 0 and after["b"] == 0 and after["slow"] == 0, after
    assert running.server.runtime.spec.strategy.value == "leastInFlight"
    assert slow.behaviour.in_flight == 0


async def test_invalid_reload_keeps_the_last_good_config(members, proxy, client, tmp_path):
    a = await members("a")
    path = tmp_path / "pool.yaml"
    document = pool_document([{"name": "a", "url": a.url}])
    write_pool(path, document)
    running = await proxy(document, pool_path=path, watch_interval=0.05)
    path.write_text("spec: {members: [{name: a, url: 'http://x', weight: 0}]}\n")
    await asyncio.sleep(0.3)
    status, member = await fetch_member(client, running.url)
    assert (status, member) == (200, "a")
    async with client.get(running.admin_url + "/metrics") as response:
        assert 'servicepool_config_reloads_total{pool="test",result="invalid"} 1.0' in (
            await response.text()
        )


async def test_a_member_that_left_the_pool_leaves_the_metrics_too(members, proxy, client, tmp_path):
    a, b = await members("a"), await members("b")
    path = tmp_path / "pool.yaml"
    both = pool_document([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}],
                         healthCheck={"enabled": False})  # fmt: skip
    write_pool(path, both)
    running = await proxy(both, pool_path=path, watch_interval=0.05)
    for _ in range(4):
        await fetch_member(client, running.url)

    async def metrics() -> str:
        async with client.get(running.admin_url + "/metrics") as response:
            return await response.text()

    assert 'member="b"' in await metrics()
    write_pool(path, pool_document([{"name": "a", "url": a.url}], healthCheck={"enabled": False}))
    assert await wait_for(lambda: running.server.runtime.generation == 2, 5)
    text = await metrics()
    assert 'member="b"' not in text and 'member="a"' in text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servicepool_proxy.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bad_pool_file_exits_with_one_line_naming_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(pool_document([{"name": "a", "url": "http://127.0.0.1:1", "weight": 0}]))
    )
    result = run_cli("--pool", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "spec.members[0].weight" in lines[0] and "greater than or equal to 1" in lines[0]

    missing = run_cli("--pool", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


async def test_cli_proxy_drains_in_flight_requests_on_sigterm(members, tmp_path):
    slow = await members("slow", delay=1.0)
    path = tmp_path / "pool.yaml"
    write_pool(path, pool_document([{"name": "slow", "url": slow.url}]))
    port, admin = free_port(), free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - starting it is quick
        [
            sys.executable,
            "-m",
            "servicepool_proxy.cli",
            "--pool",
            str(path),
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin}",
            "--grace",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as client:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with client.get(f"http://127.0.0.1:{admin}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "proxy did not become ready"
                await asyncio.sleep(0.1)

            async def slow_get() -> int:
                async with client.get(f"http://127.0.0.1:{port}/slow") as response:
                    await response.read()
                    return response.status

            in_flight = [asyncio.create_task(slow_get()) for _ in range(3)]
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.gather(*in_flight) == [200, 200, 200]
        code = await asyncio.get_running_loop().run_in_executor(None, process.wait, 15)
        assert code == 0
        output = process.stdout.read().decode()  # type: ignore[union-attr]
        assert "draining" in output and "proxy stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
