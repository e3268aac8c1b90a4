"""The chart's RBAC is exactly what the operator uses: run the operator under the chart's
ServiceAccount token on a real API server, see a pool work, see forbidden verbs refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from servicepool_proxy.server import free_port
from tests.support import eventually

from .crd_support import install_crd
from .test_operator import OperatorProcess, Pools, pool_body

ROOT = Path(__file__).resolve().parents[2]
RELEASE_NAMESPACE = "servicepool-system"


def rendered_chart(values: dict) -> list[dict]:
    chart = helm.Chart.load(str(ROOT / "charts" / "servicepool"))
    rendered = chart.render(values, name="servicepool", namespace=RELEASE_NAMESPACE)
    return [d for path, text in rendered.items() if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]  # fmt: skip


def sa_kubeconfig(admin_kubeconfig: str, core: client.CoreV1Api, path: Path) -> str:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a TokenRequest token:
    since 1.24 no Secret holds one)."""
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    issued = core.create_namespaced_service_account_token("servicepool", RELEASE_NAMESPACE,
                                                          request)  # fmt: skip
    token = issued.status.token
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    cluster = admin["clusters"][0]["name"]
    admin["contexts"] = [{"name": "operator", "context": {"cluster": cluster, "user": "operator"}}]
    admin["current-context"] = "operator"
    path.write_text(yaml.safe_dump(admin))
    return str(path)


def served(kube_api: client.ApiClient, group: str, version: str) -> bool:
    """Whether the API server serves this group version."""
    groups = client.ApisApi(kube_api).get_api_versions().groups
    return any(v.group_version == f"{group}/{version}" for g in groups for v in g.versions)


@pytest.fixture(scope="module")
def chart_installed(kubeconfig: str, kube_api: client.ApiClient) -> list[dict]:
    install_crd(kube_api)
    core = client.CoreV1Api(kube_api)
    try:
        core.create_namespace({"metadata": {"name": RELEASE_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    documents = [d for d in rendered_chart({}) if d["kind"] != "Deployment"]  # no kubelet here
    # Rendered offline (no discovery), the chart's PodDisruptionBudget is policy/v1; helm on a
    # server without it (1.20) renders policy/v1beta1, as the template's ternary says.
    if not served(kube_api, "policy", "v1"):
        for document in documents:
            if document["kind"] == "PodDisruptionBudget":
                document["apiVersion"] = "policy/v1beta1"
    subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-"],
        input=yaml.safe_dump_all(documents), check=True, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    return rendered_chart({})


def test_operator_works_under_the_charts_service_account(
    chart_installed: list[dict], kubeconfig: str, kube_api: client.ApiClient, namespace: str,
    member_procs, tmp_path: Path,
) -> None:  # fmt: skip
    core = client.CoreV1Api(kube_api)
    limited = sa_kubeconfig(kubeconfig, core, tmp_path / "operator.kubeconfig")
    (deployment,) = [d for d in chart_installed if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # The test picks the ports: a fixed one may be taken on a shared machine.
    args = [a for a in args if not a.startswith(("--liveness", "--metrics"))]
    args.append(f"--metrics=127.0.0.1:{free_port()}")
    operator = OperatorProcess(limited, tmp_path / "operator.log", extra=args)
    operator.start()
    try:
        a = member_procs("a")
        pools = Pools(kube_api, namespace)
        access = {"allowedNamespaces": [namespace]}
        pools.create(pool_body("rbac", [{"name": "a", "url": a.url}], access=access))
        assert eventually(lambda: pools.status("rbac").get("ready") == "1/1", 20), operator.log()
        for read in (
            lambda: pools.core.read_namespaced_config_map("rbac-proxy", namespace),
            lambda: pools.apps.read_namespaced_deployment("rbac-proxy", namespace),
            lambda: pools.core.read_namespaced_service("rbac", namespace),
            lambda: client.NetworkingV1Api(kube_api).read_namespaced_network_policy(
                "rbac-proxy", namespace),
            lambda: client.RbacAuthorizationV1Api(kube_api).read_namespaced_role(
                "rbac-proxy", namespace),
        ):  # fmt: skip
            assert read().metadata.owner_references
        assert eventually(lambda: pools.events("MemberHealthy"), 10)
        assert "Forbidden" not in operator.log() and "403" not in operator.log()
    finally:
        operator.stop()

    # What the chart does not grant is really refused.
    as_operator = config.new_client_from_config(config_file=limited)
    with pytest.raises(ApiException) as secrets:
        client.CoreV1Api(as_operator).list_namespaced_secret(namespace)
    assert secrets.value.status == 403
    with pytest.raises(ApiException) as delete:
        client.AppsV1Api(as_operator).delete_namespaced_deployment("rbac-proxy", namespace)
    assert delete.value.status == 403
    with pytest.raises(ApiException) as nodes:
        client.CoreV1Api(as_operator).list_node()
    assert nodes.value.status == 403
