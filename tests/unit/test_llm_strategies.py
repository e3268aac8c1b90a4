"""Strategies tokens, speed and adaptive over plain data."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from servicepool_api.llm_policies import Adaptive, Speed
from servicepool_api.loader import PoolFileError, parse_pool
from servicepool_api.spec import Strategy
from servicepool_proxy.balancer.llm_strategies import (
    adaptive_score,
    best_adaptive,
    fastest,
    fewest_tokens,
)
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pickers import Tuning, make_picker
from servicepool_proxy.balancer.stats import MemberStats, TokenWindow


def members(*weights: int) -> list[MemberState]:
    return [
        MemberState(name=chr(ord("a") + i), url=f"http://198.18.0.{i + 1}", weight=w)
        for i, w in enumerate(weights)
    ]


def used(member: MemberState, now: float, prompt: int, completion: int, seconds: float = 1.0):
    member.stats.record_usage(
        {"prompt_tokens": prompt, "completion_tokens": completion}, seconds, now, False
    )


# --- the token window -------------------------------------------------------------------


def test_the_token_window_counts_only_the_last_seconds() -> None:
    window = TokenWindow()
    window.add(100.2, 10)
    window.add(100.9, 5)
    window.add(130.0, 7)
    assert window.totals(130.5, 60) == (22, 3)
    assert window.totals(150.0, 30) == (7, 1)  # 100.x is more than 30 s before 150
    assert window.totals(200.0, 60) == (0, 0)


def test_the_token_window_keeps_at_most_ten_minutes_of_buckets() -> None:
    window = TokenWindow()
    for second in range(2000):
        window.add(float(second), 1)
    assert len(window.buckets) <= 600


@pytest.mark.parametrize(
    ("usage_a", "usage_b", "weights", "expected"),
    [
        ((100, 50), (10, 5), (1, 1), "b"),  # fewest tokens
        ((100, 50), (10, 5), (20, 1), "a"),  # ... per unit of weight
        ((0, 0), (0, 0), (1, 1), "a"),  # a tie goes by in-flight, then in turn
    ],
)
def test_tokens_picks_the_fewest_tokens_per_weight(usage_a, usage_b, weights, expected) -> None:
    a, b = members(*weights)
    used(a, 10.0, *usage_a)
    used(b, 10.0, *usage_b)
    assert fewest_tokens([a, b], 20.0, 60).name == expected


def test_tokens_outside_the_window_no_longer_count() -> None:
    a, b = members(1, 1)
    used(a, 0.0, 1000, 1000)  # long ago
    used(b, 100.0, 10, 10)
    assert fewest_tokens([a, b], 101.0, 60) is a
    assert fewest_tokens([a, b], 101.0, 120) is b


def test_tokens_counts_requests_in_flight_at_the_mean_so_one_member_is_not_flooded() -> None:
    a, b = members(1, 1)
    used(a, 10.0, 60, 40)  # 100 tokens per request on average
    used(b, 10.0, 100, 50)
    a.in_flight = 2  # 100 + 2 * 125 > 150
    assert fewest_tokens([a, b], 11.0, 60) is b


def test_the_tokens_picker_uses_the_window_from_the_spec() -> None:
    a, b = members(1, 1)
    used(a, 0.0, 1000, 1000)
    used(b, 100.0, 10, 10)
    short = make_picker(Strategy.TOKENS, random.Random(0), tuning=Tuning.of(spec("tokens", 60)))
    long = make_picker(Strategy.TOKENS, random.Random(0), tuning=Tuning.of(spec("tokens", 200)))
    assert short([a, b], 101.0) is a
    assert long([a, b], 101.0) is b


def spec(strategy: str, window: float = 60):
    document = {"strategy": strategy, "tokens": {"windowSeconds": window}}
    return parse_pool({"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
                       "spec": document}).spec  # fmt: skip


# --- speed ------------------------------------------------------------------------------

NO_EXPLORATION = Speed(explorationRatio=0, staleAfterSeconds=30)


def test_speed_picks_the_fastest_recent_member() -> None:
    a, b, c = members(1, 1, 1)
    for member, seconds in ((a, 2.0), (b, 1.0), (c, 4.0)):
        used(member, 10.0, 10, 100, seconds)
    assert fastest([a, b, c], 11.0, NO_EXPLORATION, random.Random(0)) is b


def test_speed_shares_a_members_speed_with_what_is_in_flight_there() -> None:
    a, b = members(1, 1)
    used(a, 10.0, 10, 100, 1.0)  # 100 tokens/s
    used(b, 10.0, 10, 60, 1.0)  # 60 tokens/s
    a.in_flight = 1  # 100 / 2 < 60
    assert fastest([a, b], 11.0, NO_EXPLORATION, random.Random(0)) is b


def test_an_unmeasured_member_is_measured_one_request_at_a_time() -> None:
    a, b = members(1, 1)
    used(a, 10.0, 10, 100, 1.0)
    assert fastest([a, b], 11.0, NO_EXPLORATION, random.Random(0)) is b
    b.in_flight = 1  # its measuring request is running: no second one
    assert fastest([a, b], 11.0, NO_EXPLORATION, random.Random(0)) is a


def test_a_slow_member_whose_speed_went_stale_is_measured_again() -> None:
    fast, slow = members(1, 1)
    used(slow, 0.0, 10, 10, 1.0)  # 10 tokens/s, then it was avoided
    used(fast, 0.0, 10, 100, 1.0)
    used(fast, 40.0, 10, 100, 1.0)
    assert fastest([fast, slow], 20.0, NO_EXPLORATION, random.Random(0)) is fast
    # 30 s after its last measurement the slow member (recovered, maybe) gets a request.
    assert fastest([fast, slow], 41.0, NO_EXPLORATION, random.Random(0)) is slow
    used(slow, 42.0, 10, 1000, 1.0)  # it recovered: now the fastest
    assert fastest([fast, slow], 43.0, NO_EXPLORATION, random.Random(0)) is slow


def test_speed_explores_about_the_configured_share_of_requests() -> None:
    a, b, c, d = members(1, 1, 1, 1)
    for member, rate in ((a, 100), (b, 50), (c, 40), (d, 30)):
        used(member, 10.0, 10, rate, 1.0)
    policy = Speed(explorationRatio=0.2, staleAfterSeconds=30)
    rng = random.Random(7)
    picks = Counter(fastest([a, b, c, d], 11.0, policy, rng).name for _ in range(4000))
    # 80 % exploit a, 20 % explore uniformly (5 % each): a near 3400, b, c, d near 200.
    assert 3300 <= picks["a"] <= 3500, picks
    assert all(150 <= picks[name] <= 250 for name in "bcd"), picks


def test_speed_without_any_measurement_is_least_in_flight() -> None:
    a, b = members(1, 1)
    a.in_flight, b.in_flight = 2, 1
    assert fastest([a, b], 0.0, NO_EXPLORATION, random.Random(0)) is b


# --- adaptive ---------------------------------------------------------------------------


def measured(member: MemberState, latency: float, speed: float, now: float = 10.0) -> None:
    member.ewma_latency = latency
    member.last_latency_at = now
    used(member, now, 10, int(speed), 1.0)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"latencyWeight": 1, "loadWeight": 0, "speedWeight": 0, "errorWeight": 0}, "b"),
        ({"latencyWeight": 0, "loadWeight": 1, "speedWeight": 0, "errorWeight": 0}, "a"),
        ({"latencyWeight": 0, "loadWeight": 0, "speedWeight": 1, "errorWeight": 0}, "a"),
        ({"latencyWeight": 0, "loadWeight": 0, "speedWeight": 0, "errorWeight": 1}, "b"),
    ],
)
def test_adaptive_follows_each_weighted_term(weights, expected) -> None:
    a, b = members(1, 1)
    measured(a, latency=0.4, speed=200)  # slow first byte, fast generation
    measured(b, latency=0.1, speed=50)
    a.in_flight, b.in_flight = 0, 3  # a is idle
    a.stats.record_outcome(True, 10.0)  # a failed recently
    assert best_adaptive([a, b], 10.0, Adaptive(**weights)).name == expected


def test_a_typical_member_scores_only_its_load() -> None:
    a, b = members(1, 1)
    measured(a, 0.2, 100)
    measured(b, 0.2, 100)
    a.in_flight = b.in_flight = 1
    scores = adaptive_score([a, b], 10.0, Adaptive())
    assert scores["a"] == pytest.approx(1 / (1 + 1))


def test_adaptive_only_pushes_away_from_members_slower_than_typical() -> None:
    # Being quicker than typical earns nothing, so a member that answered quickly once
    # does not draw every request (the load term spreads them).
    a, b, c = members(1, 1, 1)
    measured(a, 0.05, 400)
    measured(b, 0.2, 100)
    measured(c, 0.8, 25)
    scores = adaptive_score([a, b, c], 10.0, Adaptive())
    assert scores["a"] == scores["b"] == 0.0
    assert scores["c"] == pytest.approx(0.25 * (0.8 / 0.2 - 1) + 0.25 * (100 / 25 - 1))


def test_a_streamed_answers_time_to_first_token_is_its_answer_time() -> None:
    a, b = members(1, 1)
    measured(a, 0.001, 100)  # the headers of a stream come at once
    measured(b, 0.001, 100)
    a.stats.record_ttft(2.0, 10.0)  # but the first token took 2 s on a
    b.stats.record_ttft(0.5, 10.0)
    assert best_adaptive([a, b], 10.0, Adaptive()) is b


def test_a_member_slow_once_and_then_idle_drifts_back_to_typical_speed() -> None:
    a, b, c = members(1, 1, 1)
    measured(a, 0.2, 10, now=10.0)  # a was slow, then got no requests
    measured(b, 0.2, 100, now=10.0)
    measured(c, 0.2, 100, now=10.0)
    weights = Adaptive(latencyWeight=0, loadWeight=0, speedWeight=1, errorWeight=0)
    at_once = adaptive_score([a, b, c], 10.0, weights)["a"]
    assert at_once == pytest.approx(100 / 10 - 1)
    for member in (b, c):  # b and c stay measured
        measured(member, 0.2, 100, now=40.0)
    later = adaptive_score([a, b, c], 40.0, weights)["a"]  # three half-lives on
    assert 0 < later < at_once / 4
    assert adaptive_score([a, b, c], 80.0, weights)["a"] == 0.0  # forgotten: measured again


def test_adaptive_forgives_old_errors() -> None:
    a, b = members(1, 1)
    measured(a, 0.2, 100)
    measured(b, 0.2, 100)
    for _ in range(5):
        a.stats.record_outcome(True, 10.0)
    assert best_adaptive([a, b], 10.0, Adaptive()) is b
    assert a.stats.recent_error_rate(400.0) < 0.001  # ten half-lives later


def test_adaptive_without_measurements_is_least_in_flight() -> None:
    a, b = members(1, 1)
    a.in_flight = 1
    assert best_adaptive([a, b], 0.0, Adaptive()) is b


@pytest.mark.parametrize(
    ("block", "fields", "named"),
    [
        ("adaptive", {"latencyWeight": 0, "loadWeight": 0, "speedWeight": 0, "errorWeight": 0},
         "adaptive.latencyWeight"),
        ("adaptive", {"errorWeight": -1}, "adaptive.errorWeight"),
        ("speed", {"explorationRatio": 2}, "speed.explorationRatio"),
        ("tokens", {"windowSeconds": 0}, "tokens.windowSeconds"),
        ("tokens", {"windowSeconds": 601}, "tokens.windowSeconds"),
    ],
)  # fmt: skip
def test_a_bad_strategy_setting_is_an_error_naming_the_field(block, fields, named) -> None:
    with pytest.raises(PoolFileError) as caught:
        parse_pool({"apiVersion": "servicepool.dev/v1alpha1", "kind": "ServicePool",
                    "spec": {"strategy": block, block: fields}})  # fmt: skip
    assert named in str(caught.value)


def test_a_request_that_fails_after_its_first_byte_counts_as_one_failure_not_half() -> None:
    answered_then_broke, failed_at_once = MemberStats(), MemberStats()
    for second in range(50):
        answered_then_broke.record_outcome(False, float(second))  # counted at the first byte
        answered_then_broke.record_outcome(True, float(second), replaces_success=True)
        failed_at_once.record_outcome(True, float(second))
    assert answered_then_broke.recent_error_rate(50.0) == pytest.approx(
        failed_at_once.recent_error_rate(50.0)
    )
    assert failed_at_once.recent_error_rate(50.0) > 0.75  # two samples each had settled near 0.5
