"""Pure operator logic: status, conditions and when a status write is worth it."""

from __future__ import annotations

from servicepool_api.health import Health
from servicepool_operator.records import MemberRecord
from servicepool_operator.status import Problem, build_status, needs_write


def records(*states: Health) -> list[MemberRecord]:
    return [
        MemberRecord(name=f"m{i}", url=f"http://m{i}:1", health=state)
        for i, state in enumerate(states)
    ]


def status(recs, problem=None, previous=None, now="2026-01-01T00:00:00Z", generation=3):
    return build_status(generation=generation, endpoint="http://p.ns.svc:80", records=recs,
                        problem=problem, previous=previous or {}, now=now).to_api()  # fmt: skip


def condition(st, type_):
    return next(c for c in st["conditions"] if c["type"] == type_)


def test_all_healthy_is_ready_not_degraded():
    st = status(records(Health.HEALTHY, Health.HEALTHY))
    assert st["ready"] == "2/2" and st["readyMembers"] == 2 and st["totalMembers"] == 2
    ready = condition(st, "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "True", "AllMembersHealthy", 3)  # fmt: skip
    assert condition(st, "Degraded")["status"] == "False"


def test_partial_and_none_healthy():
    st = status(records(Health.HEALTHY, Health.UNHEALTHY))
    assert condition(st, "Ready")["reason"] == "SomeMembersHealthy"
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and "m1" in degraded["message"]
    st = status(records(Health.UNHEALTHY))
    assert condition(st, "Ready")["status"] == "False"
    assert condition(st, "Ready")["reason"] == "NoHealthyMembers"


def test_problem_wins_and_is_named():
    problem = Problem("InvalidSpec", "spec.members[1].name: duplicate member name 'a'")
    st = status(records(Health.HEALTHY), problem=problem)
    ready = condition(st, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.members[1].name" in ready["message"]


def test_transition_time_moves_only_on_flips():
    first = status(records(Health.HEALTHY), now="2026-01-01T00:00:00Z")
    same = status(records(Health.HEALTHY), previous=first, now="2026-01-01T01:00:00Z")
    assert condition(same, "Ready")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    flipped = status(records(Health.UNHEALTHY), previous=same, now="2026-01-01T02:00:00Z")
    assert condition(flipped, "Ready")["lastTransitionTime"] == "2026-01-01T02:00:00Z"


def test_a_status_write_is_needed_only_when_the_status_says_something_new():
    base = status(records(Health.HEALTHY, Health.HEALTHY))
    again = status(records(Health.HEALTHY, Health.HEALTHY), previous=base,
                   now="2026-01-01T00:10:00Z")  # fmt: skip
    assert not needs_write(base, again)
    changed = status(records(Health.HEALTHY, Health.UNHEALTHY), previous=base)
    assert needs_write(base, changed)
    assert needs_write(base, status(records(Health.HEALTHY), previous=base))
    assert needs_write(base, status(records(Health.HEALTHY, Health.HEALTHY), generation=4))


def test_the_members_status_holds_nothing_that_moves_on_every_probe():
    record = MemberRecord(name="a", url="http://a:1", health=Health.UNHEALTHY, probe_failures=7,
                          probe_message="refused", status_message="refused")  # fmt: skip
    (entry,) = status([record])["members"]
    assert set(entry) == {"name", "url", "state", "message"}


def test_record_round_trips_through_status():
    record = MemberRecord(name="a", url="http://a:1", health=Health.UNHEALTHY,
                          probe_failures=3, probe_message="probe /healthz timed out",
                          status_message="probe /healthz timed out",
                          last_transition_time="2026-01-01T00:00:00Z")  # fmt: skip
    again = MemberRecord.from_status(record.to_status().model_dump(mode="json"))
    assert again.health is Health.UNHEALTHY
    assert again.probe_failures == 1  # counts are not in status: one failure on record
    assert again.last_transition_time == "2026-01-01T00:00:00Z"
    assert again.probe_message == again.status_message == "probe /healthz timed out"


def test_the_status_leaves_out_empty_strings_and_unset_fields():
    record = MemberRecord(name="a", url="http://a:1", health=Health.HEALTHY, probe_message="")
    st = status([record], now="2026-01-01T00:00:00Z")
    assert st["members"] == [{"name": "a", "url": "http://a:1", "state": "Healthy"}]
    assert "proxies" not in st
    no_endpoint = build_status(generation=1, endpoint="", records=[], problem=None, previous={},
                               now="2026-01-01T00:00:00Z").to_api()  # fmt: skip
    assert "endpoint" not in no_endpoint and no_endpoint["members"] == []
