"""Chaos: the API server goes away and comes back, and a member dies, all under load.

Runs on a control plane of its own (the API server is restarted), so it needs the local
harness; with an external KUBECONFIG it is skipped.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.support import eventually

from .crd_support import install_crd
from .kube import CLUSTER_SCRIPTS, start_cluster, stop_cluster
from .test_operator import OperatorProcess, Pools, pool_body, start_proxy_like_deployment

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KUBECONFIG")), reason="restarts the API server of its own plane"
)


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    plane = tmp_path / "plane"
    kubeconfig = start_cluster(plane)
    yield plane, kubeconfig
    stop_cluster(plane)


class Load:
    """Steady GETs through the proxy from a few threads, counting outcomes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.outcomes: Counter[str] = Counter()
        self.members: Counter[str] = Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/x", timeout=10) as r:
                    r.read()
                    self.outcomes[str(r.status)] += 1
                    self.members[r.headers["X-ServicePool-Member"]] += 1
            except urllib.error.HTTPError as exc:
                self.outcomes[str(exc.code)] += 1
            except OSError as exc:
                self.outcomes[type(exc).__name__] += 1
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def test_api_server_restart_and_member_kill_under_load_lose_nothing(
    own_plane: tuple[Path, str], member_procs, tmp_path: Path
) -> None:
    plane, kubeconfig = own_plane
    api = config.new_client_from_config(config_file=kubeconfig)
    install_crd(api)
    namespace = "chaos"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log")
    operator.start()
    pools = Pools(api, namespace)
    members = [member_procs(name) for name in ("a", "b", "c")]
    pools.create(pool_body("chaos", [{"name": m.name, "url": m.url} for m in members],
                           strategy="leastInFlight"))  # fmt: skip
    try:
        # The wait includes the operator's start, which a busy machine slows down.
        assert eventually(lambda: pools.status("chaos").get("ready") == "3/3", 45)
        proxy, port = start_proxy_like_deployment(pools, "chaos", kubeconfig)
        try:
            with Load(port) as load:
                time.sleep(1)
                # The API server goes away for 5 s; meanwhile member b dies.
                subprocess.run([str(CLUSTER_SCRIPTS / "restart.sh"), str(plane),
                                "kube-apiserver", "5"], check=True, timeout=60)  # fmt: skip
                members[1].kill()
                served_before = sum(load.outcomes.values())
                time.sleep(1)
                assert sum(load.outcomes.values()) > served_before  # proxy kept serving
                # The API server is back: the operator catches up with what happened.
                assert eventually(
                    lambda: pools.member_states("chaos").get("b") == "Unhealthy", 40, step=0.5
                ), operator.log()[-3000:]
                assert eventually(lambda: pools.routed("chaos") == ["a", "c"], 10)
                pools.patch("chaos", {"spec": {"strategy": "powerOfTwoChoices"}})
                assert eventually(lambda: pools.status("chaos").get("observedGeneration") == 2, 20)
                time.sleep(1)
            assert set(load.outcomes) == {"200"}, load.outcomes  # no GET was lost
            assert sum(load.outcomes.values()) > 200
            assert load.members["a"] and load.members["c"]
        finally:
            proxy.terminate()
            proxy.wait(10)
        deployments = pools.apps.list_namespaced_deployment(namespace).items
        assert [d.metadata.name for d in deployments] == ["chaos-proxy"]  # nothing duplicated
    finally:
        operator.stop()
