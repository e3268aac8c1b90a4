"""The node tier's cluster, release and load: a real node, a Helm release, steady traffic.

`e2e/cluster/up.sh --node` starts a single-node Kubernetes with a kubelet, containerd and
kube-proxy, with the project image imported (see e2e/README.md). With $KUBECONFIG set, that
cluster is used instead, and $SERVICEPOOL_IMAGE names an image its nodes already have.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import helm_python as helm
import pytest
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPTS = ROOT / "e2e" / "cluster"
CHART = ROOT / "charts" / "servicepool"
RELEASE = "servicepool"
OPERATOR_NAMESPACE = "servicepool-system"

# Figures the tests measured, printed at the end of the run (and kept in the closing notes).
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("node tier figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@dataclass
class Node:
    """A cluster with a real node, and the image its Pods run."""

    kubeconfig: str
    image: str
    api: client.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(config_file=self.kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.extensions = client.ApiextensionsV1Api(self.api)

    @property
    def repository(self) -> str:
        return self.image.rpartition(":")[0]

    @property
    def tag(self) -> str:
        return self.image.rpartition(":")[2]

    def helm(self) -> helm.Config:
        return helm.Config(kubeconfig_path=self.kubeconfig, namespace=OPERATOR_NAMESPACE)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    external = os.environ.get("KUBECONFIG")
    if external:
        yield Node(external, os.environ.get("SERVICEPOOL_IMAGE", "localhost/servicepool:0.1.0"))
        return
    workdir = tmp_path_factory.mktemp("node") / "cluster"
    result = subprocess.run(
        [str(CLUSTER_SCRIPTS / "up.sh"), "--node", str(workdir)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(
            f"up.sh --node failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    kubeconfig = result.stdout.strip().splitlines()[-1]
    image = (workdir / "image").read_text().strip()
    try:
        yield Node(kubeconfig, image)
    finally:
        subprocess.run([str(CLUSTER_SCRIPTS / "down.sh"), str(workdir)], check=False, timeout=180)


@dataclass
class Outcome:
    at: float  # monotonic
    status: int  # 0: no HTTP answer at all
    member: str
    error: str = ""
    wall: float = field(default_factory=time.time)


class SteadyLoad:
    """GETs through one address from a few threads, a new connection each, all recorded."""

    def __init__(self, host: str, port: int, threads: int = 2, pause: float = 0.01) -> None:
        self.host, self.port, self.pause = host, port, pause
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _one(self) -> Outcome:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request("GET", "/load")
            response = connection.getresponse()
            response.read()
            member = response.headers.get("X-ServicePool-Member", "")
            return Outcome(time.monotonic(), response.status, member)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(time.monotonic(), 0, "", f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.outcomes.append(self._one())
            time.sleep(self.pause)

    def start(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def between(self, start: float, end: float | None = None) -> list[Outcome]:
        end = time.monotonic() if end is None else end
        return [o for o in list(self.outcomes) if start <= o.at <= end]

    def failures(self, start: float, end: float | None = None) -> list[Outcome]:
        return [o for o in self.between(start, end) if o.status != 200]

    def first_answer_from(self, member: str, after: float) -> float | None:
        for outcome in list(self.outcomes):
            if outcome.at >= after and outcome.member == member:
                return outcome.at
        return None

    def members_since(self, start: float) -> set[str]:
        return {o.member for o in self.between(start) if o.status == 200}
