"""Probe records: which members are due, and how results fold into their health (pure)."""

from __future__ import annotations

import pytest

from servicepool_api.health import Health
from servicepool_api.policies import HealthCheck
from servicepool_api.spec import Member
from servicepool_operator.records import NOT_PROBED, MemberRecords, ProbeResult, until_next_round

A = Member(name="a", url="http://a:1")
B = Member(name="b", url="http://b:1")
STAMP = "2026-01-01T00:00:00Z"


def probe_all(records: MemberRecords, oks: list[bool], check: HealthCheck, now: float = 0.0):
    """One pass that probes every record with the given outcomes; returns the transitions."""
    results = [(r, ProbeResult(ok, "" if ok else "down")) for r, ok in
               zip(records.by_name.values(), oks, strict=True)]  # fmt: skip
    return records.record_probes(results, check, now, STAMP)


@pytest.mark.parametrize(
    ("since_last", "interval", "due"),
    [(None, 5.0, True), (4.4, 5.0, False), (4.5, 5.0, True), (10.0, 5.0, True), (0.0, 1.0, False)],
)
def test_a_member_is_due_once_nine_tenths_of_the_interval_passed(
    since_last: float | None, interval: float, due: bool
) -> None:
    records = MemberRecords()
    records.follow([A])
    if since_last is not None:
        records.last_probe["a"] = 100.0 - since_last
    assert bool(records.due(100.0, interval)) is due


@pytest.mark.parametrize(
    ("outcomes", "healthy_after", "unhealthy_after", "healths", "flips"),
    [
        ([True], 1, 2, [Health.HEALTHY], [0]),
        ([True, True, True], 2, 2, [Health.UNKNOWN, Health.HEALTHY, Health.HEALTHY], [1]),
        ([False, False], 1, 2, [Health.UNKNOWN, Health.UNHEALTHY], [1]),
        ([True, False, True], 1, 1, [Health.HEALTHY, Health.UNHEALTHY, Health.HEALTHY],
         [0, 1, 2]),
        ([True, False, True, False], 1, 2, [Health.HEALTHY] * 4, [0]),  # never two in a row
    ],
)  # fmt: skip
def test_health_flips_after_the_thresholds_in_a_row(
    outcomes: list[bool],
    healthy_after: int,
    unhealthy_after: int,
    healths: list[Health],
    flips: list[int],
) -> None:
    check = HealthCheck(healthyThreshold=healthy_after, unhealthyThreshold=unhealthy_after)
    records = MemberRecords()
    records.follow([A])
    seen, flipped = [], []
    for index, ok in enumerate(outcomes):
        if probe_all(records, [ok], check):
            flipped.append(index)
        seen.append(records.by_name["a"].health)
    assert seen == healths and flipped == flips


def test_a_probe_records_its_transition_time_and_when_it_ran() -> None:
    records = MemberRecords()
    records.follow([A])
    record = records.by_name["a"]
    check = HealthCheck()
    results = [(record, ProbeResult(True, ""))]
    (transition,) = records.record_probes(results, check, 7.0, STAMP)
    assert transition.before is Health.UNKNOWN and record.health is Health.HEALTHY
    assert record.last_transition_time == STAMP
    assert records.last_probe["a"] == 7.0
    records.record_probes([(record, ProbeResult(False, "refused"))], check, 8.0, STAMP)
    assert record.probe_message == "refused" and records.last_probe["a"] == 8.0


def test_following_the_members_drops_leavers_and_restarts_a_moved_member() -> None:
    records = MemberRecords([
        {"name": "a", "url": "http://a:1", "state": "Healthy"},
        {"name": "gone", "url": "http://g:1", "state": "Healthy"},
    ])  # fmt: skip
    records.follow([A, B])
    assert sorted(records.by_name) == ["a", "b"]
    assert records.by_name["a"].health is Health.HEALTHY  # kept from the status at start
    records.follow([Member(name="a", url="http://a:2")])
    assert records.by_name["a"].health is Health.UNKNOWN and list(records.by_name) == ["a"]
    assert records.listed([B, Member(name="a", url="http://a:2")]) == [records.by_name["a"]]


def test_with_probing_off_every_due_member_is_healthy_at_once() -> None:
    records = MemberRecords([{"name": "a", "url": "http://a:1", "state": "Healthy"}])
    records.follow([A, B])
    transitions = records.assume_healthy(records.due(0.0, 5.0), 0.0, STAMP)
    assert [(t.record.name, t.before) for t in transitions] == [("b", Health.UNKNOWN)]
    assert {r.health for r in records.by_name.values()} == {Health.HEALTHY}
    assert {r.probe_message for r in records.by_name.values()} == {NOT_PROBED}
    assert records.due(1.0, 5.0) == []


def test_unhealthy_names_only_members_probed_unhealthy() -> None:
    records = MemberRecords([{"name": "a", "url": "u", "state": "Unhealthy"},
                             {"name": "b", "url": "u", "state": "Unknown"}])  # fmt: skip
    assert records.unhealthy() == {"a"}


@pytest.mark.parametrize(
    ("now", "interval", "delay"),
    [
        (1000.0, 5.0, 5.0),  # on the grid: a whole interval
        (1001.5, 5.0, 3.5),  # a pool created between rounds joins the next one
        (1004.6, 5.0, 5.4),  # too close to the next round for a member to be due: the one after
        (7.0, 10.0, 3.0),
    ],
)
def test_the_next_pass_is_on_the_grid_of_the_interval(
    now: float, interval: float, delay: float
) -> None:
    assert until_next_round(now, interval) == pytest.approx(delay)
