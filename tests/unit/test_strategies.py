"""Selection strategies, checked statistically with seeded randomness."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from servicepool_api.spec import Strategy
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pickers import make_picker
from servicepool_proxy.balancer.strategies import (
    LATENCY_HALF_LIFE_SECONDS,
    RoundRobinCursor,
    latency_estimate,
    least_in_flight,
    lowest_latency,
    power_of_two_choices,
    round_robin,
    smooth_weighted_round_robin,
    weighted_random,
)


def members(*weights: int) -> list[MemberState]:
    return [
        MemberState(name=chr(ord("a") + i), url=f"http://10.0.0.{i + 1}", weight=w)
        for i, w in enumerate(weights)
    ]


def shares(picks: Sequence[MemberState]) -> dict[str, int]:
    counts = Counter(m.name for m in picks)
    return dict(sorted(counts.items()))


# --- round robin ----------------------------------------------------------------------


def test_round_robin_cycles_exactly_and_ignores_weight() -> None:
    pool = members(1, 2, 5)
    cursor = RoundRobinCursor()
    names = "".join(round_robin(pool, cursor).name for _ in range(9))
    assert names == "abcabcabc"


def test_round_robin_through_make_picker_keeps_its_cursor() -> None:
    pool = members(1, 1, 1, 1)
    pick = make_picker(Strategy.ROUND_ROBIN, random.Random(0))
    assert [pick(pool, 0.0).name for _ in range(6)] == list("abcdab")
    # A second picker has its own cursor.
    other = make_picker(Strategy.ROUND_ROBIN, random.Random(0))
    assert other(pool, 0.0).name == "a"


# --- smooth weighted round-robin ------------------------------------------------------


def test_swrr_is_exact_per_cycle() -> None:
    pool = members(1, 2, 5)
    for _ in range(1000):  # 8000 picks
        cycle = [smooth_weighted_round_robin(pool) for _ in range(8)]
        assert shares(cycle) == {"a": 1, "b": 2, "c": 5}
    assert [m.current_weight for m in pool] == [0, 0, 0]


def test_swrr_interleaves() -> None:
    pool = members(5, 1, 1)
    names = "".join(smooth_weighted_round_robin(pool).name for _ in range(7))
    assert names == "aabacaa"  # nginx's documented sequence for 5:1:1


def test_swrr_heavy_member_never_runs_long() -> None:
    pool = members(1, 2, 5)
    names = "".join(smooth_weighted_round_robin(pool).name for _ in range(800))
    assert "ccc" not in names
    assert "aa" not in names and "bb" not in names


def test_weighted_round_robin_picker_matches_weights() -> None:
    pool = members(1, 2, 5)
    pick = make_picker(Strategy.WEIGHTED_ROUND_ROBIN, random.Random(0))
    assert shares([pick(pool, 0.0) for _ in range(8000)]) == {"a": 1000, "b": 2000, "c": 5000}


# --- weighted random ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_random_respects_weights(seed: int) -> None:
    pool = members(1, 2, 5)
    rng = random.Random(seed)
    counts = shares([weighted_random(pool, rng) for _ in range(8000)])
    expected = {"a": 1000, "b": 2000, "c": 5000}
    for name, want in expected.items():
        # ~3.5 standard deviations at p=1/8, tighter than any wrong ratio would pass.
        assert abs(counts[name] - want) <= 0.1 * want, counts


def test_weighted_random_is_not_round_robin() -> None:
    pool = members(1, 1)
    rng = random.Random(7)
    names = "".join(weighted_random(pool, rng).name for _ in range(200))
    assert "aa" in names and "bb" in names


def test_weighted_random_single_candidate_draws_nothing() -> None:
    pool = members(3)
    rng = random.Random(5)
    state = rng.getstate()
    assert weighted_random(pool, rng) is pool[0]
    assert rng.getstate() == state


def test_random_picker_uses_the_given_rng() -> None:
    pool = members(1, 2, 5)
    one = make_picker(Strategy.RANDOM, random.Random(42))
    two = make_picker(Strategy.RANDOM, random.Random(42))
    assert [one(pool, 0.0).name for _ in range(50)] == [two(pool, 0.0).name for _ in range(50)]


# --- least in flight ------------------------------------------------------------------


def test_least_in_flight_picks_least_loaded() -> None:
    pool = members(1, 1, 1)
    for member, load in zip(pool, (3, 1, 2), strict=True):
        member.in_flight = load
    assert least_in_flight(pool).name == "b"


def test_least_in_flight_counts_load_per_weight() -> None:
    pool = members(1, 4)
    pool[0].in_flight = 1  # 1.0 per weight
    pool[1].in_flight = 3  # 0.75 per weight
    assert least_in_flight(pool).name == "b"
    pool[1].in_flight = 5  # 1.25 per weight
    assert least_in_flight(pool).name == "a"


def test_least_in_flight_idle_splits_by_weight() -> None:
    pool = members(1, 2, 5)
    picks = [least_in_flight(pool) for _ in range(8000)]
    assert shares(picks) == {"a": 1000, "b": 2000, "c": 5000}


def test_least_in_flight_ties_only_among_least_loaded() -> None:
    pool = members(1, 1, 1)
    pool[2].in_flight = 1
    names = [least_in_flight(pool).name for _ in range(10)]
    assert set(names) == {"a", "b"}
    assert names.count("a") == names.count("b") == 5


def test_least_in_flight_with_acquire_release_spreads_concurrent_load() -> None:
    pool = members(1, 1, 1)
    held = []
    for _ in range(9):
        chosen = least_in_flight(pool)
        chosen.in_flight += 1
        held.append(chosen)
    assert [m.in_flight for m in pool] == [3, 3, 3]


# --- power of two choices -------------------------------------------------------------


def test_p2c_picks_less_loaded_of_two() -> None:
    pool = members(1, 1)
    pool[0].in_flight = 5
    rng = random.Random(3)
    assert all(power_of_two_choices(pool, rng).name == "b" for _ in range(100))


def test_p2c_never_picks_the_most_loaded_of_three() -> None:
    pool = members(1, 1, 1)
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 9, 1, 2
    rng = random.Random(11)
    counts = shares([power_of_two_choices(pool, rng) for _ in range(3000)])
    assert "a" not in counts
    # b wins whenever it is drawn (2 of 3 pairs), c only against a.
    assert counts["b"] == pytest.approx(2000, rel=0.1)
    assert counts["c"] == pytest.approx(1000, rel=0.1)


def test_p2c_idle_respects_weights() -> None:
    pool = members(1, 2, 5)
    rng = random.Random(9)
    counts = shares([power_of_two_choices(pool, rng) for _ in range(8000)])
    assert counts["a"] < counts["b"] < counts["c"]


def test_p2c_single_candidate() -> None:
    pool = members(1)
    assert power_of_two_choices(pool, random.Random(0)) is pool[0]


Pick = Callable[[Sequence[MemberState], random.Random], MemberState]


def simulate_queues(pick: Pick, steps: int = 6000, seed: int = 1234) -> tuple[float, int]:
    """Discrete-time queueing: one arrival per step; member i finishes one request with
    probability rate[i] per step. Returns (mean total in-flight, max single queue).

    Three fast members and one 4x slower; capacity (1.3/step) exceeds arrivals (1/step),
    but a quarter of the traffic (0.25/step) exceeds the slow member's rate (0.1/step).
    """
    pool = members(1, 1, 1, 1)
    rates = [0.4, 0.4, 0.4, 0.1]
    pick_rng = random.Random(seed)
    service_rng = random.Random(seed + 1)
    total = 0
    longest = 0
    for _ in range(steps):
        pick(pool, pick_rng).in_flight += 1
        for member, rate in zip(pool, rates, strict=True):
            if member.in_flight and service_rng.random() < rate:
                member.in_flight -= 1
        total += sum(m.in_flight for m in pool)
        longest = max(longest, *(m.in_flight for m in pool))
    return total / steps, longest


def test_p2c_beats_random_on_skewed_members() -> None:
    random_mean, random_max = simulate_queues(weighted_random)
    p2c_mean, p2c_max = simulate_queues(power_of_two_choices)
    # Random overloads the slow member: its queue grows without bound (~0.15/step).
    assert random_max > 300
    assert p2c_max < 40
    assert p2c_mean < random_mean / 10


def test_least_in_flight_also_bounded_on_skewed_members() -> None:
    mean, longest = simulate_queues(lambda pool, rng: least_in_flight(pool))
    assert longest < 40
    assert mean < 20


# --- latency --------------------------------------------------------------------------


def measured(pool: list[MemberState], latencies: Sequence[float | None], at: float) -> None:
    for member, latency in zip(pool, latencies, strict=True):
        member.ewma_latency = latency
        member.last_latency_at = at


def test_latency_prefers_lowest_ewma() -> None:
    pool = members(1, 1, 1)
    measured(pool, [0.30, 0.10, 0.20], at=100.0)
    assert lowest_latency(pool, 100.0).name == "b"


def test_latency_score_multiplies_in_flight_and_divides_weight() -> None:
    pool = members(1, 1, 4)
    measured(pool, [0.10, 0.05, 0.20], at=100.0)
    # scores: a 0.10*1/1=0.10, b 0.05*3/1=0.15, c 0.20*1/4=0.05
    pool[1].in_flight = 2
    assert lowest_latency(pool, 100.0).name == "c"
    pool[2].in_flight = 2  # c: 0.20*3/4 = 0.15
    assert lowest_latency(pool, 100.0).name == "a"
    pool[0].in_flight = 1  # a: 0.20 > c 0.15 == b 0.15; first of the tie wins
    assert lowest_latency(pool, 100.0).name == "b"


def test_latency_tries_unmeasured_members_first() -> None:
    pool = members(1, 1, 1)
    measured(pool, [0.001, None, 0.002], at=100.0)
    pool[1].in_flight = 10
    assert lowest_latency(pool, 100.0).name == "b"


def test_latency_picker_measures_every_member_once_then_settles() -> None:
    pool = members(1, 1, 1)
    pick = make_picker(Strategy.LATENCY, random.Random(0))
    true_latency = {"a": 0.3, "b": 0.05, "c": 0.2}
    seen = []
    now = 0.0
    for _ in range(10):
        now += 0.1
        chosen = pick(pool, now)
        seen.append(chosen.name)
        chosen.ewma_latency = true_latency[chosen.name]
        chosen.last_latency_at = now
    assert seen[:3] == ["a", "b", "c"]
    assert seen[3:] == ["b"] * 7


def test_latency_estimate_drifts_with_half_life() -> None:
    member = members(1)[0]
    member.ewma_latency = 1.0
    member.last_latency_at = 50.0
    assert latency_estimate(member, 0.0, 50.0) == pytest.approx(1.0)
    assert latency_estimate(member, 0.0, 50.0 + LATENCY_HALF_LIFE_SECONDS) == pytest.approx(0.5)
    assert latency_estimate(member, 0.2, 50.0 + 2 * LATENCY_HALF_LIFE_SECONDS) == pytest.approx(
        0.25 * 1.0 + 0.75 * 0.2
    )
    # A clock that went backwards does not extrapolate.
    assert latency_estimate(member, 0.0, 10.0) == pytest.approx(1.0)
    member.ewma_latency = None
    assert latency_estimate(member, 0.5, 100.0) == 0.0


def test_stale_slow_member_is_tried_again_after_long_enough() -> None:
    pool = members(1, 1, 1)
    a, b, slow = pool
    measured(pool, [0.01, 0.01, 1.0], at=0.0)
    a.in_flight = b.in_flight = 1  # fast members busy: score 0.02 each
    # Fresh measurements for the fast ones, the slow one measured once at t=0.
    for now in (1.0, 10.0, 30.0):
        a.last_latency_at = b.last_latency_at = now
        assert lowest_latency(pool, now) is not slow
    now = 10 * LATENCY_HALF_LIFE_SECONDS
    a.last_latency_at = b.last_latency_at = now
    assert latency_estimate(slow, 0.01, now) < 0.02
    assert lowest_latency(pool, now) is slow


def test_stale_slow_member_of_two_is_tried_again() -> None:
    fast, slow = members(1, 1)
    measured([fast, slow], [0.01, 1.0], at=0.0)
    fast.in_flight = 3  # fast member busy: score 0.04
    now = 20 * LATENCY_HALF_LIFE_SECONDS
    fast.last_latency_at = now
    assert lowest_latency([fast, slow], now) is slow


def test_make_picker_covers_every_strategy() -> None:
    pool = members(1, 2)
    for strategy in Strategy:
        pick = make_picker(strategy, random.Random(0))
        assert pick(pool, 0.0) in pool
    with pytest.raises(ValueError, match="unknown strategy"):
        make_picker("fastest", random.Random(0))  # type: ignore[arg-type]
