"""The prefix probe's verdict from placements and counters (bench/llm/probe.py), over data."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.llm.probe import PREFIXES, WARM_ROUNDS, decision_counter, grown, judge, read_counter
from bench.llm.routers import ROUTERS

VLLM = ROUTERS["vllm-router"].counters["cache_aware"]
WARM = PREFIXES * WARM_ROUNDS


def snapshot(queries: float, hits: float, **decisions: float) -> dict:
    return {"engines": {"m0": (queries, hits)}, "decisions": Counter(decisions)}


def placed(*homes: str) -> dict[int, list[str]]:
    """Every prefix on its home member for the cold and every warm round."""
    return {i: [home] * (1 + WARM_ROUNDS) for i, home in enumerate(homes)}


STAYS = placed("m0", "m1", "m2", "m3")
MOVES = {**STAYS, 0: ["m0", "m1", "m2", "m0"]}
FAILS = {**STAYS, 1: ["m1", "", "m1", "m1"]}

# (placements, warm hit tokens of 1000, warm decisions of the peer, passes, reason fragment)
CASES = [
    (STAYS, 980, {"prefix_hit": WARM}, True, ""),
    (MOVES, 980, {"prefix_hit": WARM}, False, "left its member"),
    (FAILS, 980, {"prefix_hit": WARM}, False, "requests failed"),
    (STAYS, 500, {"prefix_hit": WARM}, False, "hit rate"),
    (STAYS, 980, {"prefix_hit": WARM - 4, "prefix_miss": 4}, False, "prefix hits"),
    (STAYS, 980, {"prefix_hit": WARM, "missing_tokens": 1}, False, "fallback fired"),
]


@pytest.mark.parametrize(("where", "hits", "decisions", "passes", "reason"), CASES)
def test_the_verdict(where, hits: float, decisions: dict, passes: bool, reason: str) -> None:
    start, cold = snapshot(0, 0), snapshot(1000, 0, prefix_miss=PREFIXES)
    end = snapshot(2000, hits, **(Counter(decisions) + Counter(prefix_miss=PREFIXES)))
    verdict = judge(where, start, cold, end, VLLM)
    assert verdict["passed"] is passes
    assert reason in " ".join(verdict["reasons"])


def test_without_a_peer_counter_the_members_decide() -> None:
    verdict = judge(STAYS, snapshot(0, 0), snapshot(1000, 0), snapshot(2000, 990), None)
    assert verdict["passed"] and "none exported" in verdict["peerCounter"]


def test_a_counter_is_read_by_its_label(tmp_path) -> None:
    page = tmp_path / "metrics"
    page.write_text(
        "# TYPE vllm_router_prefix_routing_decisions_total counter\n"
        'vllm_router_prefix_routing_decisions_total{policy="cache_aware",outcome="prefix_hit"} 3\n'
        'vllm_router_prefix_routing_decisions_total{outcome="prefix_miss",policy="x"} 2\n'
        'vllm_router_prefix_routing_decisions_total{outcome="prefix_hit"} 1\n'
        "other_total 9\n"
    )
    assert read_counter([page.as_uri()], VLLM) == Counter(prefix_hit=4, prefix_miss=2)


@pytest.mark.parametrize(
    ("kind", "option", "metric"),
    [
        ("vllm-router", "cache_aware", "vllm_router_prefix_routing_decisions_total"),
        ("vllm-router", "round_robin", None),
        ("smg", "prefix_hash", "smg_prefix_hash_policy_branch_total"),
        ("sglang-router", "cache_aware", None),
        ("servicepool", "cacheAware", "servicepool_member_prefix_hits_total"),
        ("servicepool", "roundRobin", None),
        ("nginx", "least_conn", None),
    ],
)
def test_which_peer_counts_its_decisions(kind: str, option: str, metric: str | None) -> None:
    counter = decision_counter(kind, option)
    assert (counter.metric if counter else None) == metric


@pytest.mark.parametrize(
    ("before", "after", "member"),
    [
        ({"a": (10, 0), "b": (5, 0)}, {"a": (10, 0), "b": (405, 380)}, "b"),
        ({"a": (10, 0), "b": (5, 0)}, {"a": (12, 0), "b": (405, 0)}, "b"),  # most growth wins
        ({"a": (10, 0), "b": (5, 0)}, {"a": (10, 0), "b": (5, 0)}, ""),  # no engine saw it
        ({}, {}, ""),
    ],
)
def test_a_request_is_put_down_to_the_engine_whose_prompt_counter_grew(
    before: dict, after: dict, member: str
) -> None:
    assert grown(before, after) == member
