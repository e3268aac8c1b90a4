"""The live page's snapshot as a pure function of member states."""

from __future__ import annotations

from servicepool_api.health import Health
from servicepool_proxy.balancer.decisions import Decision
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.observe.snapshot import PoolView, RateMeter, pool_snapshot

NOW = 1000.0


def member(name: str, **fields) -> MemberState:
    return MemberState(name=name, url=f"http://{name}:1", **fields)


def view(members: list[MemberState], decisions: list[Decision] = ()) -> PoolView:
    return PoolView(name="p", strategy="leastInFlight", generation=3, members=members,
                    routable=1, waiting=2, max_waiting=100, queue_timeout=30.0,
                    explain=False, decisions=decisions)  # fmt: skip


def test_each_member_says_its_state_and_why() -> None:
    healthy = member("a", health=Health.HEALTHY, in_flight=2, requests=10)
    dead = member("b", health=Health.UNHEALTHY, probe_message="connection refused")
    ejected = member("c", health=Health.HEALTHY, ejected_until=NOW + 4.5, last_error="HTTP 500")
    cooling = member("d", rate_limited_until=NOW + 2)
    busy = member("e", health=Health.HEALTHY, max_in_flight=1, in_flight=1)
    refused = member("f", health=Health.HEALTHY, auth_failed=True, auth_recheck_at=NOW + 12,
                     last_error="HTTP 401: refused the pool's credential")  # fmt: skip
    snapshot = pool_snapshot(view([healthy, dead, ejected, cooling, busy, refused]), NOW, {})
    rows = {m["name"]: (m["state"], m["why"]) for m in snapshot["members"]}
    assert rows == {
        "a": ("Healthy", ""),
        "b": ("Unhealthy", "connection refused"),
        "c": ("Ejected", "ejected for 4.5s more (HTTP 500)"),
        "d": ("RateLimited", "answered 429; cooling down 2.0s more"),
        "e": ("Healthy", "at its maxInFlight (1)"),
        "f": (
            "AuthFailed",
            "HTTP 401: refused the pool's credential; re-checked in 12.0s, "
            "or at once on a new credential",
        ),
    }
    assert snapshot["queue"] == {"waiting": 2, "maxWaiting": 100, "timeoutSeconds": 30.0}
    assert snapshot["routableMembers"] == 1 and snapshot["totalMembers"] == 6


def test_a_member_row_carries_latency_ttft_tokens_capacity_and_a_null_prefix_hit_rate() -> None:
    a = member("a", health=Health.HEALTHY)
    for seconds in (0.01, 0.02, 0.03):
        a.stats.latency.add(seconds)
        a.stats.ttft.add(seconds / 2)
    a.stats.tokens_per_second = 41.234
    a.record_report(NOW - 0.5, queued=3, running=2, workers=4, cache_usage=0.5)
    (row,) = pool_snapshot(view([a]), NOW, {"a": (12.345, 0.5)})["members"]
    assert row["latencyMs"] == {"p50": 20.0, "p99": 30.0}
    assert row["ttftMs"] == {"p50": 10.0, "p99": 15.0}
    assert row["tokensPerSecond"] == 41.23
    assert (row["requestsPerSecond"], row["errorsPerSecond"]) == (12.35, 0.5)
    assert row["prefixHitRate"] is None
    assert row["capacity"] == {"queued": 3, "running": 2, "workers": 4, "cacheUsage": 0.5,
                               "ageSeconds": 0.5, "error": ""}  # fmt: skip


def test_a_member_row_carries_its_prefix_hit_rate_once_prompts_were_sent_there() -> None:
    a = member("a", health=Health.HEALTHY)
    a.prefixes.record([1, 2, 3, 4])  # a cold member: nothing matched
    a.prefixes.record([1, 2, 5, 6])  # two of four blocks were there
    (row,) = pool_snapshot(view([a]), NOW, {})["members"]
    assert row["prefixHitRate"] == 0.25


def test_the_last_decisions_come_newest_first_and_at_most_ten() -> None:
    decisions = [Decision(float(i), 1, "a") for i in range(15)]
    shown = pool_snapshot(view([], decisions), NOW, {})["decisions"]
    assert [d["at"] for d in shown] == [float(i) for i in range(14, 4, -1)]


def test_rates_are_measured_over_at_least_a_second() -> None:
    a = member("a")
    meter = RateMeter()
    assert meter.update([a], 0.0) == {"a": (0.0, 0.0)}
    a.requests, a.failures = 5, 1
    assert meter.update([a], 0.5) == {"a": (0.0, 0.0)}  # too soon: unchanged
    assert meter.update([a], 1.0) == {"a": (5.0, 1.0)}
    a.requests = 25
    assert meter.update([a], 3.0) == {"a": (10.0, 0.0)}
    assert meter.update([], 4.0) == {}  # a member that left is forgotten
