"""One hostile client against servicepool and against nginx, in the same run.

    python bench/hostile.py [--seconds 8] [--only NAME ...]

For each attack and each peer (one process each, one sample member behind it): the proxy's
RSS before, at its peak during and 3 s after the attack (no forced garbage collection), a
normal client's p99 and errors at 50 GET/s while the attack runs, and whether the member was
ejected (servicepool's ejection counter; nginx has no such counter, a 502/503 would show in
the errors). The attacker runs in its own process and reconnects whenever the proxy closes
on it, so the attack lasts the whole window. Writes bench/results/hostile.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.run import Processes, cpu_seconds, open_loop, with_children, write_pool  # noqa: E402
from servicepool_proxy.server import free_port  # noqa: E402
from tests.support import start_member_process  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NORMAL_RATE = 50  # GET/s from the normal client
SETTLE_SECONDS = 3.0  # after the attack, before RSS is read again

Attack = Callable[[int, float], Awaitable[None]]


# -- attacks (run in the attacker process) ---------------------------------------------


async def endless(port: int, until: float, head: bytes, filler: bytes) -> None:
    """Send `head`, then `filler` for ever; reconnect whenever the proxy closes."""
    while time.monotonic() < until:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            writer.write(head)
            while time.monotonic() < until:
                writer.write(filler)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


HEADER_HEAD = b"GET /flood HTTP/1.1\r\nHost: x\r\nX-Big: "
TRAILER_HEAD = (
    b"POST /flood HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: "
)


async def header_line(port: int, until: float) -> None:
    await endless(port, until, HEADER_HEAD, b"a" * 16384)


async def header_line_x10(port: int, until: float) -> None:
    await asyncio.gather(*(endless(port, until, HEADER_HEAD, b"a" * 16384) for _ in range(10)))


async def trailer_line(port: int, until: float) -> None:
    await endless(port, until, TRAILER_HEAD, b"a" * 16384)


async def pipeline_unread(port: int, until: float) -> None:
    """8000 pipelined GETs of a 200 kB answer on a socket that never reads."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /x?size=200000 HTTP/1.1\r\nHost: x\r\n\r\n" * 8000)
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    writer.transport.abort()


async def abandon(port: int, until: float, length: int) -> None:
    """Uploads of `length` bytes, each abandoned after 64 kB and 50 ms, 20 a second."""
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length
    while time.monotonic() < until:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + b"u" * 65536)
            await asyncio.sleep(0.05)
            writer.transport.abort()
        except OSError:
            pass


async def abandoned_uploads(port: int, until: float) -> None:
    await abandon(port, until, 2_000_000)


async def abandoned_streamed_uploads(port: int, until: float) -> None:
    await abandon(port, until, 20_000_000)  # over retries.bufferBytes: servicepool streams it


async def slow_uploads(port: int, until: float) -> None:
    """500 uploads of 2 MB, each sending 1 kB a second."""

    async def one() -> None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
            while time.monotonic() < until:
                writer.write(b"s" * 1024)
                await writer.drain()
                await asyncio.sleep(1)
            writer.transport.abort()
        except OSError:
            pass

    await asyncio.gather(*(one() for _ in range(500)))


ATTACKS: dict[str, Attack] = {
    "endless header line, 1 connection": header_line,
    "endless header line, 10 connections": header_line_x10,
    "endless trailer line": trailer_line,
    "8000 pipelined GETs, never read": pipeline_unread,
    "abandoned 2 MB uploads": abandoned_uploads,
    "abandoned 20 MB uploads": abandoned_streamed_uploads,
    "500 slow 2 MB uploads": slow_uploads,
}


# -- peers ------------------------------------------------------------------------------


def start_nginx(procs: Processes, tmp: Path, member: str) -> tuple[int, list[int]]:
    """nginx as a reverse proxy with its defaults, except no body size limit (like ours)."""
    port = free_port()
    conf = tmp / f"nginx-{port}.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {tmp}/nginx-{port}.pid; error_log {tmp}/nginx-{port}.log;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {tmp}/body-{port};
  upstream pool {{ server {member}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port}; client_max_body_size 0;
    location / {{ proxy_pass http://pool; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}
""")
    process = procs.start(["nginx", "-c", str(conf), "-p", str(tmp)], port)
    return port, with_children([process.pid])


def start_servicepool(procs: Processes, tmp: Path, member: str) -> tuple[int, list[int], int]:
    port, admin = free_port(), free_port()
    pool_file = tmp / f"pool-{port}.yaml"
    write_pool(pool_file, [member], "roundRobin", {"healthCheck": {"enabled": False}})
    process = procs.start([
        sys.executable, "-m", "servicepool_proxy.cli", "--pool", str(pool_file),
        "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
        "--log-level", "ERROR",
    ], port)  # fmt: skip
    return port, [process.pid], admin


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        total += int(match.group(1)) if match else 0
    return total / 1024


def member_connections(port: int) -> int:
    """Established connections to the member's port (its side of them)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                count += 1
    return count


def ejections(admin: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(sum(float(v) for v in re.findall(r"^servicepool_ejections_total\{.*\} (\S+)$",
                                                  text, re.M)))  # fmt: skip


def run_attack(name: str, peer: str, seconds: float, tmp: Path) -> dict[str, Any]:
    procs = Processes()
    try:
        member = start_member_process("m")
        procs.items.append(member.process)
        address = member.url.removeprefix("http://")
        admin = 0
        if peer == "servicepool":
            port, pids, admin = start_servicepool(procs, tmp, address)
        else:
            port, pids = start_nginx(procs, tmp, address)
        url = f"http://127.0.0.1:{port}/ok"
        asyncio.run(open_loop(url, 100, 1))  # warm up
        before = rss_mb(pids)
        peak = [before]
        member_peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(rss_mb(pids))
                member_peak.append(member_connections(member.port))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        cpu_before = cpu_seconds(pids)
        sampler.start()
        attacker = subprocess.Popen([sys.executable, __file__, "--attack", name,
                                     "--port", str(port), "--seconds", str(seconds)])  # fmt: skip
        time.sleep(0.5)  # let the attack start
        normal = asyncio.run(open_loop(url, NORMAL_RATE, seconds - 1))
        attacker.wait(seconds + 30)
        stop.set()
        sampler.join()
        cpu = cpu_seconds(pids) - cpu_before
        time.sleep(SETTLE_SECONDS)
        return {
            "rssBeforeMb": round(before, 1),
            "rssPeakMb": round(max(peak), 1),
            "rssAfterMb": round(rss_mb(pids), 1),
            "p99Ms": round(normal["p99"], 1),
            "errors": normal["errors"],
            "statuses": normal["statuses"],
            "memberConnectionsPeak": max(member_peak),
            "proxyCpuSeconds": round(cpu, 2),
            "ejections": ejections(admin) if admin else None,
        }
    finally:
        procs.stop_all()


def write_report(results: dict[str, dict[str, dict[str, Any]]], seconds: float) -> None:
    lines = [
        "# One hostile client: servicepool vs nginx",
        "",
        f"`python bench/hostile.py`: each attack runs {seconds:g} s against one proxy process "
        f"with one sample member; a normal client sends {NORMAL_RATE} GET/s meanwhile. RSS after "
        f"is read {SETTLE_SECONDS:g} s after the attack's connections closed, with no forced "
        "garbage collection. 2 cores, loopback.",
        "",
        "| attack | peer | RSS before / peak / after (MB) | normal p99 (ms) | normal errors "
        "| member connections (peak) | ejections | proxy CPU (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for attack, peers in results.items():
        for peer, r in peers.items():
            ejected = "n/a" if r["ejections"] is None else str(r["ejections"])
            lines.append(
                f"| {attack} | {peer} | {r['rssBeforeMb']} / {r['rssPeakMb']} / "
                f"{r['rssAfterMb']} | {r['p99Ms']} | {r['errors']} | "
                f"{r['memberConnectionsPeak']} | {ejected} | {r['proxyCpuSeconds']} |"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hostile.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "hostile.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", action="append", help="run only attacks containing this")
    parser.add_argument("--peers", nargs="+", default=["servicepool", "nginx"],
                        choices=["servicepool", "nginx"])  # fmt: skip
    parser.add_argument("--attack", help=argparse.SUPPRESS)  # the attacker process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        asyncio.run(ATTACKS[args.attack](args.port, time.monotonic() + args.seconds))
        return 0
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ATTACKS:
            if args.only and not any(part in name for part in args.only):
                continue
            results[name] = {}
            for peer in args.peers:
                results[name][peer] = run_attack(name, peer, args.seconds, Path(tmp))
                print(name, peer, results[name][peer], flush=True)
    write_report(results, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
