"""The chart's opt-in Grafana dashboard and PrometheusRule: they render, promtool accepts the
rules, and every metric they query is one a running proxy or the operator really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from servicepool_operator.metrics import serve_metrics
from servicepool_proxy.server import free_port
from tests.support import eventually, start_member_process, start_proxy_process

from .test_chart import CHART, by_kind, render

PROMTOOL = shutil.which("promtool")
ON = {
    "podMonitor": {"enabled": True},
    "monitoring": {"dashboard": {"enabled": True}, "prometheusRule": {"enabled": True}},
}
ALERTS = {"ServicePoolNoRoutableMember", "ServicePoolMemberEjectedRepeatedly",
          "ServicePoolHigh5xxRatio", "ServicePoolProxyDown", "ServicePoolNotReady"}  # fmt: skip
PROMETHEUS_OWN = {"up"}  # set by Prometheus on every scrape
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
            "_created"), "gauge": ("",), "summary": ("", "_sum", "_count", "_created")}  # fmt: skip


def dashboard(documents: list[dict]) -> dict[str, Any]:
    (config_map,) = [
        d for d in by_kind(documents, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(config_map["data"]["servicepool.json"])


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            queries.append(query["query"])
    return queries


def rule_queries(rule: dict[str, Any]) -> list[str]:
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def metric_names(query: str) -> set[str]:
    """Metric names a PromQL query selects: servicepool_* names and any name before `{`."""
    names = set(re.findall(r"\bservicepool_[a-z0-9_]+", query))
    names |= set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query))
    return names


def test_monitoring_is_off_by_default() -> None:
    documents = render()
    assert by_kind(documents, "PrometheusRule") == []
    assert not [d for d in by_kind(documents, "ConfigMap") if "dashboard" in d["metadata"]["name"]]


def test_the_dashboard_has_per_pool_and_per_member_panels() -> None:
    board = dashboard(render(ON))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"pool", "member"} <= variables
    queries = dashboard_queries(board)
    assert any("$member" in q for q in queries) and any("$member" not in q for q in queries)
    titles = {p["title"] for p in board["panels"]}
    for wanted in ("Routable members", "In flight", "Time to first token (TTFT) p50 / p99",
                   "Decode tokens/s", "Waiting for a member",
                   "Pool Ready (operator)"):  # fmt: skip
        assert wanted in titles
    ids = [p["id"] for p in board["panels"] if "id" in p]
    assert len(ids) == len(set(ids))


def test_the_rules_have_every_alert_and_promtool_accepts_them(tmp_path: Path) -> None:
    (rule,) = by_kind(render(ON), "PrometheusRule")
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == ALERTS
    if PROMTOOL is None:
        pytest.skip(
            "promtool is not installed (Debian package prometheus; e2e/cluster/install-deps.sh)"
        )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_the_proxy_down_alert_watches_the_proxies_pod_monitor_job() -> None:
    documents = render(ON)
    (rule,) = by_kind(documents, "PrometheusRule")
    monitors = {d["metadata"]["name"] for d in by_kind(documents, "PodMonitor")}
    (down,) = [r for g in rule["spec"]["groups"] for r in g["rules"]
               if r["alert"] == "ServicePoolProxyDown"]  # fmt: skip
    job = re.search(r'job="([^"]+)"', down["expr"]).group(1)  # type: ignore[union-attr]
    namespace, name = job.split("/")
    assert namespace == "servicepool-system" and name in monitors and name.endswith("-proxies")


def exported(text: str) -> set[str]:
    """Every sample name a scrape's families allow (families, even without samples yet)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.fixture
def proxy_scrape(tmp_path: Path) -> Iterator[str]:
    """/metrics of a running proxy in front of a real member, after a request."""
    member = start_member_process("a")
    proxy = start_proxy_process(tmp_path, {"members": [{"name": "a", "url": member.url}]})
    try:
        eventually(lambda: urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/", timeout=5), 5)
        yield scrape(f"http://127.0.0.1:{proxy.admin_port}/metrics")
    finally:
        proxy.stop()
        member.kill()


@pytest.fixture
def operator_scrape() -> Iterator[str]:
    """/metrics of the operator's metrics server with one pool in its watch."""
    port = free_port()
    body = {"metadata": {"namespace": "ns", "name": "p"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "readyMembers": 1, "totalMembers": 2}}  # fmt: skip
    stop = serve_metrics(f"127.0.0.1:{port}", lambda: [body])
    try:
        text = scrape(f"http://127.0.0.1:{port}/metrics")
        assert 'servicepool_pool_ready{namespace="ns",pool="p"} 1.0' in text
        yield text
    finally:
        stop()


def test_every_metric_the_dashboard_and_the_rules_query_is_exported(
    proxy_scrape: str, operator_scrape: str
) -> None:
    available = exported(proxy_scrape) | exported(operator_scrape) | PROMETHEUS_OWN
    documents = render(ON)
    (rule,) = by_kind(documents, "PrometheusRule")
    queried = {}
    for query in dashboard_queries(dashboard(documents)) + rule_queries(rule):
        for name in metric_names(query):
            queried.setdefault(name, query)
    assert len(queried) >= 15
    missing = {name: query for name, query in queried.items() if name not in available}
    assert missing == {}


def test_the_chart_lints_clean_with_monitoring_on() -> None:
    report = helm.lint(str(CHART), ON, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
