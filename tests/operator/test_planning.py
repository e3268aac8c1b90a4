"""The pure plan: from the pool, the cluster view and the probe records to objects and status."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from servicepool_api import contract
from servicepool_api.health import Health
from servicepool_api.spec import PoolSpec
from servicepool_operator import names, render
from servicepool_operator.membership import PodInfo
from servicepool_operator.planning import (
    PlanInputs,
    PoolRef,
    plan_pool,
    read_spec,
)
from servicepool_operator.records import MemberRecord
from servicepool_operator.status import Problem

POOL = PoolRef("demo", "ns", "uid-1")
STATIC = ["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"]
NOW = "2026-01-01T00:00:00Z"


def body(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1"}, "spec": spec}


def inputs(spec: dict[str, Any] | None, **changes: Any) -> PlanInputs:
    reading = read_spec(body(spec or {}), [], [])
    healths = changes.pop("healths", {})
    records = [
        MemberRecord(m.name, m.url or "", healths.get(m.name, Health.HEALTHY))
        for m in reading.members
    ]
    plain = PlanInputs(
        pool=POOL,
        generation=4,
        spec=reading.spec if spec is not None else None,
        members=reading.members,
        spec_problem=None,
        records=records,
        unhealthy={r.name for r in records if r.health is Health.UNHEALTHY},
        proxy_pods=[],
        previous_status={},
        now=NOW,
        defaults=render.OPERATOR_DEFAULTS,
        policy_api_version="policy/v1",
    )
    return replace(plain, **changes)


def members(*names_: str) -> dict[str, Any]:
    return {"members": [{"name": n, "url": f"http://{n}:1"} for n in names_]}


@pytest.mark.parametrize(
    ("extra", "applied", "deleted"),
    [
        ({}, STATIC, ["NetworkPolicy", "PodDisruptionBudget"]),
        ({"proxy": {"replicas": 2}}, [*STATIC, "PodDisruptionBudget"], ["NetworkPolicy"]),
        ({"access": {"allowedNamespaces": ["a"]}}, [*STATIC, "NetworkPolicy"],
         ["PodDisruptionBudget"]),
        ({"proxy": {"replicas": 3}, "access": {"allowedNamespaces": []}},
         [*STATIC, "NetworkPolicy", "PodDisruptionBudget"], []),
    ],
)  # fmt: skip
def test_the_plan_applies_the_objects_the_spec_needs_and_deletes_the_rest(
    extra: dict[str, Any], applied: list[str], deleted: list[str]
) -> None:
    plan = plan_pool(inputs(members("a") | extra))
    assert plan.objects is not None
    assert [m["kind"] for m in plan.objects.apply] == applied
    assert plan.objects.delete == deleted
    assert all(m["metadata"]["ownerReferences"][0]["uid"] == "uid-1" for m in plan.objects.apply)


@pytest.mark.parametrize(
    ("healths", "routed"),
    [
        ({}, ["a", "b", "c"]),
        ({"b": Health.UNHEALTHY}, ["a", "c"]),
        ({"a": Health.UNKNOWN}, ["a", "b", "c"]),  # not probed yet is not unhealthy
        ({n: Health.UNHEALTHY for n in "abc"}, ["a", "b", "c"]),  # none healthy: all of them
    ],
)
def test_the_config_routes_every_member_not_probed_unhealthy(
    healths: dict[str, Health], routed: list[str]
) -> None:
    plan = plan_pool(inputs(members("a", "b", "c"), healths=healths))
    assert plan.config is not None
    document = yaml.safe_load(plan.config.text)
    assert [m["name"] for m in document["spec"]["members"]] == routed
    assert plan.config.manifest["data"][contract.CONFIG_KEY] == plan.config.text
    assert (plan.config.routed, plan.config.total) == (len(routed), 3)


def test_an_invalid_spec_plans_no_writes_and_reports_the_last_valid_spec() -> None:
    problem = Problem("InvalidSpec", "spec.strategy: bad")
    plan = plan_pool(inputs(members("a"), spec_problem=problem))
    assert plan.objects is None and plan.config is None
    status = plan.status.to_api()
    assert status["endpoint"] == "http://demo.ns.svc:80" and status["ready"] == "1/1"
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == "spec.strategy: bad"


def test_a_pool_without_a_valid_spec_plans_only_a_status() -> None:
    problem = Problem("InvalidSpec", "spec.members: the pool has no members")
    plan = plan_pool(inputs(None, spec_problem=problem))
    assert (plan.objects, plan.config, plan.proxies) == (None, None, None)
    status = plan.status.to_api()
    assert "endpoint" not in status and "proxies" not in status
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Degraded"]


def test_a_conflict_still_plans_objects_and_config_but_the_status_names_it() -> None:
    plan = plan_pool(inputs(members("a"), conflict=Problem("Conflict", "Service 'demo' ...")))
    assert plan.objects is not None and plan.config is not None
    assert plan.status.conditions is not None
    assert plan.status.conditions[0].reason == "Conflict"


def test_the_plan_counts_the_pools_own_proxy_pods() -> None:
    pods = [
        PodInfo("demo-proxy-1", names.labels("demo"), "10.0.0.1", True, False),
        PodInfo("other-proxy-1", names.labels("other"), "10.0.0.2", True, False),
    ]
    plan = plan_pool(inputs(members("a") | {"proxy": {"replicas": 2}}, proxy_pods=pods))
    assert plan.status.proxies == "1/2"


def test_the_plan_is_the_same_for_the_same_inputs() -> None:
    given = inputs(members("a", "b"), healths={"b": Health.UNHEALTHY})
    assert plan_pool(given) == plan_pool(given)


@pytest.mark.parametrize(
    ("spec", "services", "problem"),
    [
        (members("a"), [], None),
        ({"members": []}, [], "spec.members: the pool has no members and no memberSelector"),
        ({"members": [{"name": "s", "service": {"name": "api", "port": 80}}]}, [],
         "spec.members[0].service.name: Service 'api' not found in namespace 'ns'"),
        ({"members": [{"name": "s", "service": {"name": "api", "port": 80}}]}, ["api"], None),
        (members("a") | {"strategy": "nope"}, [], "spec.strategy"),
    ],
)  # fmt: skip
def test_reading_the_spec_names_what_is_wrong(
    spec: dict[str, Any], services: list[str], problem: str | None
) -> None:
    reading = read_spec(body(spec), services, [])
    if problem is None:
        assert reading.problem is None and isinstance(reading.spec, PoolSpec)
        assert all(m.url for m in reading.members)
    else:
        assert reading.spec is None and reading.members == []
        assert reading.problem is not None and reading.problem.reason == "InvalidSpec"
        assert problem in reading.problem.message
