"""The operator at hundreds to thousands of pools, on the local control plane (no node).

    python bench/scale.py [--pools 200,500,1000] [--rest 330] [--operator-src DIR]

For each size: a fresh control plane (e2e/cluster/up.sh), the CRD, three sample members on
127.0.0.1, one operator process watching one namespace, and that many pools created at once,
each with the same three URL members. It reports the time until every pool is Ready with all
three members healthy (and how well the order of Ready follows the order of creation), the
operator's RSS and CPU (and the control plane's), then, at rest, its CPU (seconds per minute)
and the writes to pools over a window longer than any refresh period: MODIFIED events on a
watch, and the pools whose resourceVersion moved between the window's two ends.
--operator-src runs the operator from another checkout (e.g. an older commit in a
`git worktree`), for before/after figures. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.api_requests import per_pool, request_counts  # noqa: E402
from servicepool_proxy.server import free_port  # noqa: E402
from tests.integration.crd_support import install_crd  # noqa: E402
from tests.integration.kube import start_cluster, stop_cluster  # noqa: E402
from tests.support import start_member_process, wait_for_port  # noqa: E402

GROUP, VERSION, PLURAL = "servicepool.dev", "v1alpha1", "servicepools"
NAMESPACE = "scale"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pool_body(name: str, urls: list[str]) -> dict[str, Any]:
    members = [{"name": f"m{i}", "url": url} for i, url in enumerate(urls)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServicePool",
        "metadata": {"name": name},
        "spec": {"members": members},
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def is_ready(body: dict[str, Any], members: int) -> bool:
    status = body.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return conditions.get("Ready") == "True" and status.get("readyMembers") == members


class PoolWatch:
    """Watches the namespace's pools: when each first was Ready, and every write after."""

    def __init__(self, api: client.ApiClient, members: int) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.members = members
        self.ready_at: dict[str, float] = {}
        self.writes: list[tuple[float, str]] = []  # (monotonic, pool) per MODIFIED event
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PoolWatch:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._follow()
            except Exception as exc:  # the watch broke: list and watch again
                print(f"pool watch restarted: {exc!r}"[:200], file=sys.stderr)

    def _follow(self) -> None:
        version = None
        while not self.stopped.is_set():
            stream = watch.Watch().stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL,
                resource_version=version, timeout_seconds=60, allow_watch_bookmarks=False,
            )  # fmt: skip
            for event in stream:
                body, now = event["object"], time.monotonic()
                version = body["metadata"]["resourceVersion"]
                name = body["metadata"]["name"]
                if event["type"] == "MODIFIED":
                    self.writes.append((now, name))
                if name not in self.ready_at and is_ready(body, self.members):
                    self.ready_at[name] = now
                if self.stopped.is_set():
                    return

    def written_since(self, start: float) -> int:
        """MODIFIED events seen since `start` (a restarted watch may miss some)."""
        return sum(1 for at, _ in list(self.writes) if at >= start)

    def versions(self) -> dict[str, str]:
        """Every pool's resourceVersion now: any write to a pool changes it."""
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in listing["items"]}


def plane_cpu(plane: Path) -> float:
    """CPU seconds of the control plane's processes (etcd, apiserver, controller-manager)."""
    total = 0.0
    for line in (plane / "pids").read_text().splitlines():
        try:
            total += cpu_seconds(int(line.split()[1]))
        except (OSError, IndexError, ValueError):
            continue
    return total


def rank_correlation(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (no ties expected)."""

    def ranks(values: list[float]) -> list[int]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0] * len(values)
        for rank, index in enumerate(order):
            result[index] = rank
        return result

    rx, ry, n = ranks(xs), ranks(ys), len(xs)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True)) / (n * (n * n - 1))


def start_operator(kubeconfig: str, source: Path | None, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    if source is not None:
        env["PYTHONPATH"] = f"{source / 'operator'}:{source / 'api'}"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servicepool_operator.cli",
            "-n",
            NAMESPACE,
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
            "--log-format",
            "plain",
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port("127.0.0.1", port, 60, process)
    return process


def run_size(
    count: int, urls: list[str], rest: float, source: Path | None, profile: Path | None
) -> dict[str, Any]:
    """One size on a fresh control plane; returns its figures."""
    workdir = Path(tempfile.mkdtemp(prefix="servicepool-scale-"))
    kubeconfig = start_cluster(workdir / "plane")
    operator = None
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        api.configuration.connection_pool_maxsize = 32
        install_crd(api)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        operator = start_operator(kubeconfig, source, workdir / "operator.log")
        pools = PoolWatch(api, len(urls)).start()
        time.sleep(2)  # the operator's watches are up
        custom = client.CustomObjectsApi(api)
        names = [f"pool-{i:04d}" for i in range(count)]
        created: dict[str, float] = {}
        started = time.monotonic()
        operator_cpu, control_cpu = cpu_seconds(operator.pid), plane_cpu(workdir / "plane")
        requests_before = request_counts(api)
        spy = None
        if profile is not None:  # py-spy (pip install py-spy) samples the start, folded stacks
            spy = subprocess.Popen(
                ["py-spy", "record", "--nonblocking", "--gil", "--format", "raw", "-r", "50",
                 "-o", str(profile.with_suffix(f".{count}.txt")), "-p", str(operator.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, pool_body(name, urls)
            )
            created[name] = time.monotonic()

        with ThreadPoolExecutor(16) as creators:
            list(creators.map(create, names))
        all_created = time.monotonic() - started
        deadline = started + 900
        while len(pools.ready_at) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = sorted(pools.ready_at.values())
        requests_during_start = request_counts(api)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        figures: dict[str, Any] = {
            "pools": count,
            "created in s": round(all_created, 1),
            "ready": len(ready),
            "all Ready after s": round(ready[-1] - started, 1) if len(ready) == count else None,
            "half Ready after s": round(ready[len(ready) // 2] - started, 1) if ready else None,
            "order of Ready vs creation (Spearman)": round(
                rank_correlation(
                    [created[n] for n in pools.ready_at], list(pools.ready_at.values())
                ),
                3,
            )
            if len(ready) > 2
            else None,
            "operator RSS after start MiB": round(rss_mib(operator.pid), 1),
            "operator CPU during start s": round(cpu_seconds(operator.pid) - operator_cpu, 1),
            "control plane CPU during start s": round(
                plane_cpu(workdir / "plane") - control_cpu, 1
            ),
        }
        time.sleep(30)  # let the start settle (the last writes, the proxies' Pods)
        figures["API requests per pool until all Ready"] = per_pool(
            requests_before, requests_during_start, count
        )
        figures["API requests per pool in the 30 s after"] = per_pool(
            requests_during_start, request_counts(api), count
        )
        rest_start, cpu_start = time.monotonic(), cpu_seconds(operator.pid)
        versions = pools.versions()
        load_start = os.getloadavg()[0]
        time.sleep(rest)
        elapsed = time.monotonic() - rest_start
        writes = pools.written_since(rest_start)
        now = pools.versions()
        written = {name for name, version in now.items() if versions.get(name) != version}
        figures |= {
            "rest window s": round(elapsed),
            "operator CPU at rest s/min": round(
                (cpu_seconds(operator.pid) - cpu_start) / elapsed * 60, 2
            ),
            "operator RSS at rest MiB": round(rss_mib(operator.pid), 1),
            "pool writes at rest per min": round(writes / elapsed * 60, 1),
            "pools written in the rest window": len(written),
            "load average (start, end of rest)": (
                round(load_start, 2),
                round(os.getloadavg()[0], 2),
            ),
        }
        pools.stopped.set()
        return figures
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                operator.kill()
        stop_cluster(workdir / "plane")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="200,500,1000", help="sizes, comma separated")
    parser.add_argument("--rest", type=float, default=330.0, help="seconds measured at rest")
    parser.add_argument("--operator-src", type=Path, help="run the operator from this checkout")
    parser.add_argument("--profile", type=Path, help="py-spy the operator's start to FILE.N.txt")
    parser.add_argument("--out", type=Path, help="append each size's figures here (JSON lines)")
    args = parser.parse_args(argv)
    members = [start_member_process(f"member-{i}") for i in range(3)]
    try:
        urls = [member.url for member in members]
        for count in (int(n) for n in args.pools.split(",")):
            figures = run_size(count, urls, args.rest, args.operator_src, args.profile)
            figures["operator"] = str(args.operator_src or ROOT)
            print(json.dumps(figures), flush=True)
            if args.out is not None:
                with args.out.open("a") as out:
                    out.write(json.dumps(figures) + "\n")
    finally:
        for member in members:
            member.process.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
