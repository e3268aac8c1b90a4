"""The generated CRD on a real API server: defaults, rejections, printer columns."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from servicepool_api.spec import PoolSpec

from .crd_support import install_crd

GROUP, VERSION, PLURAL = "servicepool.dev", "v1alpha1", "servicepools"


def body(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ServicePool",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def test_server_fills_defaults_the_model_accepts(kube_api: client.ApiClient, namespace: str):
    install_crd(kube_api)
    custom = client.CustomObjectsApi(kube_api)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        body("d", members=[{"name": "a", "url": "http://10.0.0.1:80"}],
             capacity={"source": "metrics"}),
    )  # fmt: skip
    spec = created["spec"]
    assert spec["strategy"] == "roundRobin"
    assert spec["healthCheck"]["intervalSeconds"] == 5
    assert spec["members"][0]["weight"] == 1
    assert spec["proxy"]["replicas"] == 1
    assert spec["capacity"]["intervalSeconds"] == 1
    assert spec["capacity"]["metrics"]["queued"] == "vllm:num_requests_waiting"
    assert PoolSpec.model_validate(spec).capacity is not None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"members": [{"name": "a", "url": "http://x:1", "weight": 0}]}, "spec.members.weight"),
        ({"strategy": "bogus"}, "spec.strategy"),
        ({"members": "a"}, "spec.members"),
        ({"proxy": {"port": 70000}}, "spec.proxy.port"),
        ({"healthCheck": {"intervalSeconds": 0}}, "spec.healthCheck.intervalSeconds"),
    ],
)
def test_structural_mistakes_are_rejected_naming_the_field(
    kube_api: client.ApiClient, namespace: str, spec: dict[str, object], field: str
):
    install_crd(kube_api)
    custom = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                               body("bad", **spec))  # fmt: skip
    assert info.value.status == 422
    assert field in info.value.body.replace("[0]", "")  # 1.20 names no index, later ones do


def test_printer_columns(kube_api: client.ApiClient, namespace: str, kubeconfig: str):
    install_crd(kube_api)
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        body("cols", strategy="leastInFlight", members=[{"name": "a", "url": "http://x:1"}]),
    )  # fmt: skip
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "cols", {
        "status": {"ready": "1/1", "proxies": "2/2", "endpoint": "http://cols.ns.svc:80",
                   "conditions": [{"type": "Ready", "status": "True",
                                   "reason": "AllMembersHealthy"}]},
    })  # fmt: skip
    table = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "sp", "-n", namespace],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.splitlines()  # fmt: skip
    assert table[0].split() == [
        "NAME", "STRATEGY", "READY", "PROXIES", "ENDPOINT", "STATUS", "AGE"
    ]  # fmt: skip
    assert table[1].split()[:6] == [
        "cols", "leastInFlight", "1/1", "2/2", "http://cols.ns.svc:80", "AllMembersHealthy",
    ]  # fmt: skip
