"""The replica benchmark counts reuse over windows of send time from what answers report
(bench/llm/replicas.py)."""

from __future__ import annotations

from bench.llm.client import Outcome
from bench.llm.replicas import reuse
from bench.llm.workload import Request


def outcome(at: float, prompt: int, cached: int | None, warmup: bool = False) -> Outcome:
    request = Request(at=at, tenant=0, turn=0, body={}, warmup=warmup)
    return Outcome(request, status=200, prompt_tokens=prompt, cached_tokens=cached)


def test_reuse_counts_the_measured_answers_sent_in_the_window() -> None:
    outcomes = [
        outcome(0.0, 100, 0, warmup=True),  # the warm-up does not count
        outcome(1.0, 100, 50),
        outcome(2.0, 100, 100),
        outcome(3.0, 100, None),  # no usage reported: not counted
        outcome(5.0, 100, 0),  # after the window
    ]
    assert reuse(outcomes, 0.0, 5.0) == 0.75
    assert reuse(outcomes, 0.0, 10.0) == 0.5
    assert reuse(outcomes, 6.0, 10.0) is None
