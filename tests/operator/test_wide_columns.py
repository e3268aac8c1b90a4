"""`kubectl get sp -o wide`: strategy, ready/total, endpoint and the failing member."""

from __future__ import annotations

from typing import Any

import pytest

from servicepool_api.health import Health
from servicepool_dev.crd import build_crd
from servicepool_operator.failing import failing_summary
from servicepool_operator.records import MemberRecord
from servicepool_operator.status import build_status


def member(name: str, health: Health, message: str = "") -> MemberRecord:
    return MemberRecord(name=name, url=f"http://{name}:1", health=health, probe_message=message)


@pytest.mark.parametrize(
    ("records", "summary"),
    [
        ([], None),
        ([member("a", Health.HEALTHY), member("b", Health.UNKNOWN)], None),
        ([member("a", Health.HEALTHY), member("b", Health.UNHEALTHY, "connection refused")],
         "b (connection refused)"),
        ([member("a", Health.UNHEALTHY), member("b", Health.UNHEALTHY, "HTTP 500"),
          member("c", Health.UNHEALTHY)], "a +2 more"),
        ([member("a", Health.UNHEALTHY, "x" * 100)], "a (" + "x" * 59 + "…)"),
    ],
)  # fmt: skip
def test_the_failing_column_names_the_first_unhealthy_member_and_why(
    records: list[MemberRecord], summary: str | None
) -> None:
    assert failing_summary(records) == summary


def columns() -> list[dict[str, Any]]:
    return build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]


def lookup(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for key in path.strip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def test_wide_output_shows_strategy_ready_endpoint_and_the_failing_member() -> None:
    status = build_status(
        generation=2, endpoint="http://demo.ns.svc:80", previous={}, now="2026-01-01T00:00:00Z",
        records=[member("a", Health.HEALTHY), member("b", Health.UNHEALTHY, "connect timeout")],
        problem=None,
    ).to_api()  # fmt: skip
    pool = {"spec": {"strategy": "leastInFlight"}, "status": status}
    shown = {c["name"]: lookup(pool, c["jsonPath"]) for c in columns() if "[" not in c["jsonPath"]}
    assert shown["Strategy"] == "leastInFlight"
    assert shown["Ready"] == "1/2"
    assert shown["Endpoint"] == "http://demo.ns.svc:80"
    assert shown["Failing"] == "b (connect timeout)"
    wide_only = {c["name"] for c in columns() if c.get("priority", 0) > 0}
    assert wide_only == {"Failing"}
