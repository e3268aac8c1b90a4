"""Skip reasons and decision records over plain member states."""

from __future__ import annotations

import itertools

import pytest

from servicepool_api.health import Health
from servicepool_proxy.balancer.decisions import Decision, SkipReason, classify, skip_reason
from servicepool_proxy.balancer.member import MemberState

NOW = 100.0


def member(name: str = "m", **fields) -> MemberState:
    return MemberState(name=name, url=f"http://{name}", **fields)


@pytest.mark.parametrize(
    ("fields", "model", "reason"),
    [
        ({}, None, None),
        ({"health": Health.UNHEALTHY}, None, SkipReason.UNHEALTHY),
        ({"ejected_until": NOW + 1}, None, SkipReason.EJECTED),
        ({"rate_limited_until": NOW + 1}, None, SkipReason.COOLING_DOWN),
        ({"half_open": True, "trial_in_flight": True}, None, SkipReason.TRIAL),
        ({"declared_models": frozenset({"a"})}, "b", SkipReason.NO_MODEL),
        ({"declared_models": frozenset({"a"})}, "a", None),
        ({"max_in_flight": 2, "in_flight": 2}, None, SkipReason.AT_LIMIT),
        ({"max_in_flight": 0, "in_flight": 50}, None, None),
    ],
)
def test_each_skip_reason(fields: dict, model: str | None, reason: SkipReason | None) -> None:
    assert skip_reason(member(**fields), NOW, (), model) is reason


def test_skip_reasons_agree_with_routable_for_every_state() -> None:
    for health, ejected, cooling, half_open, trial in itertools.product(
        list(Health), (0.0, NOW + 1), (0.0, NOW + 1), (False, True), (False, True)
    ):
        state = member(health=health, ejected_until=ejected, rate_limited_until=cooling,
                       half_open=half_open, trial_in_flight=trial)  # fmt: skip
        routable = skip_reason(state, NOW, (), None) is None
        assert routable == state.routable(NOW), state


def test_classify_takes_the_best_tier_with_room_and_says_why_for_the_rest() -> None:
    a = member("a", priority=0, ejected_until=NOW + 5)
    b = member("b", priority=1)
    c = member("c", priority=1, max_in_flight=1, in_flight=1)
    d = member("d", priority=2)
    candidates, skipped = classify([a, b, c, d], NOW, (), None)
    assert [m.name for m in candidates] == ["b"]
    assert skipped == [("a", "ejected"), ("c", "at-maxInFlight"), ("d", "lower-priority-tier")]


def test_a_decision_header_is_one_ascii_line() -> None:
    decision = Decision(1.0, 1, "b", "llamä", "leastInFlight", ("b",), (("a", "ejected"),),
                        (("b", 0.5),), explained=True)  # fmt: skip
    header = decision.header()
    assert header == (
        "attempt=1; pick=b; strategy=leastInFlight; candidates=b; skipped=a:ejected; "
        "scores=b:0.5; model=llam?"
    )
    assert Decision(1.0, 2, None).header() == "attempt=2; pick=-"
