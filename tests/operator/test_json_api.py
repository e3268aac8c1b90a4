"""Where the operator's plain JSON calls go: the path of every kind a pool owns (pure)."""

from __future__ import annotations

import pytest

from servicepool_operator import render
from servicepool_operator.json_api import MERGE_PATCH, STRATEGIC_MERGE_PATCH, owned_kinds
from servicepool_operator.kube import POOLS

from .test_membership_and_render import spec

EVERYTHING = spec(
    members=[{"name": "a", "url": "http://a:1"}],
    proxy={"replicas": 2},
    access={"allowedNamespaces": ["team"]},
)


@pytest.mark.parametrize(
    ("kind", "collection"),
    [
        ("ConfigMap", "/api/v1/namespaces/ns/configmaps"),
        ("Service", "/api/v1/namespaces/ns/services"),
        ("ServiceAccount", "/api/v1/namespaces/ns/serviceaccounts"),
        ("Deployment", "/apis/apps/v1/namespaces/ns/deployments"),
        ("Role", "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles"),
        ("RoleBinding", "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings"),
        ("NetworkPolicy", "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies"),
        ("PodDisruptionBudget", "/apis/policy/v1beta1/namespaces/ns/poddisruptionbudgets"),
    ],
)
def test_every_owned_kind_is_written_at_its_api_path(kind: str, collection: str) -> None:
    found = owned_kinds("policy/v1beta1")[kind]
    assert found.collection("ns") == collection
    assert found.item("ns", "demo-proxy") == collection + "/demo-proxy"


@pytest.mark.parametrize("policy", ["policy/v1", "policy/v1beta1"])
def test_every_rendered_object_has_a_kind_of_the_same_api_version(policy: str) -> None:
    manifests = [
        *render.render_static_objects("demo", "ns", "uid", EVERYTHING),
        render.render_config_map("demo", "ns", "uid", "members: []\n"),
        render.render_network_policy("demo", "ns", "uid", EVERYTHING),
        render.render_disruption_budget("demo", "ns", "uid", EVERYTHING, policy),
    ]
    kinds = owned_kinds(policy)
    assert {m["kind"] for m in manifests if m is not None} == set(kinds)
    for manifest in manifests:
        assert manifest is not None
        assert kinds[manifest["kind"]].api_version == manifest["apiVersion"]


def test_built_in_kinds_patch_as_strategic_merge_and_the_budget_and_pool_as_merge() -> None:
    # As the generated client patched them: built-in kinds through their typed methods, the
    # budget (either version) and the pool's status through the custom-object methods.
    kinds = owned_kinds("policy/v1")
    assert {k: v.patch_type for k, v in kinds.items() if v.patch_type != STRATEGIC_MERGE_PATCH} == {
        "PodDisruptionBudget": MERGE_PATCH
    }
    assert POOLS.api_version == "servicepool.dev/v1alpha1"
    assert (
        POOLS.item("ns", "demo") == "/apis/servicepool.dev/v1alpha1/namespaces/ns/servicepools/demo"
    )
