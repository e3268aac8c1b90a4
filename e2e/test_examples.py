"""Drive servicepool only through Kubernetes: apply every example, read status and objects.

On the local control plane (no kubelet) Pods never run, so this suite plays the kubelet for
the selector example (it marks worker Pods Ready with loopback IPs where real member processes
listen); URL and Service members that do not exist here are reported as not healthy, which is
the truthful status. On kind (`e2e/kind.sh`) the same assertions hold with real Pods.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from servicepool_proxy.server import free_port
from tests.integration.crd_support import install_crd
from tests.integration.test_operator import OperatorProcess, Pools, set_pod_ready
from tests.support import eventually

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOT_SERVING = {"NoHealthyMembers", "NoMembers"}


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        input=stdin, check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip


@pytest.fixture(scope="module")
def operator(kubeconfig: str, kube_api: client.ApiClient, tmp_path_factory) -> Iterator[Any]:
    install_crd(kube_api)
    handle = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("e2e") / "operator.log")
    handle.start()
    yield handle
    handle.stop()


def pools_in(path: Path) -> list[str]:
    return [doc["metadata"]["name"] for doc in yaml.safe_load_all(path.read_text())
            if doc and doc["kind"] == "ServicePool"]  # fmt: skip


def versions(pools: Pools, name: str) -> dict[str, str]:
    """resourceVersions of a pool and everything it owns."""
    ns = pools.namespace
    return {
        "pool": pools.get(name)["metadata"]["resourceVersion"],
        "configmap": pools.core.read_namespaced_config_map(
            f"{name}-proxy", ns
        ).metadata.resource_version,
        "deployment": pools.apps.read_namespaced_deployment(
            f"{name}-proxy", ns
        ).metadata.resource_version,
        "service": pools.core.read_namespaced_service(name, ns).metadata.resource_version,
    }


@pytest.mark.parametrize(
    ("example", "members"),
    [
        ("static-pool.yaml", 3),
        ("failover-pool.yaml", 3),
        ("llm-pool.yaml", 2),
        ("llm-cache-aware-pool.yaml", 3),
    ],
)
def test_example_applies_reports_truthfully_and_reapplies_as_a_no_op(
    kubeconfig: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    example: str, members: int,
) -> None:  # fmt: skip
    pools = Pools(kube_api, namespace)
    manifest = (EXAMPLES / example).read_text()
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    (name,) = pools_in(EXAMPLES / example)
    assert eventually(lambda: pools.status(name).get("totalMembers") == members, 15), (
        pools.status(name), operator.log()[-2000:],
    )  # fmt: skip
    ready = pools.condition(name, "Ready")
    assert ready["reason"] not in {"InvalidSpec", "Conflict"}, ready
    assert pools.status(name)["observedGeneration"] == pools.get(name)["metadata"]["generation"]
    # Nothing here answers at those addresses: not serving, and honest about it.
    assert eventually(lambda: pools.condition(name, "Ready").get("reason") in NOT_SERVING, 20)
    # Let probing settle: every member past its thresholds.
    assert eventually(lambda: "Unknown" not in pools.member_states(name).values(), 30)
    time.sleep(1)
    before, pool_before = versions(pools, name), pools.get(name)
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    time.sleep(4)
    # GitOps: applying again changes nothing.
    assert versions(pools, name) == before, (pool_before, pools.get(name))


def test_selector_example_follows_worker_pods(
    kubeconfig: str, kube_api: client.ApiClient, namespace: str, operator: OperatorProcess,
    member_procs,
) -> None:  # fmt: skip
    pools = Pools(kube_api, namespace)
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(EXAMPLES / "selector-pool.yaml"))
    assert eventually(lambda: pools.condition("echo", "Ready").get("reason") == "NoMembers", 15)
    assert eventually(lambda: len(pools.core.list_namespaced_pod(
        namespace, label_selector="app=echo-worker").items) == 2, 30)  # fmt: skip
    port = 8000
    workers = pools.core.list_namespaced_pod(namespace, label_selector="app=echo-worker").items
    for index, pod in enumerate(workers):
        host = f"127.0.0.{20 + index}"
        member_procs(pod.metadata.name, host=host, port=port)
        set_pod_ready(pools.core, namespace, pod.metadata.name, host, True)
    assert eventually(lambda: pools.status("echo").get("ready") == "2/2", 15), pools.status("echo")
    assert pools.condition("echo", "Ready")["reason"] == "AllMembersHealthy"
    assert sorted(pools.routed("echo")) == sorted(p.metadata.name for p in workers)
    time.sleep(3)
    before = versions(pools, "echo")
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(EXAMPLES / "selector-pool.yaml"))
    time.sleep(4)
    assert versions(pools, "echo") == before
    assert free_port()  # the loopback addresses above were free to bind
