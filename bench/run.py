"""servicepool against direct, nginx, HAProxy, Envoy and vllm-router, side by side in one run.

    python bench/run.py [--quick] [--skip-operator] [--only overhead ...]

Writes bench/results/report.md, report.json and PNG plots. Peers run one process each
(nginx worker_processes 1, HAProxy nbthread 1, Envoy --concurrency 1, vllm-router with one
runtime thread, one proxy process) on 127.0.0.1; repetitions
alternate peers (A B A B) and the report gives medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from servicepool_proxy.server import free_port  # noqa: E402
from tests.support import start_member_process, wait_for_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def quick_results() -> Path:
    """Where a quick run writes, so it never overwrites the committed full results."""
    return RESULTS / "quick"


BODY_1K = "x" * 1024


class Processes:
    """Every process the bench starts; all are stopped at the end, even on Ctrl-C."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], port: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        self.items.append(process)
        if port:
            wait_for_port("127.0.0.1", port, 20, process)
        return process

    def stop_all(self) -> None:
        for process in self.items:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.items:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


def nginx_member(procs: Processes, tmp: Path) -> str:
    """nginx serving a fixed 1 KB body: a member fast enough never to be the bottleneck."""
    port = free_port()
    conf = tmp / f"member-{port}.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {tmp}/member-{port}.pid; error_log {tmp}/member-{port}.log;
events {{ worker_connections 4096; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port};
  location / {{ return 200 "{BODY_1K}"; }} }} }}
""")
    procs.start(["nginx", "-c", str(conf), "-p", str(tmp)], port)
    return f"127.0.0.1:{port}"


def nginx_proxy(procs: Processes, tmp: Path, members: list[str], least_conn: bool) -> int:
    port = free_port()
    conf = tmp / f"nginx-{port}.conf"
    servers = "".join(f"server {m};" for m in members)
    conf.write_text(f"""
worker_processes 1; daemon off; pid {tmp}/nginx-{port}.pid; error_log {tmp}/nginx-{port}.log;
worker_rlimit_nofile 30000; events {{ worker_connections 12000; }}
http {{ access_log off;
  upstream pool {{ {"least_conn;" if least_conn else ""} {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://pool; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; }} }} }}
""")
    procs.start(["nginx", "-c", str(conf), "-p", str(tmp)], port)
    return port


def haproxy(procs: Processes, tmp: Path, members: list[str], algorithm: str) -> int:
    port = free_port()
    conf = tmp / f"haproxy-{port}.cfg"
    servers = "\n".join(f"  server m{i} {m}" for i, m in enumerate(members))
    conf.write_text(f"""
global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  balance {algorithm}
  http-reuse always
{servers}
""")
    procs.start(["haproxy", "-f", str(conf), "-db"], port)
    return port


def envoy(procs: Processes, tmp: Path, members: list[str]) -> int:
    """Envoy with one worker thread (--concurrency 1), LEAST_REQUEST over the members."""
    port = free_port()
    endpoints = [
        {
            "endpoint": {
                "address": {
                    "socket_address": {
                        "address": m.split(":")[0],
                        "port_value": int(m.split(":")[1]),
                    }
                }
            }
        }
        for m in members
    ]
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "HTTP1",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "pool",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "pool"}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    config = {"static_resources": {
        "listeners": [{"name": "front", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": manager}]}]}],
        "clusters": [{"name": "pool", "type": "STATIC", "lb_policy": "LEAST_REQUEST",
                      "connect_timeout": "2s",
                      "load_assignment": {"cluster_name": "pool",
                                          "endpoints": [{"lb_endpoints": endpoints}]}}],
    }}  # fmt: skip
    path = tmp / f"envoy-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    procs.start([str(Path(sys.executable).parent / "envoy"), "-c", str(path), "--concurrency", "1",
                 "--log-level", "warn", "--base-id", str(port)], port)  # fmt: skip
    return port


def vllm_router(procs: Processes, members: list[str]) -> int:
    """vllm-router (Rust) with its power_of_two policy over the members, one runtime thread."""
    port = free_port()
    env = {**os.environ, "TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}
    procs.start([str(Path(sys.executable).parent / "vllm-router"), "--host", "127.0.0.1",
                 "--port", str(port), "--policy", "power_of_two", "--log-level", "warning",
                 "--worker-urls", *(f"http://{m}" for m in members)], port, env)  # fmt: skip
    return port


# The compiled build (`make compiled`), run beside the pure one when it is there.
COMPILED_PYTHON = ROOT / ".venv-compiled" / "bin" / "python"


def servicepool(
    procs: Processes, tmp: Path, members: list[str], strategy: str = "roundRobin",
    workers: int = 1, extra: dict[str, Any] | None = None, python: str = sys.executable,
    flags: tuple[str, ...] = (),
) -> tuple[int, int, Path]:  # fmt: skip
    port, admin = free_port(), free_port()
    pool_file = tmp / f"pool-{port}.yaml"
    write_pool(pool_file, members, strategy, extra)
    procs.start([
        python, "-m", "servicepool_proxy.cli", "--pool", str(pool_file),
        "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
        "--log-level", "WARNING", "--watch-interval", "0.2", "--workers", str(workers), *flags,
    ], port)  # fmt: skip
    time.sleep(0.3 * workers)
    return port, admin, pool_file


def write_pool(
    path: Path, members: list[str], strategy: str, extra: dict[str, Any] | None = None
) -> None:
    spec: dict[str, Any] = {
        "strategy": strategy,
        "members": [{"name": f"m{i}", "url": f"http://{m}"} for i, m in enumerate(members)],
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
        "memberHeader": True,
        **(extra or {}),
    }
    document = {"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
                "metadata": {"name": "bench"}, "spec": spec}  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(document))
    os.replace(tmp, path)


def wrk(port: int, seconds: float, connections: int = 32) -> tuple[float, int]:
    """Closed-loop requests/s and the number of requests answered."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    return (float(rate.group(1)) if rate else 0.0), (int(count.group(1)) if count else 0)


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def with_children(pids: list[int]) -> list[int]:
    """The processes and their children (nginx and HAProxy serve from forked workers)."""
    found = set(pids)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) in found:
                    found.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(found)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def bare_proxy(procs: Processes, member: str) -> int:
    """The reference Python proxy (bench/bare_proxy.py): callbacks only, no features."""
    port = free_port()
    procs.start([sys.executable, str(ROOT / "bench" / "bare_proxy.py"), str(port), member], port)
    return port


async def open_loop(
    url: str, rate: float, seconds: float, on_tick: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Send on schedule; latency counts from the scheduled time so stalls are not hidden."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    members: list[tuple[float, str]] = []
    late = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(scheduled: float) -> None:
            try:
                async with session.get(url) as response:
                    await response.read()
                    statuses[str(response.status)] += 1
                    members.append((scheduled, response.headers.get("X-ServicePool-Member", "")))
            except aiohttp.ClientError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.monotonic() - scheduled)

        tasks = []
        start = time.monotonic()
        for index in range(int(rate * seconds)):
            scheduled = start + index / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            if on_tick is not None:
                on_tick(scheduled - start)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return {
        "p50": ordered[len(ordered) // 2] * 1e3,
        "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1e3,
        "statuses": dict(statuses),
        "errors": sum(n for s, n in statuses.items() if s != "200"),
        "members": members,
        "generatorLate": late,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency figures over repeated open-loop runs: median p50/p99, all errors counted."""
    return {
        "p50": median([r["p50"] for r in runs]),
        "p99": median([r["p99"] for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "generatorLate": sum(r["generatorLate"] for r in runs),
    }


# The peers of the overhead scenario that the open-loop latency runs compare too.
LATENCY_PEERS = ("direct", "servicepool", "servicepool compiled", "nginx", "haproxy", "envoy",
                 "vllm-router")  # fmt: skip


def overhead_peers(procs: Processes, tmp: Path, members: list[str]) -> dict[str, Callable[[], int]]:
    """Every peer in front of the same two members, each balancing by least load."""
    compiled = str(COMPILED_PYTHON)
    peers: dict[str, Callable[[], int]] = {
        "direct": lambda: int(members[0].split(":")[1]),
        "servicepool": lambda: servicepool(procs, tmp, members, "leastInFlight")[0],
        "servicepool compiled": lambda: servicepool(
            procs, tmp, members, "leastInFlight", python=compiled
        )[0],
        "servicepool x2": lambda: servicepool(procs, tmp, members, "leastInFlight", workers=2)[0],
        "servicepool compiled x2": lambda: servicepool(
            procs, tmp, members, "leastInFlight", workers=2, python=compiled
        )[0],
        "nginx": lambda: nginx_proxy(procs, tmp, members, least_conn=True),
        "haproxy": lambda: haproxy(procs, tmp, members, "leastconn"),
        "envoy": lambda: envoy(procs, tmp, members),
        "vllm-router": lambda: vllm_router(procs, members),
        "bare Python proxy": lambda: bare_proxy(procs, members[0]),
    }
    if not COMPILED_PYTHON.exists():
        del peers["servicepool compiled"], peers["servicepool compiled x2"]
    return peers


def scenario_overhead(procs: Processes, tmp: Path, quick: bool) -> dict[str, Any]:
    members = [nginx_member(procs, tmp), nginx_member(procs, tmp)]
    peers: dict[str, int] = {}
    pids: dict[str, list[int]] = {}
    for name, start in overhead_peers(procs, tmp, members).items():
        before = len(procs.items)
        peers[name] = start()
        pids[name] = with_children([p.pid for p in procs.items[before:]])
    seconds, reps = (2, 1) if quick else (5, 3)
    rps: dict[str, list[float]] = {name: [] for name in peers}
    cpu_us: dict[str, list[float]] = {name: [] for name in peers if pids[name]}
    for _ in range(reps):
        for name, port in peers.items():  # A B A B
            used = cpu_seconds(pids[name]) if pids[name] else 0.0
            rate, count = wrk(port, seconds)
            rps[name].append(rate)
            if pids[name] and count:
                cpu_us[name].append((cpu_seconds(pids[name]) - used) / count * 1e6)
    rate, lat_seconds = 300, (3 if quick else 4)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in LATENCY_PEERS if n in peers}
    for _ in range(reps):
        for name in runs:  # A B A B
            runs[name].append(asyncio.run(
                open_loop(f"http://127.0.0.1:{peers[name]}/", rate, lat_seconds)))  # fmt: skip
    latency = {name: median_run(values) for name, values in runs.items()}
    result = {"rps": {k: median(v) for k, v in rps.items()}, "rpsRuns": rps,
              "cpuMicrosecondsPerRequest": {k: median(v) for k, v in cpu_us.items()},
              "cpuRuns": cpu_us, "load": os.getloadavg(),
              "latency": {k: {x: v[x] for x in ("p50", "p99", "errors", "generatorLate")}
                          for k, v in latency.items()}}  # fmt: skip
    result["ratioVsNginx"] = result["rps"]["servicepool"] / max(1.0, result["rps"]["nginx"])
    result["bareRatioVsNginx"] = result["rps"]["bare Python proxy"] / max(
        1.0, result["rps"]["nginx"]
    )
    result["scaling2"] = result["rps"]["servicepool x2"] / max(1.0, result["rps"]["servicepool"])
    result["addedP50Ms"] = latency["servicepool"]["p50"] - latency["direct"]["p50"]
    result["addedP99Ms"] = latency["servicepool"]["p99"] - latency["direct"]["p99"]
    result["addedP50MsByPeer"] = {
        name: latency[name]["p50"] - latency["direct"]["p50"] for name in runs if name != "direct"
    }
    rps = result["rps"]
    if "servicepool compiled x2" in rps:
        result["scaling2Compiled"] = rps["servicepool compiled x2"] / max(
            1.0, rps["servicepool compiled"]
        )
    cpu = result["cpuMicrosecondsPerRequest"]
    result["cpuRatio"] = {f"{mine} / {peer}": cpu.get(mine, 0.0) / max(1e-9, cpu.get(peer, 0.0))
                          for mine in ("servicepool", "servicepool compiled") if mine in cpu
                          for peer in ("envoy", "vllm-router", "nginx", "haproxy")}  # fmt: skip
    return result


def rss_mib(pids: list[int]) -> float:
    """Resident memory of the processes, in MiB."""
    total = 0
    for pid in pids:
        found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        total += int(found.group(1)) if found else 0
    return total / 1024


async def hold_idle_connections(port: int, count: int) -> list[asyncio.StreamWriter]:
    """`count` keep-alive connections, each after one answered request, left open."""
    writers: list[asyncio.StreamWriter] = []
    opening = asyncio.Semaphore(256)

    async def one() -> None:
        async with opening:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return writers


def workers_cpu_line(overhead: dict[str, Any]) -> str:
    """Whether two workers cost more CPU per request than one (they share nothing), and why
    their throughput stays under 2x here."""
    cpu = overhead.get("cpuMicrosecondsPerRequest", {})
    names = ("servicepool", "servicepool compiled")
    pairs = [(name, cpu[name], cpu[f"{name} x2"]) for name in names
             if name in cpu and f"{name} x2" in cpu]  # fmt: skip
    if not pairs:
        return ""
    shown = "; ".join(f"{name} {one:.1f} µs with one worker, {two:.1f} with two"
                      for name, one, two in pairs)  # fmt: skip
    return (
        f"CPU per request: {shown}, so the workers scale shared-nothing. Throughput stays "
        "under 2x because wrk and both nginx members run on the same 2 cores; on this "
        "machine the load generator cannot be pinned apart from the proxy."
    )


def scenario_idle(procs: Processes, tmp: Path, quick: bool) -> dict[str, Any]:
    """RSS of each proxy before and while it holds many idle keep-alive client connections."""
    members = [nginx_member(procs, tmp), nginx_member(procs, tmp)]
    count = 2000 if quick else 10000
    long_idle = ("--idle-timeout", "120")  # nginx keeps idle clients 75 s, Envoy an hour
    starters: dict[str, Callable[[], int]] = {
        "servicepool": lambda: servicepool(procs, tmp, members, "leastInFlight",
                                           flags=long_idle)[0],
        "nginx": lambda: nginx_proxy(procs, tmp, members, least_conn=True),
        "envoy": lambda: envoy(procs, tmp, members),
    }  # fmt: skip
    if COMPILED_PYTHON.exists():
        starters["servicepool compiled"] = lambda: servicepool(
            procs, tmp, members, "leastInFlight", python=str(COMPILED_PYTHON), flags=long_idle
        )[0]
    out: dict[str, Any] = {"connections": count}
    for name, start in starters.items():
        before = len(procs.items)
        port = start()
        pids = with_children([p.pid for p in procs.items[before:]])
        wrk(port, 1)  # warm: upstream connections, lazy allocations
        idle = rss_mib(pids)

        async def hold(port: int = port, pids: list[int] = pids) -> float:
            writers = await hold_idle_connections(port, count)
            await asyncio.sleep(1)
            held = rss_mib(pids)
            for writer in writers:
                writer.close()
            return held

        held = asyncio.run(hold())
        out[name] = {"rssIdleMiB": round(idle, 1), "rssHoldingMiB": round(held, 1),
                     "kibPerConnection": round((held - idle) * 1024 / count, 2)}  # fmt: skip
    return out


async def stream_once(url: str) -> tuple[float, float]:
    start = time.monotonic()
    first = 0.0
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        async for _ in response.content.iter_any():
            if not first:
                first = time.monotonic() - start
    return first * 1e3, (time.monotonic() - start) * 1e3


def scenario_streaming(procs: Processes, tmp: Path, quick: bool) -> dict[str, Any]:
    member = start_member_process("sse")
    procs.items.append(member.process)
    address = member.url.removeprefix("http://")
    peers = {
        "direct": member.port,
        "servicepool": servicepool(procs, tmp, [address])[0],
        "nginx": nginx_proxy(procs, tmp, [address], least_conn=False),
        "haproxy": haproxy(procs, tmp, [address], "roundrobin"),
    }
    runs = 2 if quick else 5
    out: dict[str, Any] = {}
    path = "/stream?chunks=200&interval=0.005"
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in peers}
    for _ in range(runs):
        for name, port in peers.items():
            samples[name].append(asyncio.run(stream_once(f"http://127.0.0.1:{port}{path}")))
    for name, values in samples.items():
        out[name] = {"firstChunkMs": median([v[0] for v in values]),
                     "totalMs": median([v[1] for v in values])}  # fmt: skip
    return out


def member_counts(members: list[Any]) -> dict[str, int]:
    counts = {}
    for member in members:
        with aiohttp_get(f"{member.url}/control/stats") as stats:
            counts[member.name] = stats["requests"]
    return counts


class aiohttp_get:
    def __init__(self, url: str) -> None:
        import urllib.request

        with urllib.request.urlopen(url, timeout=5) as response:
            self.data = json.loads(response.read())

    def __enter__(self) -> dict[str, Any]:
        return self.data

    def __exit__(self, *_: object) -> None:
        return None


def scenario_heterogeneous(procs: Processes, tmp: Path, quick: bool) -> dict[str, Any]:
    members = [start_member_process(n, delay=d)
               for n, d in (("fast-1", 0.01), ("fast-2", 0.01), ("slow", 0.04))]  # fmt: skip
    procs.items.extend(m.process for m in members)
    addresses = [m.url.removeprefix("http://") for m in members]
    rate, seconds = 150, (3 if quick else 5)
    peers: dict[str, int] = {}
    for strategy in ("roundRobin", "leastInFlight", "powerOfTwoChoices", "latency"):
        peers[f"servicepool {strategy}"] = servicepool(procs, tmp, addresses, strategy)[0]
    peers["nginx round-robin"] = nginx_proxy(procs, tmp, addresses, least_conn=False)
    peers["nginx least_conn"] = nginx_proxy(procs, tmp, addresses, least_conn=True)
    peers["haproxy leastconn"] = haproxy(procs, tmp, addresses, "leastconn")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in peers}
    splits: dict[str, Counter[str]] = {name: Counter() for name in peers}
    for _ in range(1 if quick else 3):
        for name, port in peers.items():  # A B A B
            before = member_counts(members)
            runs[name].append(asyncio.run(open_loop(f"http://127.0.0.1:{port}/", rate, seconds)))
            after = member_counts(members)
            splits[name].update({k: after[k] - before[k] for k in after})
    out = {}
    for name, values in runs.items():
        result = median_run(values)
        out[name] = {"p50": result["p50"], "p99": result["p99"], "errors": result["errors"],
                     "split": dict(splits[name]),
                     "p99Runs": [v["p99"] for v in values]}  # fmt: skip
    return out


def scenario_failover(procs: Processes, tmp: Path, quick: bool) -> dict[str, Any]:
    members = [start_member_process(n) for n in ("a", "b", "c")]
    procs.items.extend(m.process for m in members)
    addresses = [m.url.removeprefix("http://") for m in members]
    extra = {"outlierDetection": {"consecutiveFailures": 3, "baseEjectionSeconds": 2},
             "healthCheck": {"intervalSeconds": 0.5, "timeoutSeconds": 0.25}}  # fmt: skip
    port, admin, _ = servicepool(procs, tmp, addresses, "leastInFlight", extra=extra)
    events: dict[str, float] = {}
    victim = members[1]
    states: list[tuple[float, str]] = []
    stop = threading.Event()
    origin = time.monotonic()

    def watch_state() -> None:  # the proxy's own view of the victim, every 20 ms
        while not stop.is_set():
            with aiohttp_get(f"http://127.0.0.1:{admin}/status") as status:
                state = next(m["state"] for m in status["members"] if m["name"] == "m1")
            states.append((time.monotonic() - origin, state))
            time.sleep(0.02)

    def restart() -> None:
        procs.items.append(start_member_process("b", port=victim.port).process)
        events["restarted"] = time.monotonic() - origin

    def tick(elapsed: float) -> None:
        if elapsed >= 2 and "killed" not in events:
            victim.kill()
            events["killed"] = time.monotonic() - origin
        if elapsed >= 5 and "restart" not in events:
            events["restart"] = elapsed
            threading.Thread(target=restart, daemon=True).start()

    watcher = threading.Thread(target=watch_state, daemon=True)
    watcher.start()
    result = asyncio.run(open_loop(f"http://127.0.0.1:{port}/", 200, 9, tick))
    stop.set()
    watcher.join(5)
    out_at = next((t for t, state in states if t > events["killed"] and state != "Healthy"),
                  float("nan"))  # fmt: skip
    served = [t - origin for t, m in result["members"] if m == "m1"]
    back_at = min((t for t in served if t > events.get("restarted", 1e9)), default=float("nan"))
    return {
        "errors": result["errors"], "statuses": result["statuses"],
        "secondsUntilNoTraffic": round(out_at - events["killed"], 3),
        "secondsUntilTrafficAgain": round(back_at - events.get("restarted", float("nan")), 3),
        "p99Ms": result["p99"],
    }  # fmt: skip


def scenario_reload(procs: Processes, tmp: Path, quick: bool) -> dict[str, Any]:
    members = [start_member_process(n) for n in ("a", "b", "c", "d")]
    procs.items.extend(m.process for m in members)
    addresses = [m.url.removeprefix("http://") for m in members]
    port, _, pool_file = servicepool(procs, tmp, addresses[:3], "roundRobin")
    done: set[str] = set()

    def tick(elapsed: float) -> None:
        if elapsed >= 2 and "add" not in done:
            write_pool(pool_file, addresses, "roundRobin")
            done.add("add")
        if elapsed >= 4 and "remove" not in done:
            write_pool(pool_file, addresses[1:], "roundRobin")
            done.add("remove")

    baseline = asyncio.run(open_loop(f"http://127.0.0.1:{port}/", 200, 2))
    during = asyncio.run(open_loop(f"http://127.0.0.1:{port}/", 200, 6, tick))
    return {"errors": during["errors"], "p99BaselineMs": baseline["p99"],
            "p99DuringReloadsMs": during["p99"], "statuses": during["statuses"]}  # fmt: skip


def scenario_operator(procs: Processes, tmp: Path, quick: bool) -> dict[str, Any]:
    plane = tmp / "plane"
    kubeconfig = subprocess.run([str(ROOT / "e2e/cluster/up.sh"), str(plane)], check=True,
                                capture_output=True, text=True).stdout.split()[-1]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    try:
        subprocess.run(["kubectl", "apply", "-f", str(ROOT / "crds")], env=env, check=True,
                       capture_output=True)  # fmt: skip
        members = [start_member_process(n) for n in ("a", "b", "c")]
        procs.items.extend(m.process for m in members)
        health = free_port()
        operator = subprocess.Popen(
            [sys.executable, "-m", "servicepool_operator.cli", "--all-namespaces",
             "--liveness", f"http://127.0.0.1:{health}/healthz", "--log-format", "plain"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.items.append(operator)
        count = 40 if quick else 200
        docs = [{"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
                 "metadata": {"name": f"pool-{i}", "namespace": "default"},
                 "spec": {"members": [{"name": m.name, "url": m.url} for m in members],
                          "healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 1}}}
                for i in range(count)]  # fmt: skip
        started = time.monotonic()
        subprocess.run(["kubectl", "apply", "-f", "-"], input=yaml.safe_dump_all(docs),
                       env=env, check=True, capture_output=True, text=True)  # fmt: skip

        def ready() -> int:
            out = subprocess.run(["kubectl", "get", "sp", "-o", "json"], env=env,
                                 capture_output=True, text=True).stdout  # fmt: skip
            items = json.loads(out)["items"] if out else []
            return sum(1 for i in items if (i.get("status") or {}).get("ready") == "3/3")

        while ready() < count and time.monotonic() - started < 300:
            time.sleep(1)
        all_ready = time.monotonic() - started
        rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{operator.pid}/status")
                            .read_text()).group(1)) / 1024  # fmt: skip
        window = 10 if quick else 60
        watch = subprocess.Popen(
            ["kubectl", "get", "sp", "-w", "--output-watch-events", "-o", "name"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        time.sleep(window)
        watch.terminate()
        lines = (watch.communicate(timeout=10)[0] or "").splitlines()
        modified = sum(1 for line in lines if line.startswith("MODIFIED"))
        return {"pools": count, "secondsUntilAllReady": round(all_ready, 1),
                "operatorRssMiB": round(rss, 1),
                "statusWritesPerMinute": round(modified * 60 / window, 1)}  # fmt: skip
    finally:
        subprocess.run([str(ROOT / "e2e/cluster/down.sh"), str(plane)], check=False)


def cost_rows(o: dict[str, Any], met: Callable[[bool], str]) -> list[tuple[str, ...]]:
    """servicepool's CPU per request and added p50 against Envoy's and vllm-router's."""
    cpu = o.get("cpuMicrosecondsPerRequest", {})
    added = o.get("addedP50MsByPeer", {})
    rows: list[tuple[str, ...]] = []
    for build in ("servicepool", "servicepool compiled"):
        if build not in cpu:
            continue
        mine, what = cpu[build], build.replace("servicepool", "").strip() or "pure"
        for peer in ("envoy", "vllm-router"):
            theirs = cpu.get(peer, 0.0)
            rows.append((f"CPU µs/request ({what}) vs {peer}", f"{mine:.1f}",
                         f"{theirs:.1f} ({peer})", f"{mine / max(theirs, 1e-9):.2f}x",
                         f"≤ {peer}", met(mine <= theirs)))  # fmt: skip
        mine_p50, envoy_p50 = added.get(build, 9.0), added.get("envoy", 0.0)
        rows.append((f"added p50 over direct ({what}) vs envoy", f"{mine_p50:.2f} ms",
                     f"{envoy_p50:.2f} ms (envoy)", "", "≤ envoy",
                     met(mine_p50 <= envoy_p50)))  # fmt: skip
    return rows


def write_report(results: dict[str, Any], elapsed: float, quick: bool, run: str = "") -> None:
    """The report; quick and partial (--only) runs go to quick_results(), never over the
    committed full results."""
    out = quick_results() if quick or run else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(results, indent=2, default=str))
    o = results.get("overhead", {})
    h = results.get("heterogeneous", {})
    f = results.get("failover", {})
    r = results.get("reload", {})
    best_p99 = min((h.get(f"servicepool {s}", {}).get("p99", 1e9)
                    for s in ("leastInFlight", "powerOfTwoChoices")), default=0)  # fmt: skip
    nginx_lc = h.get("nginx least_conn", {}).get("p99", 0)

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    rows = [
        ("req/s, 1 KB, one process", f"{o.get('rps', {}).get('servicepool', 0):.0f}",
         f"{o.get('rps', {}).get('nginx', 0):.0f}", f"{o.get('ratioVsNginx', 0):.2f}x",
         "≥ 0.5x nginx", met(o.get("ratioVsNginx", 0) >= 0.5)),
        ("added p50 over direct at 300 req/s", f"{o.get('addedP50Ms', 0):.2f} ms", "", "",
         "≤ 0.3 ms", met(o.get("addedP50Ms", 9) <= 0.3)),
        *cost_rows(o, met),
        ("heterogeneous p99 (best of leastInFlight/P2C)", f"{best_p99:.1f} ms",
         f"{nginx_lc:.1f} ms (least_conn)", f"{best_p99 / max(nginx_lc, 1e-9):.2f}x",
         "≤ nginx least_conn (5% band: run-to-run spread)", met(best_p99 <= nginx_lc * 1.05)),
        ("GET errors on failover", str(f.get("errors")), "", "", "0", met(f.get("errors") == 0)),
        ("errors on reload", str(r.get("errors")), "", "", "0", met(r.get("errors") == 0)),
    ]  # fmt: skip
    lines = [
        f"# servicepool benchmarks ({'quick' if quick else 'full'}{run} run, {elapsed:.0f} s)",
        "",
        "2 cores, everything on 127.0.0.1; one process per proxy (nginx worker_processes 1, "
        "HAProxy nbthread 1, Envoy --concurrency 1, vllm-router with one runtime thread). "
        f"Medians over alternating repetitions. Load average at the end of the overhead "
        f"runs: {' '.join(f'{x:.1f}' for x in o.get('load', ()))}.",
        "",
        "| figure | servicepool | nginx | ratio | target | met |",
        "|---|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "## Overhead (wrk, 32 connections; open loop at 300 req/s)",
        "",
        "Every proxy sits in front of the same two nginx members and balances by least load "
        "(servicepool leastInFlight, nginx least_conn, HAProxy leastconn, Envoy LEAST_REQUEST, "
        "vllm-router power_of_two); direct and the bare Python proxy use the first member. "
        "CPU µs/request is the peer's own user + system CPU time divided by the requests "
        "wrk saw answered (from /proc, so it counts every process and thread of the peer).",
        "",
        "| peer | req/s | vs nginx | CPU µs/request | p50 ms | p99 ms | added p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    nginx_rps = max(1.0, o.get("rps", {}).get("nginx", 0.0))
    for name, value in o.get("rps", {}).items():
        lat = o.get("latency", {}).get(name, {})
        cpu = o.get("cpuMicrosecondsPerRequest", {}).get(name)
        cpu_text = "" if cpu is None else f"{cpu:.1f}"
        p50, p99 = lat.get("p50", float("nan")), lat.get("p99", float("nan"))
        added = o.get("addedP50MsByPeer", {}).get(name)
        added_text = "" if added is None else f"{added:.2f}"
        lines.append(f"| {name} | {value:.0f} | {value / nginx_rps:.2f}x | {cpu_text} | "
                     f"{p50:.2f} | {p99:.2f} | {added_text} |")  # fmt: skip
    lines += ["", "`bare Python proxy` is bench/bare_proxy.py: uvloop + llhttp callbacks, one "
              "member, no balancing, health, retries, timeouts, limits or metrics: about the "
              "ceiling for a Python proxy here. The gap between it and servicepool is "
              "servicepool's own work per request.",
              "", f"Scaling 1 → 2 workers (--workers 2): {o.get('scaling2', 0):.2f}x pure, "
              f"{o.get('scaling2Compiled', 0):.2f}x compiled. {workers_cpu_line(o)}",
              "", "## Streaming (SSE, 200 chunks 5 ms apart)", "",
              "| peer | first chunk ms | total ms |", "|---|---|---|"]  # fmt: skip
    for name, value in results.get("streaming", {}).items():
        lines.append(f"| {name} | {value['firstChunkMs']:.1f} | {value['totalMs']:.0f} |")
    lines += ["", "## Heterogeneous pool (3 members, one 4x slower; open loop 150 req/s)", "",
              "Median p50/p99 over alternating runs; the split is summed over them.", "",
              "| peer | p50 ms | p99 ms | errors | split |", "|---|---|---|---|---|"]  # fmt: skip
    for name, value in h.items():
        split = ", ".join(f"{k} {v}" for k, v in value["split"].items())
        lines.append(f"| {name} | {value['p50']:.1f} | {value['p99']:.1f} | "
                     f"{value['errors']} | {split} |")  # fmt: skip
    idle = results.get("idle", {})
    if idle:
        lines += ["", f"## Memory with {idle['connections']} idle keep-alive client connections",
                  "", "RSS of every process of the peer, after warming up and while holding "
                  "the connections (each answered one request).", "",
                  "| peer | RSS idle MiB | RSS holding MiB | KiB per connection |",
                  "|---|---|---|---|"]  # fmt: skip
        for name, value in idle.items():
            if isinstance(value, dict):
                lines.append(f"| {name} | {value['rssIdleMiB']} | {value['rssHoldingMiB']} | "
                             f"{value['kibPerConnection']} |")  # fmt: skip
    lines += ["", "## Failover, reload, operator scale", "", "```",
              json.dumps({"failover": f, "reload": r,
                          "operator": results.get("operator", "skipped")}, indent=2),
              "```"]  # fmt: skip
    capacity = RESULTS / "capacity.md"
    if capacity.exists():
        lines += ["", capacity.read_text().replace("# ", "## ", 1)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    plot(results, out)


def plot(results: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    o = results.get("overhead", {}).get("rps", {})
    if o:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(list(o), list(o.values()), color="#4a7ab5")
        ax.set_ylabel("requests/s (1 KB)")
        ax.set_title("Throughput, one process per peer")
        plt.xticks(rotation=20, ha="right")
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
    h = results.get("heterogeneous", {})
    if h:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = list(h)
        ax.bar(names, [h[n]["p99"] for n in names], color="#b5634a", label="p99")
        ax.bar(names, [h[n]["p50"] for n in names], color="#e0a080", label="p50")
        ax.set_ylabel("ms")
        ax.set_title("Heterogeneous pool: latency")
        ax.legend()
        plt.xticks(rotation=25, ha="right")
        fig.tight_layout()
        fig.savefig(out / "heterogeneous.png", dpi=110)
        plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-operator", action="store_true")
    parser.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    args = parser.parse_args()
    procs = Processes()
    started = time.monotonic()
    results: dict[str, Any] = {}
    scenarios = [("overhead", scenario_overhead), ("streaming", scenario_streaming),
                 ("heterogeneous", scenario_heterogeneous), ("failover", scenario_failover),
                 ("reload", scenario_reload), ("idle", scenario_idle)]  # fmt: skip
    if not args.skip_operator:
        scenarios.append(("operator", scenario_operator))
    if args.only:
        scenarios = [(name, run) for name, run in scenarios if name in args.only]
    try:
        with tempfile.TemporaryDirectory(prefix="servicepool-bench-") as tmp:
            for name, run in scenarios:
                print(f"== {name}", flush=True)
                results[name] = run(procs, Path(tmp), args.quick)
                print(json.dumps(results[name], default=str)[:600], flush=True)
                procs.stop_all()
                procs.items.clear()
    finally:
        procs.stop_all()
    partial = f", only {' '.join(args.only)}," if args.only else ""
    write_report(results, time.monotonic() - started, args.quick, partial)
    print(((quick_results() if args.quick or partial else RESULTS) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
