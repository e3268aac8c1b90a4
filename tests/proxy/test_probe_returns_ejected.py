"""A passing active probe returns a passively ejected member (as Envoy does).

A member killed under load is ejected by its failed requests for baseEjectionSeconds (30 s);
restarted, its probes pass at once. Before, it stayed Ejected for the rest of the 30 s (24.6 s
more after its probes passed); now `healthyThreshold` passing probes return it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from tests.support import start_member_process, start_proxy_process

from .conftest import wait_for

INTERVAL = 0.3
HEALTHY_THRESHOLD = 2
WAIT_SECONDS = 8.0  # after the restart; the ejection would last 30 s


async def member_row(client: aiohttp.ClientSession, admin: str, name: str) -> dict[str, object]:
    async with client.get(admin + "/status") as response:
        status = json.loads(await response.text())
    pool = status["pools"][0] if "pools" in status else status
    return next(row for row in pool["members"] if row["name"] == name)


async def test_passing_probes_return_an_ejected_member(tmp_path: Path) -> None:
    members = [start_member_process(name) for name in ("a", "b", "c")]
    spec = {
        "members": [{"name": m.name, "url": m.url} for m in members],
        "strategy": "roundRobin",
        "healthCheck": {"intervalSeconds": INTERVAL, "timeoutSeconds": 0.25,
                        "healthyThreshold": HEALTHY_THRESHOLD, "unhealthyThreshold": 1},
        "outlierDetection": {"consecutiveFailures": 1, "baseEjectionSeconds": 30,
                             "maxEjectionPercent": 50},
    }  # fmt: skip
    proxy = start_proxy_process(tmp_path, spec, console_script=True)
    url, admin = f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{proxy.admin_port}"
    served: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def traffic(client: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with client.get(url + "/x") as response:
                await response.read()
                served.append((time.monotonic(), response.headers.get("X-ServicePool-Member", "")))
            await asyncio.sleep(0.01)

    try:
        async with aiohttp.ClientSession() as client:
            task = asyncio.create_task(traffic(client))
            await asyncio.sleep(1.0)
            members[0].kill()
            rows: list[dict[str, object]] = []

            async def ejected() -> None:
                rows.append(await member_row(client, admin, "a"))

            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await ejected()
                if rows[-1]["state"] == "Ejected":
                    break
                await asyncio.sleep(0.1)
            assert rows[-1]["state"] == "Ejected", rows[-1]
            members[0] = start_member_process("a", members[0].port)
            restarted = time.monotonic()
            back = await wait_for(
                lambda: any(t > restarted and name == "a" for t, name in served), WAIT_SECONDS
            )
            row = await member_row(client, admin, "a")
            stop.set()
            await task
        returned = next((t - restarted for t, name in served if t > restarted and name == "a"),
                        None)  # fmt: skip
        assert back and returned is not None, (
            f"a was restarted and its probes pass every {INTERVAL}s, yet {WAIT_SECONDS}s later "
            f"it is {row['state']} for {row['ejectedForSeconds']}s more (health {row['health']}); "
            f"before this fix it stayed Ejected 24.6 s more"
        )
        assert returned < HEALTHY_THRESHOLD * INTERVAL + 2.0, (
            f"a served again {returned:.2f}s after its restart (before the fix: Ejected 24.6 s "
            f"more; expected about {HEALTHY_THRESHOLD} probe intervals)"
        )
        print(f"a served again {returned:.2f}s after its restart")
    finally:
        proxy.stop()
        for member in members:
            member.kill()
