"""The Balancer: tiers, saturation, exclusion, reconfiguration and active-probe health."""

from __future__ import annotations

import random
from typing import Any

import pytest

from servicepool_api.health import Health, apply_probe
from servicepool_api.policies import HealthCheck
from servicepool_api.spec import PoolSpec
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pool import Balancer, Unavailable


def spec(members: list[dict[str, Any]], **fields: Any) -> PoolSpec:
    return PoolSpec.model_validate({"members": members, **fields})


def m(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "url": f"http://{name}.internal:8000", **fields}


def picks(bal: Balancer, count: int, now: float = 0.0) -> set[str]:
    names = set()
    for _ in range(count):
        choice = bal.choose(now)
        assert isinstance(choice, MemberState), choice
        names.add(choice.name)
    return names


def eject(member: MemberState, until: float) -> None:
    member.ejected_until = until


# --- priority tiers -------------------------------------------------------------------


def test_only_the_best_tier_is_used_while_available() -> None:
    bal = Balancer(spec([m("c", priority=1), m("a"), m("b"), m("d", priority=2)]), random.Random(1))
    assert picks(bal, 20) == {"a", "b"}


def test_failover_order_follows_priority() -> None:
    bal = Balancer(spec([m("c", priority=1), m("a"), m("b"), m("d", priority=2)]))
    a, b, c, d = (bal.by_name[n] for n in "abcd")
    eject(a, 100.0)
    assert picks(bal, 10) == {"b"}
    b.health = Health.UNHEALTHY
    assert picks(bal, 10) == {"c"}
    bal.record_rate_limited(c, 0.0, 50.0)
    assert picks(bal, 10) == {"d"}
    d.health = Health.UNHEALTHY
    assert isinstance(bal.choose(0.0), Unavailable)
    # The better tier comes back as soon as one of its members does.
    assert picks(bal, 10, now=100.0) == {"a"}


def test_unknown_health_is_routable() -> None:
    bal = Balancer(spec([m("a"), m("b", priority=1)]))
    assert bal.by_name["a"].health is Health.UNKNOWN
    assert picks(bal, 5) == {"a"}
    assert bal.routable_count(0.0) == 2


def test_saturated_member_skipped_and_spills_to_next_tier() -> None:
    bal = Balancer(spec([m("a", maxInFlight=2), m("b", maxInFlight=1), m("c", priority=1)]))
    a, b, _ = bal.members
    bal.acquire(a, 0.0)
    bal.acquire(a, 0.0)
    assert a.saturated()
    assert picks(bal, 5) == {"b"}
    bal.acquire(b, 0.0)
    assert picks(bal, 5) == {"c"}
    bal.release(a)
    assert picks(bal, 5) == {"a"}


def test_zero_max_in_flight_means_no_limit() -> None:
    bal = Balancer(spec([m("a"), m("b", priority=1)]))
    a = bal.members[0]
    for _ in range(1000):
        bal.acquire(a, 0.0)
    assert not a.saturated()
    assert picks(bal, 3) == {"a"}


def test_all_saturated_is_unavailable_saturated() -> None:
    bal = Balancer(spec([m("a", maxInFlight=1), m("b", maxInFlight=1, priority=3)]))
    for member in bal.members:
        bal.acquire(member, 0.0)
    choice = bal.choose(0.0)
    assert isinstance(choice, Unavailable)
    assert choice.saturated is True
    assert "maxInFlight" in choice.detail


def test_saturated_and_unroutable_mix_is_saturated() -> None:
    bal = Balancer(spec([m("a", maxInFlight=1), m("b", priority=1)]))
    a, b = bal.members
    bal.acquire(a, 0.0)
    b.health = Health.UNHEALTHY
    choice = bal.choose(0.0)
    assert choice == Unavailable(True, "every available member is at its maxInFlight limit")


def test_none_routable_names_each_member_state() -> None:
    bal = Balancer(spec([m("a"), m("b"), m("c"), m("d", priority=1)]))
    a, b, c, d = bal.members
    a.ejected_until = 40.0
    a.last_error = "HTTP 502"
    b.health = Health.UNHEALTHY
    b.probe_message = "connection refused"
    bal.record_rate_limited(c, 10.0, 5.0)
    d.half_open = True
    d.trial_in_flight = True
    choice = bal.choose(10.0)
    assert isinstance(choice, Unavailable)
    assert choice.saturated is False
    assert choice.detail == (
        "no member can take the request: a: Ejected for 30.0s (HTTP 502); "
        "b: Unhealthy (connection refused); c: RateLimited for 5.0s; "
        "d: HalfOpen (trial request in flight)"
    )


def test_empty_pool_is_unavailable() -> None:
    bal = Balancer(spec([]))
    assert bal.choose(0.0) == Unavailable(False, "the pool has no members")


# --- exclusion ------------------------------------------------------------------------


def test_excluded_member_avoided() -> None:
    bal = Balancer(spec([m("a"), m("b"), m("c")]))
    a, b, _ = bal.members
    for _ in range(12):
        choice = bal.choose(0.0, exclude={a, b})
        assert isinstance(choice, MemberState)
        assert choice.name == "c"


def test_exclusion_beats_priority() -> None:
    bal = Balancer(spec([m("a"), m("b", priority=1)]))
    a = bal.members[0]
    assert picks(bal, 3) == {"a"}
    choice = bal.choose(0.0, exclude=[a])
    assert isinstance(choice, MemberState) and choice.name == "b"


def test_exclusion_falls_back_to_excluded_when_nothing_else() -> None:
    bal = Balancer(spec([m("a"), m("b")]))
    a, b = bal.members
    b.health = Health.UNHEALTHY
    assert bal.choose(0.0, exclude={a}) is a
    b.health = Health.HEALTHY
    assert bal.choose(0.0, exclude={a, b}) in (a, b)


def test_exclusion_falls_back_when_others_are_saturated() -> None:
    bal = Balancer(spec([m("a"), m("b", maxInFlight=1)]))
    a, b = bal.members
    bal.acquire(b, 0.0)
    assert bal.choose(0.0, exclude={a}) is a


def test_exclusion_does_not_revive_unroutable_members() -> None:
    bal = Balancer(spec([m("a"), m("b")]))
    a, b = bal.members
    a.health = b.health = Health.UNHEALTHY
    choice = bal.choose(0.0, exclude={a})
    assert isinstance(choice, Unavailable) and not choice.saturated


# --- acquire / release ----------------------------------------------------------------


def test_acquire_and_release_count() -> None:
    bal = Balancer(spec([m("a")]))
    a = bal.members[0]
    bal.acquire(a, 0.0)
    bal.acquire(a, 0.0)
    bal.release(a)
    assert (a.in_flight, a.requests) == (1, 2)


def test_strategy_comes_from_the_spec() -> None:
    bal = Balancer(spec([m("a", weight=1), m("b", weight=3)], strategy="weightedRoundRobin"))
    names = [bal.choose(0.0).name for _ in range(8)]  # type: ignore[union-attr]
    assert names.count("b") == 6 and names.count("a") == 2


def test_choose_only_picks_within_the_tier() -> None:
    bal = Balancer(
        spec([m("a"), m("b"), m("c", priority=1)], strategy="roundRobin"), random.Random(0)
    )
    names = [bal.choose(0.0).name for _ in range(6)]  # type: ignore[union-attr]
    assert names == ["a", "b", "a", "b", "a", "b"]


# --- apply ----------------------------------------------------------------------------


def test_apply_keeps_state_for_same_name_and_url() -> None:
    bal = Balancer(spec([m("a"), m("b")]))
    a = bal.members[0]
    bal.acquire(a, 0.0)
    bal.record_failure(a, "HTTP 502", 1.0)
    a.health = Health.HEALTHY
    a.ejected_until = 50.0
    gone = bal.apply(spec([m("a", weight=7, priority=2, maxInFlight=3), m("b")]))
    assert gone == []
    kept = bal.by_name["a"]
    assert kept is a
    assert (kept.requests, kept.in_flight, kept.failures) == (1, 1, 1)
    assert kept.health is Health.HEALTHY
    assert kept.ejected_until == 50.0
    assert (kept.weight, kept.priority, kept.max_in_flight) == (7, 2, 3)
    assert not kept.removed


def test_apply_resets_state_when_url_changes() -> None:
    bal = Balancer(spec([m("a"), m("b")]))
    old = bal.members[0]
    old.requests = 10
    old.health = Health.UNHEALTHY
    bal.apply(spec([{"name": "a", "url": "http://10.9.9.9:8000"}, m("b")]))
    new = bal.by_name["a"]
    assert new is not old
    assert new.url == "http://10.9.9.9:8000"
    assert (new.requests, new.health) == (0, Health.UNKNOWN)
    assert old.removed
    assert not new.removed


def test_apply_marks_removed_members_and_returns_them() -> None:
    bal = Balancer(spec([m("a"), m("b"), m("c")]))
    b = bal.by_name["b"]
    gone = bal.apply(spec([m("a"), m("c"), m("d")]))
    assert gone == [b]
    assert b.removed
    assert [x.name for x in bal.members] == ["a", "c", "d"]
    assert "b" not in bal.by_name
    assert not any(x.removed for x in bal.members)


def test_apply_updates_tiers_and_weights() -> None:
    bal = Balancer(spec([m("a"), m("b", priority=1)]))
    assert picks(bal, 4) == {"a"}
    bal.apply(spec([m("a", priority=2), m("b", priority=1)]))
    assert picks(bal, 4) == {"b"}
    bal.apply(
        spec([m("a", weight=1), m("b", weight=3)], strategy="weightedRoundRobin"),
    )
    names = [bal.choose(0.0).name for _ in range(8)]  # type: ignore[union-attr]
    assert names.count("b") == 6


def test_apply_to_empty_pool() -> None:
    bal = Balancer(spec([m("a")]))
    a = bal.members[0]
    assert bal.apply(spec([])) == [a]
    assert a.removed
    assert bal.choose(0.0) == Unavailable(False, "the pool has no members")


def test_failure_policy_follows_apply() -> None:
    bal = Balancer(spec([m("a"), m("b")], outlierDetection={"consecutiveFailures": 5}))
    a = bal.members[0]
    assert bal.record_failure(a, "reset", 0.0) is False
    bal.apply(
        spec([m("a"), m("b")], outlierDetection={"consecutiveFailures": 2}),
    )
    assert bal.record_failure(a, "reset", 0.0) is True


# --- apply_probe ----------------------------------------------------------------------


def test_apply_probe_thresholds() -> None:
    check = HealthCheck(healthyThreshold=2, unhealthyThreshold=3)
    member = MemberState(name="a", url="http://a")
    assert apply_probe(member, True, "", check) is False
    assert member.health is Health.UNKNOWN
    assert apply_probe(member, True, "", check) is True
    assert member.health is Health.HEALTHY
    assert apply_probe(member, True, "", check) is False  # no change

    assert apply_probe(member, False, "HTTP 500", check) is False
    assert apply_probe(member, False, "HTTP 500", check) is False
    assert member.health is Health.HEALTHY
    assert member.probe_message == "HTTP 500"
    assert apply_probe(member, True, "", check) is False  # resets the failure count
    assert member.probe_message == ""
    assert apply_probe(member, False, "timeout", check) is False
    assert apply_probe(member, False, "timeout", check) is False
    assert apply_probe(member, False, "timeout", check) is True
    assert member.health is Health.UNHEALTHY
    assert member.probe_message == "timeout"
    assert apply_probe(member, False, "timeout", check) is False

    assert apply_probe(member, True, "", check) is False  # one success is not enough
    assert member.health is Health.UNHEALTHY
    assert apply_probe(member, True, "", check) is True
    assert member.health is Health.HEALTHY


def test_apply_probe_default_thresholds() -> None:
    check = HealthCheck()
    member = MemberState(name="a", url="http://a")
    assert apply_probe(member, False, "refused", check) is False
    assert member.health is Health.UNKNOWN
    assert apply_probe(member, False, "refused", check) is True
    assert member.health is Health.UNHEALTHY
    assert apply_probe(member, True, "", check) is True
    assert member.health is Health.HEALTHY


def test_unhealthy_from_probes_takes_member_out_of_rotation() -> None:
    bal = Balancer(spec([m("a"), m("b")], healthCheck={"unhealthyThreshold": 1}))
    a, _ = bal.members
    apply_probe(a, False, "connection refused", bal.spec.healthCheck)
    assert picks(bal, 6) == {"b"}
    assert bal.routable_count(0.0) == 1


@pytest.mark.parametrize(
    ("setup", "label"),
    [
        ({}, "Unknown"),
        ({"health": Health.HEALTHY}, "Healthy"),
        ({"health": Health.UNHEALTHY, "ejected_until": 99.0}, "Unhealthy"),
        ({"ejected_until": 99.0, "rate_limited_until": 99.0}, "Ejected"),
        ({"rate_limited_until": 99.0}, "RateLimited"),
        ({"half_open": True}, "HalfOpen"),
    ],
)
def test_state_label(setup: dict[str, Any], label: str) -> None:
    member = MemberState(name="a", url="http://a")
    for key, value in setup.items():
        setattr(member, key, value)
    assert member.state_label(10.0) == label
