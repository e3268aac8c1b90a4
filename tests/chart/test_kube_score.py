"""kube-score on `helm template` output and on the objects the operator renders for pools: every
CRITICAL or WARNING finding is one that kube-score-exceptions.yaml records with its reason."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicepool_api.loader import parse_pool
from servicepool_operator import planning, render

from .test_chart import ROOT
from .test_chart import render as render_chart

BUILD = ROOT / "e2e" / "cluster" / "build-kube-score.sh"
EXCEPTIONS = Path(__file__).with_name("kube-score-exceptions.yaml")
GRADES = {1: "CRITICAL", 5: "WARNING"}  # kube-score's scorecard grades that need a reason

CHARTS = {
    "defaults": {},
    "namespaced, monitoring": {
        "watchNamespaces": ["team-a", "team-b"], "podMonitor": {"enabled": True},
        "monitoring": {"dashboard": {"enabled": True}, "prometheusRule": {"enabled": True}},
    },
}  # fmt: skip
HARDENED_POOL = {
    "members": [{"name": "a", "url": "http://198.18.0.9:8000"}],
    "proxy": {"replicas": 2},
    "access": {"allowedNamespaces": ["team-b"]},
}


@dataclass(frozen=True)
class Finding:
    """One comment of a failed check on one object."""

    of: str  # "chart" or "pool"
    kind: str
    check: str
    grade: str
    summary: str
    subject: str  # which render and object, for the failure message


@pytest.fixture(scope="module")
def kube_score() -> str:
    """The kube-score that build-kube-score.sh built and cached (`make deps` builds it)."""
    found = subprocess.run([str(BUILD), "--cached"], capture_output=True, text=True, timeout=30)
    if found.returncode != 0:
        pytest.skip(f"no kube-score: run `make deps` or {BUILD.relative_to(ROOT)}")
    return found.stdout.strip().splitlines()[-1]


def pool_objects(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator applies for a pool of this spec: its owned objects and ConfigMap."""
    body = {"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
            "metadata": {"name": "demo", "namespace": "team-a"}, "spec": spec}  # fmt: skip
    pool, parsed = planning.PoolRef("demo", "team-a", "uid-1"), parse_pool(body).spec
    objects = planning.plan_objects(pool, parsed, render.OPERATOR_DEFAULTS, "policy/v1")
    config = planning.plan_config(pool, parsed, parsed.members, ())
    return [*objects.apply, config.manifest]


def example_pools() -> dict[str, dict[str, Any]]:
    """The spec of every ServicePool in examples/, by file and name."""
    return {
        f"{path.name} {document['metadata']['name']}": document["spec"]
        for path in sorted((ROOT / "examples").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and document["kind"] == "ServicePool"
    }


def subjects() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The objects to score: the chart's renders and the pools', by (of, name)."""
    found = {("chart", name): render_chart(values) for name, values in CHARTS.items()}
    pools = {**example_pools(), "hardened (2 replicas, access)": HARDENED_POOL}
    return found | {("pool", name): pool_objects(spec) for name, spec in pools.items()}


def score(kube_score: str, of: str, name: str, objects: list[dict[str, Any]]) -> list[Finding]:
    """kube-score's CRITICAL and WARNING findings on these objects."""
    result = subprocess.run(
        [kube_score, "score", "--output-format", "json", "--output-version", "v2", "-"],
        input=yaml.safe_dump_all(objects), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout, result.stderr  # exits 1 when anything is CRITICAL
    return [
        Finding(of, scored["type_meta"]["kind"], check["check"]["id"], GRADES[check["grade"]],
                comment["summary"], f"{name}: {scored['object_name']}")
        for scored in json.loads(result.stdout)
        for check in scored["checks"]
        if not check["skipped"] and check["grade"] in GRADES
        for comment in check["comments"] or [{"summary": ""}]
    ]  # fmt: skip


@cache
def exceptions() -> list[dict[str, str]]:
    return yaml.safe_load(EXCEPTIONS.read_text())


def recorded(finding: Finding) -> bool:
    keys = ("of", "kind", "check", "grade", "summary")
    return any(all(getattr(finding, k) == entry[k] for k in keys) for entry in exceptions())


@pytest.fixture(scope="module")
def findings(kube_score: str) -> list[Finding]:
    return [f for (of, name), objects in subjects().items()
            for f in score(kube_score, of, name, objects)]  # fmt: skip


def test_every_critical_or_warning_finding_is_recorded_with_its_reason(
    findings: list[Finding],
) -> None:
    unrecorded = [f for f in findings if not recorded(f)]
    assert not unrecorded, "fix, or record with its reason in kube-score-exceptions.yaml:\n" + (
        "\n".join(f"{f.grade} {f.check} {f.summary!r} ({f.of} {f.subject})" for f in unrecorded)
    )


def test_every_recorded_exception_still_happens(findings: list[Finding]) -> None:
    seen = {(f.of, f.kind, f.check, f.grade, f.summary) for f in findings}
    stale = [e for e in exceptions()
             if (e["of"], e["kind"], e["check"], e["grade"], e["summary"]) not in seen]  # fmt: skip
    assert not stale, f"no longer found, remove from kube-score-exceptions.yaml: {stale}"


def test_every_exception_says_why() -> None:
    assert all(len(entry["reason"]) > 40 for entry in exceptions())
