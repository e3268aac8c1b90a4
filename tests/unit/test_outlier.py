"""Passive health: ejection, growth, half-open trials, limits, 429 and auth errors."""

from __future__ import annotations

from typing import Any

import pytest

from servicepool_api.policies import OutlierDetection
from servicepool_api.spec import PoolSpec
from servicepool_proxy.balancer import outlier
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pool import Balancer


def policy(**fields: Any) -> OutlierDetection:
    return OutlierDetection(**fields)


def states(count: int) -> list[MemberState]:
    return [MemberState(name=f"m{i}", url=f"http://10.0.0.{i}") for i in range(count)]


def balancer(count: int = 3, **outlier_fields: Any) -> Balancer:
    spec = PoolSpec.model_validate(
        {
            "members": [{"name": f"m{i}", "url": f"http://10.0.0.{i}"} for i in range(count)],
            "outlierDetection": outlier_fields,
        }
    )
    return Balancer(spec)


def fail(
    member: MemberState,
    pool: list[MemberState],
    rules: OutlierDetection,
    now: float,
    n: int = 1,
    trial: bool = False,
) -> bool:
    """Record n failures; return whether the last one ejected."""
    ejected = False
    for _ in range(n):
        ejected = outlier.record_failure(member, "HTTP 502", now, pool, rules, trial)
    return ejected


# --- consecutive failures -------------------------------------------------------------


def test_ejected_after_n_consecutive_failures() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=3, baseEjectionSeconds=30)
    member = pool[0]
    assert fail(member, pool, rules, 100.0, n=2) is False
    assert member.routable(100.0)
    assert fail(member, pool, rules, 100.0) is True
    assert member.ejected(100.0)
    assert not member.routable(100.0)
    assert member.ejected_until == pytest.approx(130.0)
    assert member.ejections == 1
    assert member.failures == 3
    assert member.last_error == "HTTP 502"
    assert member.state_label(100.0) == "Ejected"


def test_success_resets_the_count() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=3)
    member = pool[0]
    fail(member, pool, rules, 0.0, n=2)
    outlier.record_success(member, 0.05, 1.0, rules)
    assert member.consecutive_failures == 0
    assert fail(member, pool, rules, 2.0, n=2) is False
    assert not member.ejected(2.0)
    assert member.failures == 4  # the total still counts everything
    assert fail(member, pool, rules, 2.0) is True


def test_ejection_ends_on_time() -> None:
    pool = states(2)
    rules = policy(consecutiveFailures=1, baseEjectionSeconds=10)
    fail(pool[0], pool, rules, 0.0)
    assert not pool[0].routable(9.999)
    assert pool[0].routable(10.0)


def test_ejection_seconds_grows_linearly_and_is_capped() -> None:
    rules = policy(baseEjectionSeconds=30, maxEjectionSeconds=100)
    assert [outlier.ejection_seconds(rules, n) for n in range(6)] == [30, 30, 60, 90, 100, 100]


def test_repeated_trial_failures_eject_longer_each_time() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=2, baseEjectionSeconds=30, maxEjectionSeconds=100)
    member = pool[0]
    now = 0.0
    fail(member, pool, rules, now, n=2)
    durations = [member.ejected_until - now]
    for _ in range(4):
        now = member.ejected_until  # ejection over: half-open
        assert member.routable(now) and member.half_open
        assert fail(member, pool, rules, now, trial=True) is True  # one trial failure suffices
        durations.append(member.ejected_until - now)
    assert durations == [30, 60, 90, 100, 100]
    assert member.ejections == 5


def test_ejection_count_forgotten_after_serving_well() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=1, baseEjectionSeconds=10, maxEjectionSeconds=50)
    member = pool[0]
    fail(member, pool, rules, 0.0)
    outlier.record_success(member, 0.01, 10.0, rules, trial=True)  # trial succeeds, closes
    assert member.ejections == 1
    outlier.record_success(member, 0.01, 40.0, rules)  # not yet maxEjectionSeconds
    assert member.ejections == 1
    outlier.record_success(member, 0.01, 60.5, rules)
    assert member.ejections == 0
    fail(member, pool, rules, 70.0)
    assert member.ejected_until == pytest.approx(80.0)  # base again, not 2*base


def test_ejection_count_kept_when_failing_again_soon() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=1, baseEjectionSeconds=10, maxEjectionSeconds=50)
    member = pool[0]
    fail(member, pool, rules, 0.0)
    outlier.record_success(member, 0.01, 10.0, rules, trial=True)
    outlier.record_success(member, 0.01, 20.0, rules)
    fail(member, pool, rules, 30.0)
    assert member.ejected_until == pytest.approx(50.0)  # second ejection: 2*base


# --- half-open ------------------------------------------------------------------------


def test_half_open_allows_exactly_one_trial() -> None:
    bal = balancer(2, consecutiveFailures=1, baseEjectionSeconds=10)
    sick, other = bal.members
    bal.record_failure(sick, "reset", 0.0)
    assert sick.half_open
    assert bal.choose(5.0) is other
    # Ejection over: the member is routable for one trial.
    assert sick.routable(10.0)
    assert sick.state_label(10.0) == "HalfOpen"
    assert bal.acquire(sick, 10.0) is True
    assert sick.trial_in_flight
    assert not sick.routable(10.0)
    for _ in range(20):
        assert bal.choose(10.5) is other
    # A success of some other (older) request proves nothing.
    bal.record_success(sick, 0.02, 10.8)
    assert sick.half_open
    # Trial success closes the circuit.
    bal.record_success(sick, 0.02, 11.0, trial=True)
    bal.release(sick, trial=True)
    assert not sick.half_open
    assert not sick.trial_in_flight
    assert sick.routable(11.0)
    bal.acquire(sick, 11.0)
    bal.acquire(sick, 11.0)
    assert sick.routable(11.0)  # no longer limited to one request


def test_half_open_trial_failure_re_ejects_for_longer() -> None:
    bal = balancer(2, consecutiveFailures=1, baseEjectionSeconds=10, maxEjectionSeconds=300)
    sick = bal.members[0]
    bal.record_failure(sick, "reset", 0.0)
    assert bal.acquire(sick, 10.0)
    assert bal.record_failure(sick, "reset", 10.5, trial=True) is True
    bal.release(sick, trial=True)
    assert sick.half_open
    assert not sick.trial_in_flight
    assert sick.ejected_until == pytest.approx(30.5)
    assert not sick.routable(30.0)
    assert sick.routable(30.5)


def test_acquire_while_still_ejected_is_not_a_trial() -> None:
    bal = balancer(2, consecutiveFailures=1, baseEjectionSeconds=10)
    sick = bal.members[0]
    bal.record_failure(sick, "reset", 0.0)
    bal.acquire(sick, 5.0)  # e.g. a last-resort pick while ejected
    assert not sick.trial_in_flight


def test_trial_without_verdict_frees_the_slot() -> None:
    bal = balancer(2, consecutiveFailures=1, baseEjectionSeconds=10)
    sick = bal.members[0]
    bal.record_failure(sick, "reset", 0.0)
    assert bal.acquire(sick, 10.0)
    assert not sick.routable(10.0)
    bal.release(sick, trial=True)  # the client went away
    assert sick.half_open
    assert sick.routable(10.0)


def test_late_failures_of_in_flight_requests_do_not_escalate() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=5, baseEjectionSeconds=30, maxEjectionSeconds=300)
    member = pool[0]
    # 8 concurrent requests to a member that just died all fail at the same moment.
    fail(member, pool, rules, 100.0, n=8)
    assert member.ejections == 1
    assert member.ejected_until == pytest.approx(130.0)


def test_older_request_finishing_does_not_open_a_second_trial() -> None:
    bal = balancer(2, consecutiveFailures=1, baseEjectionSeconds=10)
    sick = bal.members[0]
    bal.acquire(sick, 0.0)  # a long request starts before the ejection
    bal.record_failure(sick, "reset", 0.0)  # another request fails: ejected
    assert bal.acquire(sick, 10.0)  # the trial
    bal.release(sick, trial=False)  # the long request from before finishes
    assert sick.in_flight == 1
    assert not sick.routable(10.5)


# --- maxEjectionPercent ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "percent", "limit"),
    [
        (3, 50, 1),
        (4, 50, 2),
        (10, 10, 1),
        (10, 19, 1),
        (3, 100, 3),
        (3, 0, 0),
        (1, 1, 1),
        (0, 50, 0),
    ],
)
def test_ejection_limit(total: int, percent: int, limit: int) -> None:
    assert outlier.ejection_limit(total, percent) == limit


def test_max_ejection_percent_50_of_3_ejects_one() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=2, baseEjectionSeconds=30, maxEjectionPercent=50)
    assert fail(pool[0], pool, rules, 0.0, n=2) is True
    assert fail(pool[1], pool, rules, 1.0, n=5) is False
    assert fail(pool[2], pool, rules, 1.0, n=5) is False
    assert [m.ejected(1.0) for m in pool] == [True, False, False]
    assert pool[1].consecutive_failures == 5  # still counted
    # Once the first ejection ends, the next failure may eject another member.
    assert fail(pool[1], pool, rules, 30.0) is True
    assert [m.ejected(30.0) for m in pool] == [False, True, False]


def test_max_ejection_percent_zero_never_ejects() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=1, maxEjectionPercent=0)
    for member in pool:
        assert fail(member, pool, rules, 0.0, n=50) is False
    assert not any(m.ejected(0.0) for m in pool)


def test_max_ejection_percent_100_ejects_all() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=1, maxEjectionPercent=100)
    assert all(fail(m, pool, rules, 0.0) for m in pool)
    assert all(m.ejected(0.0) for m in pool)


def test_single_member_pool_can_be_ejected_at_low_percent() -> None:
    pool = states(1)
    rules = policy(consecutiveFailures=1, maxEjectionPercent=10)
    assert fail(pool[0], pool, rules, 0.0) is True


def test_half_open_re_ejection_respects_max_percent() -> None:
    pool = states(3)
    rules = policy(consecutiveFailures=1, baseEjectionSeconds=10, maxEjectionPercent=50)
    first, second, _ = pool
    fail(first, pool, rules, 0.0)
    fail(second, pool, rules, 11.0)  # first's ejection is over: second may be ejected
    assert second.ejected(11.0)
    assert fail(first, pool, rules, 12.0, trial=True) is False  # first's trial fails
    assert sum(m.ejected(12.0) for m in pool) <= 1
    assert first.half_open and not first.trial_in_flight  # it stays on trial


# --- 429 and auth errors --------------------------------------------------------------


def test_429_with_retry_after_cools_down_that_long_and_is_not_a_failure() -> None:
    pool = states(2)
    rules = policy(consecutiveFailures=1)
    member = pool[0]
    outlier.record_rate_limited(member, 100.0, 7.0, rules)
    assert member.rate_limited == 1
    assert member.failures == 0 and member.consecutive_failures == 0
    assert not member.ejected(100.0)
    assert not member.routable(106.9)
    assert member.state_label(106.9) == "RateLimited"
    assert member.routable(107.0)


def test_429_without_retry_after_uses_the_default() -> None:
    member = states(1)[0]
    outlier.record_rate_limited(member, 10.0, None, policy(rateLimitCooldownSeconds=3))
    assert member.rate_limited_until == pytest.approx(13.0)


def test_429_cooldown_capped_and_never_shortened() -> None:
    member = states(1)[0]
    rules = policy()
    outlier.record_rate_limited(member, 0.0, 1e9, rules)
    assert member.rate_limited_until == pytest.approx(3600.0)
    outlier.record_rate_limited(member, 1.0, 5.0, rules)
    assert member.rate_limited_until == pytest.approx(3600.0)


def test_many_429s_never_eject() -> None:
    pool = states(2)
    rules = policy(consecutiveFailures=1)
    for i in range(20):
        outlier.record_rate_limited(pool[0], float(i), 0.5, rules)
    assert pool[0].ejections == 0
    assert pool[0].routable(100.0)


def test_429_on_a_trial_frees_the_slot_without_closing() -> None:
    bal = balancer(2, consecutiveFailures=1, baseEjectionSeconds=10)
    sick = bal.members[0]
    bal.record_failure(sick, "reset", 0.0)
    assert bal.acquire(sick, 10.0)
    bal.record_rate_limited(sick, 10.0, 2.0, trial=True)
    assert sick.half_open and not sick.trial_in_flight
    assert not sick.routable(11.0)
    assert sick.routable(12.0)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_counted_and_never_eject(status: int) -> None:
    """A 401/403 to the client's own credential (the pool sent none) is the client's."""
    bal = balancer(2, consecutiveFailures=1, maxEjectionPercent=100)
    member = bal.members[0]
    for _ in range(50):
        bal.record_auth_error(member)
    assert member.auth_errors == 50
    assert member.failures == 0 and member.consecutive_failures == 0
    assert member.ejections == 0
    assert member.routable(0.0)
    assert member.state_label(0.0) == "Unknown" and not member.auth_failed
    assert bal.choose(0.0) is member  # still the first pick of round robin


def test_record_success_tracks_latency_ewma() -> None:
    member = states(1)[0]
    rules = policy()
    outlier.record_success(member, 1.0, 5.0, rules)
    assert member.ewma_latency == pytest.approx(1.0)
    assert member.last_latency_at == 5.0
    outlier.record_success(member, 2.0, 6.0, rules)
    assert member.ewma_latency == pytest.approx(1.0 + outlier.EWMA_ALPHA * 1.0)
    assert member.last_latency_at == 6.0


# --- active probes end an ejection ----------------------------------------------------


@pytest.mark.parametrize(
    ("probes", "threshold", "back"),
    [
        ("", 2, False),
        ("+", 1, True),
        ("+", 2, False),
        ("++", 2, True),
        ("+-+", 2, False),  # a failure restarts the count
        ("+-++", 2, True),
        ("---", 1, False),
        ("++", 3, False),
        ("+++", 3, True),
    ],
)
def test_passing_probes_end_an_ejection(probes: str, threshold: int, back: bool) -> None:
    pool = states(3)
    member, rules = pool[0], policy(consecutiveFailures=1, baseEjectionSeconds=30)
    assert fail(member, pool, rules, now=100.0)
    returned = [outlier.record_probe(member, p == "+", 101.0 + i, threshold)
                for i, p in enumerate(probes)]  # fmt: skip
    assert any(returned) is back
    assert returned.count(True) <= 1
    at = 101.0 + len(probes)
    assert member.ejected(at) is not back
    assert member.half_open  # the next request is still the trial
    assert member.ejections == 1  # kept: the next ejection is longer


def test_probes_before_an_ejection_do_not_count() -> None:
    pool = states(3)
    member, rules = pool[0], policy(consecutiveFailures=1, baseEjectionSeconds=30)
    assert not outlier.record_probe(member, True, 99.0, 2)  # not ejected: nothing to end
    assert fail(member, pool, rules, now=100.0)
    assert not outlier.record_probe(member, True, 101.0, 2)
    assert outlier.record_probe(member, True, 102.0, 2)


def test_ejection_ended_by_probes_then_a_failed_trial_ejects_longer() -> None:
    pool = states(3)
    member, rules = pool[0], policy(consecutiveFailures=1, baseEjectionSeconds=30)
    assert fail(member, pool, rules, now=100.0)
    assert outlier.record_probe(member, True, 101.0, 1)
    assert fail(member, pool, rules, now=102.0, trial=True)
    assert member.ejections == 2
    assert member.ejected_until == pytest.approx(102.0 + 60)


def test_balancer_uses_the_health_checks_threshold() -> None:
    spec = PoolSpec.model_validate({
        "members": [{"name": f"m{i}", "url": f"http://10.0.0.{i}"} for i in range(3)],
        "outlierDetection": {"consecutiveFailures": 1},
        "healthCheck": {"healthyThreshold": 2},
    })  # fmt: skip
    pool = Balancer(spec)
    member = pool.members[0]
    assert pool.record_failure(member, "HTTP 502", 100.0)
    assert not pool.record_probe(member, True, 101.0)
    assert pool.record_probe(member, True, 102.0)
    assert pool.choose(102.5, [pool.members[1], pool.members[2]]) is member
