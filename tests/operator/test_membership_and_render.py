"""Pure operator logic: member resolution and rendering of owned objects."""

from __future__ import annotations

import pytest
import yaml

from servicepool_api.loader import parse_pool_text
from servicepool_api.spec import PoolSpec
from servicepool_operator import names, render
from servicepool_operator.membership import (
    MembershipError,
    PodInfo,
    check_not_empty,
    resolve_members,
)


def pod(name: str, ip: str | None = "10.0.0.1", ready: bool = True, **labels: str) -> PodInfo:
    return PodInfo(name=name, labels=labels or {"app": "worker"}, ip=ip, ready=ready,
                   terminating=False)  # fmt: skip


def spec(**fields: object) -> PoolSpec:
    return PoolSpec.model_validate(fields)


def test_url_service_and_selector_members_mix():
    pool = spec(
        members=[
            {"name": "static", "url": "http://10.9.9.9:80"},
            {"name": "svc", "service": {"name": "backend", "port": 8000}},
        ],
        memberSelector={"matchLabels": {"app": "worker"}, "port": 9000, "weight": 3},
    )
    pods = [
        pod("w-2", "10.0.0.2"),
        pod("w-1", "10.0.0.1"),
        pod("w-notready", "10.0.0.3", ready=False),
        pod("w-noip", None),
        pod("other", "10.0.0.4", app="other"),
        PodInfo("w-gone", {"app": "worker"}, "10.0.0.5", True, terminating=True),
        pod("w-v6", "fd00::7"),
    ]
    members = resolve_members(pool, "ns", ["backend"], pods)
    assert [(m.name, m.url, m.weight) for m in members] == [
        ("static", "http://10.9.9.9:80", 1),
        ("svc", "http://backend.ns.svc:8000", 1),
        ("w-1", "http://10.0.0.1:9000", 3),
        ("w-2", "http://10.0.0.2:9000", 3),
        ("w-v6", "http://[fd00::7]:9000", 3),
    ]


def test_service_and_selector_members_keep_their_capabilities():
    pool = spec(
        members=[{"name": "svc", "service": {"name": "backend", "port": 8000},
                  "capabilities": ["chat"]}],
        memberSelector={"matchLabels": {"app": "worker"}, "port": 9000,
                        "capabilities": ["embeddings", "rerank"]},
    )  # fmt: skip
    members = resolve_members(pool, "ns", ["backend"], [pod("w-1")])
    assert [(m.name, [k.value for k in m.capabilities]) for m in members] == [
        ("svc", ["chat"]), ("w-1", ["embeddings", "rerank"]),
    ]  # fmt: skip
    rendered = parse_pool_text(render.render_proxy_config("p", "ns", pool, members))
    assert [m.capabilities for m in rendered.spec.members] == [m.capabilities for m in members]


def test_missing_service_names_the_field():
    pool = spec(members=[{"name": "a", "url": "http://x:1"},
                         {"name": "b", "service": {"name": "nope", "port": 80}}])  # fmt: skip
    with pytest.raises(MembershipError, match=r"spec\.members\[1\]\.service\.name: Service 'nope'"):
        resolve_members(pool, "ns", ["other"], [])


def test_empty_pool_is_invalid():
    with pytest.raises(MembershipError, match=r"^spec\.members: the pool has no members"):
        check_not_empty(spec())
    check_not_empty(spec(memberSelector={"matchLabels": {"a": "b"}, "port": 1}))


def test_pod_info_from_body_reads_readiness():
    body = {
        "metadata": {"name": "p", "labels": {"app": "w"}},
        "status": {"podIP": "10.1.1.1",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip
    info = PodInfo.from_body(body)
    assert info.ready and info.ip == "10.1.1.1" and not info.terminating
    body["status"]["conditions"][0]["status"] = "False"
    assert not PodInfo.from_body(body).ready


def test_rendered_proxy_config_is_a_valid_url_only_pool():
    pool = spec(
        strategy="leastInFlight",
        members=[{"name": "a", "url": "http://a:1"}, {"name": "b", "url": "http://b:1"}],
        memberSelector={"matchLabels": {"x": "y"}, "port": 80},
    )
    members = resolve_members(pool, "ns", [], [])
    text = render.render_proxy_config("demo", "ns", pool, render.routed_members(members, {"b"}))
    parsed = parse_pool_text(text)  # the proxy's own loader accepts it
    assert [m.name for m in parsed.spec.members] == ["a"]
    assert parsed.spec.strategy.value == "leastInFlight"
    assert parsed.metadata.name == "demo"
    assert "proxy" not in yaml.safe_load(text)["spec"]
    # Deterministic: same input, same text (no needless ConfigMap writes).
    assert text == render.render_proxy_config("demo", "ns", pool, members[:1])


def test_all_unhealthy_routes_everyone():
    members = resolve_members(spec(members=[{"name": "a", "url": "http://a:1"}]), "ns", [], [])
    assert render.routed_members(members, {"a"}) == members


def test_owned_objects_carry_owner_and_labels():
    pool = spec(members=[{"name": "a", "url": "http://a:1"}],
                proxy={"replicas": 2, "image": "img:1", "port": 8000})  # fmt: skip
    objects = render.render_static_objects("demo", "ns", "uid-1", pool)
    assert [o["kind"] for o in objects] == [
        "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
    ]  # fmt: skip
    for obj in objects:
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert obj["metadata"]["ownerReferences"][0]["controller"] is True
        assert obj["metadata"]["labels"][names.POOL_LABEL] == "demo"
    deployment = objects[3]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "img:1"
    assert container["args"][container["args"].index("--configmap") + 1] == "ns/demo-proxy"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    service = objects[4]
    assert service["metadata"]["name"] == "demo"
    assert service["spec"]["ports"][0]["port"] == 8000
    role = objects[1]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["demo-proxy"],
         "verbs": ["get", "list", "watch"]},
    ]  # fmt: skip


def test_referenced_secrets_are_mounted_key_by_key_and_never_rendered():
    pool = spec(
        members=[{"name": "a", "url": "http://a:1"}],
        access={"tokens": {"secretName": "clients", "key": "tokens"},
                "allowedNamespaces": ["team-a"]},
        upstreamAuth={"secret": {"secretName": "clients", "key": "upstream"}},
    )  # fmt: skip
    deployment = render.render_deployment("demo", "ns", "uid-1", pool)
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "secret-clients")
    assert volume["secret"] == {"secretName": "clients", "items": [
        {"key": "tokens", "path": "tokens"}, {"key": "upstream", "path": "upstream"}]}  # fmt: skip
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "secret-clients", "mountPath": "/etc/servicepool/secrets/clients",
            "readOnly": True} in mounts  # fmt: skip
    config = render.render_proxy_config("demo", "ns", pool, [])
    assert "tokens" in config and "secretName: clients" in config  # references only

    policy = render.render_network_policy("demo", "ns", "uid-1", pool)
    assert policy is not None
    allowed = policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"]
    assert allowed[0]["values"] == ["team-a"]
    assert policy["spec"]["podSelector"]["matchLabels"] == names.selector_labels("demo")
    open_pool = spec(members=[{"name": "a", "url": "http://a:1"}])
    assert render.render_network_policy("demo", "ns", "uid-1", open_pool) is None


def test_disruption_budget_only_with_several_replicas():
    one = spec(members=[{"name": "a", "url": "http://a:1"}])
    assert render.render_disruption_budget("p", "ns", "u", one, "policy/v1") is None
    three = spec(members=[{"name": "a", "url": "http://a:1"}], proxy={"replicas": 3})
    budget = render.render_disruption_budget("p", "ns", "u", three, "policy/v1beta1")
    assert budget is not None and budget["apiVersion"] == "policy/v1beta1"
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == names.selector_labels("p")


def test_proxies_spread_over_nodes_whatever_their_count_and_request_ephemeral_storage():
    templates = [
        render.render_deployment("p", "ns", "u", spec(members=[{"name": "a", "url": "http://a:1"}],
                                                      proxy={"replicas": replicas}))
        ["spec"]["template"]
        for replicas in (1, 3)
    ]  # fmt: skip
    assert templates[0] == templates[1]  # scaling does not roll the proxies
    pod = templates[0]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {
        "labelSelector": {"matchLabels": names.selector_labels("p")},
        "topologyKey": "kubernetes.io/hostname",
    }
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["ephemeral-storage"] and resources["limits"]["ephemeral-storage"]
