"""Queueing delay of `capacity` vs `roundRobin` vs `leastInFlight` on a simulated GPU pool.

Three inference-like members (each serves 2 requests at once, the rest queue): two take 50 ms
per request, one takes 200 ms (4x slower). An open-loop client sends POSTs at a fixed rate
(about 80% of the pool's capacity) through the proxy; queueing delay is the client-measured
latency minus the member's service time. Writes bench/results/capacity.{md,json}.

    python bench/capacity_queueing.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from servicepool_proxy.server import free_port  # noqa: E402
from tests.support import start_member_process, wait_for_port  # noqa: E402

MEMBERS = {"fast-1": 0.05, "fast-2": 0.05, "slow": 0.20}
WORKERS = 2
STRATEGIES = ["roundRobin", "leastInFlight", "capacity"]


def capacity_rps() -> float:
    return sum(WORKERS / service for service in MEMBERS.values())


async def open_loop(
    session: aiohttp.ClientSession, url: str, rate: float, seconds: float
) -> list[tuple[float, str, int]]:
    """Send on schedule; latency is measured from each request's scheduled send time."""
    results: list[tuple[float, str, int]] = []
    if rate <= 0:
        return results

    async def one(scheduled: float) -> None:
        body = {"model": "m", "max_tokens": 1}
        async with session.post(url, json=body) as response:
            await response.read()
            member = response.headers.get("X-ServicePool-Member", "?")
            results.append((time.monotonic() - scheduled, member, response.status))

    tasks = []
    start = time.monotonic()
    for index in range(int(rate * seconds)):
        scheduled = start + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return results


async def drive(
    url: str, rate: float, seconds: float, side_url: str, side_rate: float
) -> list[tuple[float, str, int]]:
    """Load through the proxy, plus optional load sent straight to one member."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        through, _ = await asyncio.gather(
            open_loop(session, url, rate, seconds),
            open_loop(session, side_url, side_rate, seconds),
        )
    return through


def run_strategy(
    strategy: str, rate: float, seconds: float, workdir: Path, side_rate: float
) -> dict:
    members = {
        name: start_member_process(name, extra=["--workers", str(WORKERS),
                                                "--service-time", str(service)])
        for name, service in MEMBERS.items()
    }  # fmt: skip
    pool = {
        "apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
        "metadata": {"name": "gpu"},
        "spec": {
            "strategy": strategy,
            "members": [{"name": n, "url": m.url} for n, m in members.items()],
            "capacity": {"intervalSeconds": 0.1},
            "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
            "queue": {"timeoutSeconds": 60},
        },
    }  # fmt: skip
    pool_file = workdir / f"{strategy}.yaml"
    pool_file.write_text(yaml.safe_dump(pool))
    port, admin = free_port(), free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "servicepool_proxy.cli", "--pool", str(pool_file),
         "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
         "--log-level", "WARNING"],
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 20, proxy)
        time.sleep(0.5)  # first capacity reports
        side_url = members["fast-1"].url + "/v1/chat/completions"
        results = asyncio.run(
            drive(f"http://127.0.0.1:{port}/v1/chat/completions", rate, seconds, side_url,
                  side_rate)
        )  # fmt: skip
    finally:
        proxy.terminate()
        proxy.wait(10)
        for member in members.values():
            member.kill()
    delays = sorted(max(0.0, latency - MEMBERS.get(m, 0.0)) for latency, m, _ in results)
    split = {name: sum(1 for _, m, _ in results if m == name) for name in MEMBERS}
    errors = sum(1 for _, _, status in results if status != 200)
    return {
        "strategy": strategy,
        "requests": len(results),
        "errors": errors,
        "meanQueueingMs": round(statistics.fmean(delays) * 1e3, 1),
        "p99QueueingMs": round(delays[max(0, int(len(delays) * 0.99) - 1)] * 1e3, 1),
        "split": split,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 s per strategy instead of 15")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of pool capacity")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else 15.0
    rate = capacity_rps() * args.load
    # Scenario B: another client sends 30/s straight to fast-1, which the proxy cannot see
    # in its own in-flight counts; only the member's reports reveal it.
    side_rate = 30.0
    scenarios = {"proxy only": 0.0, "plus 30/s sent directly to fast-1": side_rate}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, side in scenarios.items():
            through = rate - side
            for strategy in STRATEGIES:
                row = run_strategy(strategy, through, seconds, Path(tmp), side)
                row["scenario"] = label
                rows.append(row)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(
        {"ratePerSecond": rate, "seconds": seconds, "members": MEMBERS, "workers": WORKERS,
         "results": rows}, indent=2))  # fmt: skip
    lines = [
        "# Queueing delay on a heterogeneous GPU-like pool",
        "",
        f"3 members x {WORKERS} workers, service times {MEMBERS} s; open-loop POSTs at "
        f"{rate:.0f}/s in all ({args.load:.0%} of capacity) for {seconds:g} s per strategy; "
        "queueing delay is measured on the requests that went through the proxy.",
        "",
        "| scenario | strategy | requests | errors | mean queueing (ms) | p99 queueing (ms) "
        "| split through the proxy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        split = ", ".join(f"{k} {v}" for k, v in row["split"].items())
        lines.append(f"| {row['scenario']} | {row['strategy']} | {row['requests']} | "
                     f"{row['errors']} | {row['meanQueueingMs']} | {row['p99QueueingMs']} | "
                     f"{split} |")  # fmt: skip
    (out / "capacity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
