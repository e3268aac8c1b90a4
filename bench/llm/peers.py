"""The routers under test, started one at a time in front of the same simulated members.

The servicepool strategies are data (SERVICEPOOL_STRATEGIES): a strategy the installed proxy
does not know, or whose pool file does not validate, is skipped with the reason in the report.
The peer routers from PyPI (vllm-router, sglang-router, smg) run from their own venvs
(bench/llm/peer_install.py) with the flags of bench/llm/routers.py (reasons: PEERS.md).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.llm import peer_install, routers  # noqa: E402
from servicepool_proxy.server import free_port  # noqa: E402
from tests.support import wait_for_port as wait_for_local_port  # noqa: E402

# servicepool's strategies, and whether each reads the members' capacity signal (the fleet's
# `capacity` block: each engine's own Prometheus page, as one configures it for that engine).
SERVICEPOOL_STRATEGIES: dict[str, bool] = {
    "roundRobin": False,
    "leastInFlight": False,
    "capacity": True,
    "cacheAware": True,
    "adaptive": True,
}
# Policies that claim to send a prompt prefix where it was sent before: bench/llm/probe.py
# checks that they do before a run of theirs counts.
PREFIX_POLICIES = {"cacheAware", "cache_aware", "prefix_hash"}
IDEAL = "ideal spread"


@dataclass
class Peer:
    name: str
    kind: str  # servicepool | vllm-router | sglang-router | smg | nginx | ideal
    option: str  # strategy, policy or nginx balancing method
    replicas: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def follows_prefixes(self) -> bool:
        return self.option in PREFIX_POLICIES


def all_peers(capacity: dict[str, Any]) -> list[Peer]:
    """Every peer, servicepool's strategies reading `capacity` where they use one."""

    def extra(strategy: str) -> dict[str, Any]:
        return {"capacity": capacity} if SERVICEPOOL_STRATEGIES[strategy] else {}

    peers = [
        Peer(f"{kind} {policy}", kind, policy)
        for kind, spec in routers.ROUTERS.items()
        for policy in spec.policies
    ]
    peers.append(Peer("nginx least_conn", "nginx", "least_conn"))
    # Not a router: the client sends each prefix family to its member of the ideal spread
    # (bench/llm/oracle.py), to measure what the engines reuse under it.
    peers.append(Peer(IDEAL, "ideal", "spread"))
    peers += [
        Peer(f"servicepool {s}", "servicepool", s, 1, extra(s)) for s in SERVICEPOOL_STRATEGIES
    ]
    peers.append(
        Peer("servicepool cacheAware x2", "servicepool", "cacheAware", 2, extra("cacheAware"))
    )
    return peers


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    """Block until the process listens on 127.0.0.1:port."""
    wait_for_local_port("127.0.0.1", port, seconds, process)


def pool_document(peer: Peer, members: list[str]) -> dict[str, Any]:
    spec = {
        "strategy": peer.option,
        "members": [{"name": f"m{i}", "url": m} for i, m in enumerate(members)],
        "healthCheck": {"path": "/health", "intervalSeconds": 2, "timeoutSeconds": 1},
        "memberHeader": True,
        "proxy": {"replicas": peer.replicas},  # as the operator would render them
        **peer.extra,
    }
    return {
        "apiVersion": "servicepool.dev/v1alpha1",
        "kind": "ServicePool",
        "metadata": {"name": "llm"},
        "spec": spec,
    }


def unavailable(peer: Peer, members: list[str]) -> str | None:
    """Why this peer cannot run here, or None."""
    if peer.kind in routers.ROUTERS:
        return peer_install.missing(peer.kind)
    if peer.kind == "nginx" and not shutil.which("nginx"):
        return "nginx is not installed"
    if peer.kind == "servicepool":
        from servicepool_api.loader import PoolFileError, parse_pool_text
        from servicepool_api.spec import Strategy

        if peer.option not in {s.value for s in Strategy}:
            return f"the installed servicepool has no strategy {peer.option!r} yet"
        try:
            parse_pool_text(yaml.safe_dump(pool_document(peer, members)))
        except PoolFileError as exc:
            return f"pool file rejected: {exc}"
    return None


class Running:
    """The processes of one started peer."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.port = 0
        self.metrics_urls: list[str] = []  # the peer's own Prometheus pages

    def spawn(self, argv: list[str], port: int) -> None:
        self.logs.append(self.tmp / f"{Path(argv[0]).name}-{port}.log")
        log = open(self.logs[-1], "wb")  # noqa: SIM115
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        wait_for_port(port, process)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of every log of this peer (for a start that failed)."""
        tails = []
        for path in self.logs:
            if path.exists():
                tails += path.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(tails)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def nginx(running: Running, upstreams: list[str], method: str) -> int:
    port = free_port()
    tmp = running.tmp
    conf = tmp / f"nginx-{port}.conf"
    servers = "".join(f"server {u.removeprefix('http://')};" for u in upstreams)
    balance = "least_conn;" if method == "least_conn" else ""
    conf.write_text(f"""
worker_processes 1; daemon off; pid {tmp}/nginx-{port}.pid; error_log {tmp}/nginx-{port}.log;
events {{ worker_connections 4096; }}
http {{ access_log off; client_max_body_size 16m; client_body_buffer_size 1m;
  upstream pool {{ {balance} {servers} keepalive 256; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering on; proxy_read_timeout 300s; }} }} }}
""")
    running.spawn(["nginx", "-c", str(conf), "-p", str(tmp)], port)
    return port


def servicepool(running: Running, peer: Peer, members: list[str]) -> int:
    pool_file = running.tmp / f"pool-{peer.option}.yaml"
    pool_file.write_text(yaml.safe_dump(pool_document(peer, members)))
    ports = []
    for _ in range(peer.replicas):
        port, admin = free_port(), free_port()
        running.spawn(
            [
                sys.executable,
                "-m",
                "servicepool_proxy.cli",
                "--pool",
                str(pool_file),
                "--listen",
                f"127.0.0.1:{port}",
                "--admin",
                f"127.0.0.1:{admin}",
                "--log-level",
                "WARNING",
                "--watch-interval",
                "5",
            ],
            port,
        )
        ports.append(port)
        running.metrics_urls.append(f"http://127.0.0.1:{admin}/metrics")
    if peer.replicas == 1:
        return ports[0]
    return nginx(running, [f"127.0.0.1:{p}" for p in ports], "round_robin")


def router(running: Running, peer: Peer, members: list[str]) -> int:
    """A peer router from PyPI (bench/llm/routers.py) with its Prometheus page."""
    port, metrics_port = free_port(), free_port()
    running.spawn(routers.argv(peer.kind, peer.option, port, metrics_port, members), port)
    running.metrics_urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
    return port


def start(peer: Peer, members: list[str], tmp: Path) -> Running:
    """Start the peer and wait until a request through it reaches the members."""
    running = Running(tmp)
    try:
        if peer.kind == "servicepool":
            running.port = servicepool(running, peer, members)
        elif peer.kind in routers.ROUTERS:
            running.port = router(running, peer, members)
        else:
            running.port = nginx(running, members, peer.option)
        wait_until_routing(running.port, 4 * peer.replicas)
    except RuntimeError as exc:
        running.stop()
        raise RuntimeError(f"{exc}; log: {running.log_tail()}") from None
    return running


def wait_until_routing(port: int, successes: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    ok = 0
    while ok < successes:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                ok += r.status == 200
                continue
        except OSError:
            ok = 0
        if time.monotonic() > deadline:
            raise RuntimeError(f"no routing through 127.0.0.1:{port} after {seconds}s")
        time.sleep(0.1)
