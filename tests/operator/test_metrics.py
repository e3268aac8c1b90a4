"""The operator's pool gauges, from pool bodies as the watch delivers them."""

from __future__ import annotations

from typing import Any

from servicepool_operator.metrics import pool_families


def body(name: str, status: dict[str, Any] | None) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name}, "status": status}


def samples(bodies: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {
        (family.name, sample.labels["pool"]): sample.value
        for family in pool_families(bodies)
        for sample in family.samples
    }


def test_a_pool_is_ready_only_while_its_ready_condition_is_true() -> None:
    ready = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Degraded",
             "status": "True"}], "readyMembers": 1, "totalMembers": 2}  # fmt: skip
    not_ready = {"conditions": [{"type": "Ready", "status": "False"}], "totalMembers": 2}
    got = samples([body("a", ready), body("b", not_ready), body("c", None)])
    assert got == {
        ("servicepool_pool_ready", "a"): 1.0,
        ("servicepool_pool_ready", "b"): 0.0,
        ("servicepool_pool_ready", "c"): 0.0,  # no status yet: not Ready
        ("servicepool_pool_ready_members", "a"): 1.0,
        ("servicepool_pool_ready_members", "b"): 0.0,
        ("servicepool_pool_ready_members", "c"): 0.0,
        ("servicepool_pool_members", "a"): 2.0,
        ("servicepool_pool_members", "b"): 2.0,
        ("servicepool_pool_members", "c"): 0.0,
    }
