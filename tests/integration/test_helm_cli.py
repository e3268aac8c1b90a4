"""The chart through the real `helm` CLI (built from its module by build.sh): install,
upgrade and uninstall, all with server-side apply, beside the helm-python-sdk path of the
node tier. No kubelet here, so nothing waits for Pods."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import eventually

from .crd_support import CRD_FILE, checks_validation_rules, install_crd

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "servicepool"
RELEASE, NAMESPACE = "sp-cli", "servicepool-helm-cli"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"


@pytest.fixture(scope="module")
def helm_binary() -> str:
    """The helm CLI that build.sh builds and caches beside the current Kubernetes."""
    built = subprocess.run(
        [str(ROOT / "e2e" / "cluster" / "build.sh"), "--version", "current"],
        check=True, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    return str(Path(built.stdout.strip().splitlines()[-1]) / "helm")


def run_helm(helm: str, kubeconfig: str, *args: str) -> str:
    result = subprocess.run(
        [helm, "--kubeconfig", kubeconfig, "--namespace", NAMESPACE, *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def operator_deployment(apps: client.AppsV1Api) -> client.V1Deployment | None:
    found = apps.list_namespaced_deployment(NAMESPACE, label_selector=SELECTOR).items
    return found[0] if found else None


def test_the_helm_cli_installs_upgrades_and_uninstalls_the_chart_with_server_side_apply(
    helm_binary: str, kubeconfig: str, kube_api: client.ApiClient
) -> None:
    apps = client.AppsV1Api(kube_api)
    image = ["--set", "image.repository=example/servicepool", "--set", "image.tag=v1"]
    crds: list[str] = []
    if not checks_validation_rules(kube_api):
        # Servers before 1.25 refuse to server-side apply a CRD with CEL rules ("field not
        # declared in schema"): the CRD goes in first with a plain create, which drops them,
        # and Helm is told to skip it (docs/operator.md, "Supported Kubernetes").
        install_crd(kube_api)
        crds = ["--skip-crds"]
    run_helm(helm_binary, kubeconfig, "install", RELEASE, str(CHART), "--create-namespace",
             "--server-side=true", *crds, *image)  # fmt: skip
    deployment = operator_deployment(apps)
    assert deployment is not None
    assert deployment.spec.template.spec.containers[0].image == "example/servicepool:v1"
    applied = {(f.manager, f.operation) for f in deployment.metadata.managed_fields}
    assert ("helm", "Apply") in applied, applied  # server-side apply, field manager helm
    crd = client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(
        "servicepools.servicepool.dev"
    )
    assert crd.spec.names.kind == "ServicePool" and CRD_FILE.exists()

    run_helm(helm_binary, kubeconfig, "upgrade", RELEASE, str(CHART), "--server-side=true",
             *image, "--set", "logFormat=json")  # fmt: skip
    upgraded = operator_deployment(apps)
    assert upgraded is not None and "--log-format=json" in upgraded.spec.template.spec.containers[
        0].args  # fmt: skip
    assert "deployed" in run_helm(helm_binary, kubeconfig, "status", RELEASE)

    run_helm(helm_binary, kubeconfig, "uninstall", RELEASE)
    assert eventually(lambda: operator_deployment(apps) is None, 30)
    with pytest.raises(ApiException) as missing:
        client.CoreV1Api(kube_api).read_namespaced_service_account(RELEASE, NAMESPACE)
    assert missing.value.status == 404
    # Helm never deletes a CRD it installed from crds/: the pools outlive the release.
    client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(
        "servicepools.servicepool.dev"
    )
