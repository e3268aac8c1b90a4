"""The Pods the operator renders pass Pod Security Admission at the `restricted` level.

The control plane here has no kubelet, but the ReplicaSet controller's Pod creation goes
through admission all the same: a refused Pod would show as a FailedCreate event and no Pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from servicepool_operator import names

from ..support import eventually
from .crd_support import enforces_pod_security, install_crd
from .test_operator import OperatorProcess, Pools, pool_body

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture
def restricted_pools(
    kubeconfig: str, kube_api: client.ApiClient, namespace: str, tmp_path: Any
) -> Iterator[Pools]:
    """The test namespace labelled to enforce `restricted`, with an operator watching it."""
    if not enforces_pod_security(kube_api):
        pytest.skip("this API server has no Pod Security Admission (older than 1.25)")
    install_crd(kube_api)
    client.CoreV1Api(kube_api).patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", ["--namespace", namespace])
    operator.start()
    yield Pools(kube_api, namespace)
    operator.stop()


def privileged_pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged"},
            "spec": {"containers": [{"name": "c", "image": "example/c:1",
                                     "securityContext": {"privileged": True}}]}}  # fmt: skip


def test_a_pool_in_a_restricted_namespace_gets_its_proxy_pods_admitted_and_becomes_ready(
    restricted_pools: Pools, member_procs, namespace: str
) -> None:
    pools, core = restricted_pools, restricted_pools.core
    with pytest.raises(ApiException) as refused:  # the namespace really enforces the level
        core.create_namespaced_pod(namespace, privileged_pod(), dry_run="All")
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body

    member = member_procs("a")
    pools.create(pool_body("secure", [{"name": "a", "url": member.url}], proxy={"replicas": 2}))
    selector = f"{names.POOL_LABEL}=secure"
    assert eventually(lambda: len(core.list_namespaced_pod(namespace, label_selector=selector)
                                  .items) == 2, 20), pools.events("FailedCreate")  # fmt: skip
    assert pools.events("FailedCreate") == []
    assert eventually(lambda: pools.condition("secure", "Ready").get("status") == "True", 20)
