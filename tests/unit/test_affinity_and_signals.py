"""Pure logic added for workload-aware routing: rendezvous affinity, load reports, keys."""

from __future__ import annotations

from collections import Counter

import pytest

from servicepool_api.policies import Capacity
from servicepool_api.signals import (
    SignalError,
    find_usage_in_sse,
    parse_metrics_report,
    parse_model_list,
    parse_status_report,
)
from servicepool_api.spec import PoolSpec
from servicepool_proxy.balancer.affinity import AffinityTable, load_bound, pick_affine
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.rendezvous import hash64, rendezvous_order
from servicepool_proxy.balancer.strategies import is_full, least_reported_load, reported_load
from servicepool_proxy.forwarding.routing_keys import cookie_value, routing_keys


def members(*names: str, weight: int = 1) -> list[MemberState]:
    return [MemberState(name=n, url=f"http://{n}", weight=weight) for n in names]


def home(pool: list[MemberState], key: str) -> str:
    return rendezvous_order(pool, hash64(key))[0].name


def test_homes_are_stable_across_instances_and_only_the_leavers_keys_move() -> None:
    five = members("a", "b", "c", "d", "e")
    keys = [f"k{i}" for i in range(5000)]
    owners = {k: home(five, k) for k in keys}
    assert owners == {k: home(members("a", "b", "c", "d", "e"), k) for k in keys}
    shares = {n: sum(1 for o in owners.values() if o == n) for n in "abcde"}
    assert all(900 < share < 1100 for share in shares.values()), shares
    without_c = [m for m in five if m.name != "c"]
    moved = [k for k in keys if home(without_c, k) != owners[k]]
    assert all(owners[k] == "c" for k in moved) and len(moved) == shares["c"]


# Four equal members, 40,000 keys: the 64-virtual-node ring gave these names shares as far
# apart as 29.4/26.1/23.9/20.6% (a-d) and 18.7/26.9/25.5/28.8% (member-0..3).
@pytest.mark.parametrize(
    "names",
    [("a", "b", "c", "d"), ("member-0", "member-1", "member-2", "member-3"),
     ("e0", "e1", "e2", "e3"), ("fast", "slow", "x", "y"), ("vllm-0", "vllm-1", "vllm-2", "gpu")],
)  # fmt: skip
def test_four_equal_members_each_are_home_to_a_quarter_of_the_keys(names: tuple[str, ...]) -> None:
    pool = members(*names)
    owners = Counter(home(pool, f"user-{i}") for i in range(40_000))
    shares = {name: owners[name] / 400 for name in names}
    assert all(abs(share - 25) <= 1 for share in shares.values()), shares


@pytest.mark.parametrize(("heavy", "ratio"), [(2, 2.0), (3, 3.0), (5, 5.0)])
def test_weight_scales_a_members_share(heavy: int, ratio: float) -> None:
    pool = [*members("a", "b"), *members("heavy", weight=heavy)]
    owners = [home(pool, f"k{i}") for i in range(20_000)]
    assert owners.count("heavy") / owners.count("a") == pytest.approx(ratio, rel=0.1)


def test_bounded_load_spills_to_the_keys_next_member() -> None:
    pool = members("a", "b", "c")
    order = rendezvous_order(pool, hash64("hot"))
    assert pick_affine("hot", pool, 1.25) is order[0]
    order[0].in_flight = load_bound(pool, 1.25)
    assert pick_affine("hot", pool, 1.25) is order[1]
    assert pick_affine("hot", pool, 1.25, preferred=order[2].name) is order[2]
    # The bound is over the mean, so some member always qualifies: the key never waits.
    for load, member in zip((100, 100, 10), pool, strict=True):
        member.in_flight = load
    assert pick_affine("hot", pool, 1.0) is pool[2]
    assert pick_affine("hot", [], 1.0) is None


def test_table_remembers_until_ttl() -> None:
    table = AffinityTable(ttl=10)
    table.put("k", "b", now=0)
    assert table.get("k", now=5) == "b"
    assert table.get("k", now=11) is None


def test_capacity_score_follows_reports_and_our_own_in_flight() -> None:
    policy = Capacity(staleAfterSeconds=3)
    a, b = members("a", "b")
    a.record_report(now=10, queued=4, running=2, workers=8, cache_usage=None)
    b.record_report(now=10, queued=0, running=1, workers=8, cache_usage=None)
    assert reported_load(a, 11, policy) == 6
    b.in_flight = 3  # we sent b three since its report
    assert reported_load(b, 11, policy) == 4
    assert least_reported_load([a, b], 11, policy) is b
    b.in_flight = 8
    assert is_full(b, 11, policy) and least_reported_load([a, b], 11, policy) is a
    assert reported_load(a, 14, policy) is None  # stale: in-flight decides
    a.in_flight = 0
    assert least_reported_load([a, b], 14, policy) is a


def test_status_and_metrics_reports() -> None:
    policy = Capacity()
    report = parse_status_report(b'{"queued": 3, "dispatched": 2, "active_workers": 4}', policy)
    assert (report.queued, report.running, report.workers) == (3, 2, 4)
    nested = Capacity(fields={"queued": "q.waiting", "running": "q.busy", "workers": "cap"})
    assert parse_status_report(b'{"q": {"waiting": 1, "busy": 0}}', nested).workers is None
    for bad in (b"not json", b'{"queued": "x", "dispatched": 1}', b'{"dispatched": 1}',
                b'{"queued": true, "dispatched": 1}'):  # fmt: skip
        with pytest.raises(SignalError):
            parse_status_report(bad, policy)
    text = (
        "# HELP vllm:num_requests_waiting waiting\n"
        'vllm:num_requests_waiting{model="a"} 2\nvllm:num_requests_waiting{model="b"} 3\n'
        "vllm:num_requests_running 1 1700000000\nvllm:gpu_cache_usage_perc 0.5\n"
    )
    metrics = parse_metrics_report(text, Capacity(source="metrics"))
    assert (metrics.queued, metrics.running, metrics.cache_usage) == (5, 1, 0.5)
    with pytest.raises(SignalError, match="not found"):
        parse_metrics_report("other 1\n", Capacity(source="metrics"))


def test_models_usage_and_routing_keys() -> None:
    listing = b'{"data": [{"id": "a", "owned_by": "o"}, {"id": "b"}, {"x": 1}]}'
    assert parse_model_list(listing).owners == {"a": "o", "b": ""}
    with pytest.raises(SignalError):
        parse_model_list(b'{"models": []}')
    chunk = b'data: {"choices": []}\n\ndata: {"usage": {"completion_tokens": 7}}\n\n'
    assert find_usage_in_sse(chunk) == {"completion_tokens": 7}
    assert find_usage_in_sse(b"data: [DONE]\n\n") is None
    assert cookie_value("a=1; sid=xyz", "sid") == "xyz"
    assert cookie_value('bad"cookie', "sid") is None
    spec = PoolSpec.model_validate({"models": {}, "affinity": {"source": "body",
                                                               "name": "user.id"}})  # fmt: skip
    keys = routing_keys(spec, {}, b'{"model": "m1", "user": {"id": 42}}')
    assert (keys.model, keys.affinity_key) == ("m1", "42")
    assert routing_keys(spec, {}, b"not json") == routing_keys(spec, {}, None)
