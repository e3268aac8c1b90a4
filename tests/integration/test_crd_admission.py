"""The CRD's validation rules on a real API server: a bad pool is refused at apply time.

Servers without CEL validation rules (v1.20) accept the same CRD and drop the rules; there
the operator reports these pools as InvalidSpec (test_operator.py).
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from .crd_support import checks_validation_rules, install_crd

GROUP, VERSION, PLURAL = "servicepool.dev", "v1alpha1", "servicepools"
URL = "http://198.18.0.9:8000"


def pool(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ServicePool",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


@pytest.fixture
def rules_enforced(kube_api: client.ApiClient) -> None:
    if not checks_validation_rules(kube_api):
        pytest.skip("this API server drops CEL validation rules (older than 1.25)")
    install_crd(kube_api)


BAD_POOLS = [
    pytest.param(
        {"members": [{"name": "a", "url": URL}, {"name": "a", "url": URL}]},
        "spec.members", "member names must be unique",
        id="duplicate-member-names",
    ),
    pytest.param(
        {"members": []}, "spec.members", "no members and no memberSelector",
        id="no-member-source",
    ),
    pytest.param(
        {"members": [{"name": "a", "url": URL, "service": {"name": "s", "port": 80}}]},
        "spec.members[0].url", "set exactly one of url or service",
        id="url-and-service",
    ),
    pytest.param(
        {"members": [{"name": "a"}]}, "spec.members[0].url", "set exactly one of url or service",
        id="neither-url-nor-service",
    ),
    pytest.param(
        {"members": [{"name": "a", "url": URL}],
         "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 2}},
        "spec.healthCheck.timeoutSeconds", "must not exceed intervalSeconds",
        id="timeout-over-interval",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "message"), BAD_POOLS)
def test_an_invalid_pool_is_refused_at_admission_naming_the_field(
    kube_api: client.ApiClient, namespace: str, rules_enforced: None,
    spec: dict[str, object], field: str, message: str,
) -> None:  # fmt: skip
    custom = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                               pool("bad", **spec))  # fmt: skip
    assert refused.value.status == 422
    assert f"{field}: " in refused.value.body and message in refused.value.body


def test_a_pool_with_only_a_member_selector_is_admitted(
    kube_api: client.ApiClient, namespace: str, rules_enforced: None
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    selector = {"matchLabels": {"app": "worker"}, "port": 8000}
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, pool("selected", memberSelector=selector)
    )
    assert created["spec"]["members"] == []


def test_an_update_that_breaks_a_rule_is_refused_and_the_pool_keeps_its_spec(
    kube_api: client.ApiClient, namespace: str, rules_enforced: None
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, pool("kept", members=[{"name": "a", "url": URL}])
    )
    twice = {"spec": {"members": [{"name": "a", "url": URL}, {"name": "a", "url": URL}]}}
    with pytest.raises(ApiException) as refused:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "kept", twice)
    assert refused.value.status == 422 and "spec.members: " in refused.value.body
    kept = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "kept")
    assert [m["name"] for m in kept["spec"]["members"]] == ["a"]


def test_kubectl_server_side_apply_of_an_invalid_pool_fails_naming_the_field(
    kubeconfig: str, namespace: str, rules_enforced: None
) -> None:
    manifest = yaml.safe_dump(pool("applied", members=[]))
    result = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-n", namespace,
         "-f", "-"],
        input=manifest, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "spec.members: " in result.stderr and "no members and no memberSelector" in result.stderr
