"""The Helm chart renders, lints, ships the same CRD, and the wheel carries both commands."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "servicepool"


def render(values: dict | None = None, namespace: str = "servicepool-system") -> list[dict]:
    rendered = helm.Chart.load(str(CHART)).render(
        values or {}, name="servicepool", namespace=namespace, is_install=True
    )
    documents = []
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            documents += [d for d in yaml.safe_load_all(text) if d]
    return documents


def by_kind(documents: list[dict], kind: str) -> list[dict]:
    return [d for d in documents if d["kind"] == kind]


def test_chart_crd_is_the_top_level_crd() -> None:
    chart_crd = CHART / "crds" / "servicepool.dev_servicepools.yaml"
    top_level = ROOT / "crds" / "servicepool.dev_servicepools.yaml"
    assert chart_crd.read_text() == top_level.read_text(), "run `make crd`"


@pytest.mark.parametrize(
    "values",
    [{}, {"watchNamespaces": ["team-a", "team-b"], "replicas": 1,
          "leaderElection": {"enabled": False}, "podMonitor": {"enabled": True}}],
)  # fmt: skip
def test_chart_lints_clean(values: dict) -> None:
    report = helm.lint(str(CHART), values, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_render_is_hardened_cluster_wide_with_leader_election() -> None:
    documents = render()
    (deployment,) = by_kind(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert container["image"] == "localhost/servicepool:0.1.0"
    assert "--proxy-image=localhost/servicepool:0.1.0" in container["args"]
    assert "--all-namespaces" in container["args"]
    assert "--leader-election-namespace=servicepool-system" in container["args"]
    assert len(by_kind(documents, "ClusterRole")) == 1
    assert by_kind(documents, "Role")[0]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update"]},
    ]  # fmt: skip
    assert not by_kind(documents, "PodMonitor")


def test_namespaced_mode_grants_nothing_cluster_wide() -> None:
    documents = render({"watchNamespaces": ["team-a", "team-b"], "podMonitor": {"enabled": True}})
    assert not by_kind(documents, "ClusterRole") and not by_kind(documents, "ClusterRoleBinding")
    roles = [
        r for r in by_kind(documents, "Role") if not r["metadata"]["name"].endswith("election")
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    (deployment,) = by_kind(documents, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    proxies, operator = by_kind(documents, "PodMonitor")
    assert proxies["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    assert "namespaceSelector" not in operator["spec"]  # its own namespace only


def test_wheel_installs_the_commands_and_every_source_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("servicepool-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        text = archive.read(entry_points).decode()
        names = archive.namelist()
    assert "servicepool-operator = servicepool_operator.entry:main" in text
    assert "servicepool-proxy = servicepool_proxy.cli:main" in text
    sources = {
        str(path.relative_to(ROOT / tree))
        for tree in ("api", "proxy", "operator", "dev")
        for path in (ROOT / tree).rglob("*.py")
    }
    assert sources and sources <= set(names), sorted(sources - set(names))


def test_image_values_reach_the_operator_and_the_proxies_it_renders() -> None:
    documents = render({"image": {"repository": "registry.example/team/sp", "tag": "1.2.3",
                                  "pullPolicy": "Always"}})  # fmt: skip
    (deployment,) = by_kind(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/team/sp:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert "--proxy-image=registry.example/team/sp:1.2.3" in container["args"]
    assert "--proxy-image-pull-policy=Always" in container["args"]


def test_a_numeric_image_tag_renders_as_written() -> None:
    (deployment,) = by_kind(render({"image": {"repository": "example/sp", "tag": 1}}), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "example/sp:1"


def test_proxy_pull_secrets_reach_the_proxy_pods_through_the_operators_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from servicepool_api.loader import parse_pool
    from servicepool_operator import cli, handlers
    from servicepool_operator import render as operator_render

    documents = render({"proxyImagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}]})
    (deployment,) = by_kind(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # Through monkeypatch: operators that later tests start inherit this process's environment.
    for name, value in cli.settings_env(cli.build_parser().parse_args(container["args"])).items():
        monkeypatch.setenv(name, value)
    pool = parse_pool({
        "apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
        "metadata": {"name": "demo"},
        "spec": {"members": [{"name": "a", "url": "http://198.18.0.9:8000"}]},
    }).spec  # fmt: skip
    pod = operator_render.render_deployment(
        "demo", "team-a", "uid-1", pool, handlers.proxy_defaults_from_env()
    )["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]


def ports_of(node: object) -> list[dict]:
    """Every entry of every `ports` list anywhere in a manifest."""
    if isinstance(node, dict):
        found = list(node["ports"]) if isinstance(node.get("ports"), list) else []
        return found + [p for key, value in node.items() if key != "ports"
                        for p in ports_of(value)]  # fmt: skip
    if isinstance(node, list):
        return [p for item in node for p in ports_of(item)]
    return []


def test_every_port_names_its_protocol_for_server_side_apply() -> None:
    # Kubernetes 1.20's server-side apply refuses a port list entry without `protocol`.
    documents = render({"podMonitor": {"enabled": False}})
    ports = [port for document in documents for port in ports_of(document)]
    assert ports and all(port.get("protocol") == "TCP" for port in ports), ports


def test_the_operator_is_ready_when_it_serves_and_spreads_over_nodes_with_a_budget() -> None:
    documents = render()
    (deployment,) = by_kind(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "health"}
    assert container["resources"]["limits"]["ephemeral-storage"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selector = deployment["spec"]["selector"]
    assert term["podAffinityTerm"]["labelSelector"] == selector
    (budget,) = by_kind(documents, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1" and budget["spec"]["selector"] == selector
    (policy,) = by_kind(documents, "NetworkPolicy")
    assert policy["spec"]["podSelector"] == selector
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {"health", "metrics"}


def test_one_replica_has_no_budget_and_set_affinity_replaces_the_spread() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["system"]}]}]}}}  # fmt: skip
    documents = render({"replicas": 1, "affinity": affinity, "networkPolicy": {"enabled": False}})
    assert not by_kind(documents, "PodDisruptionBudget") and not by_kind(documents, "NetworkPolicy")
    (deployment,) = by_kind(documents, "Deployment")
    assert deployment["spec"]["template"]["spec"]["affinity"] == affinity
