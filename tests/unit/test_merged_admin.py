"""The admin page of several workers: counters summed, each worker's own estimates not."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.observe.merged import merge_metrics, merge_status
from servicepool_proxy.observe.metrics import ProxyMetrics


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def _worker(responses: list[tuple[str, int, float]], in_flight: int, ewma: float) -> str:
    member = MemberState("m", "http://m")
    member.in_flight, member.ewma_latency = in_flight, ewma
    metrics = ProxyMetrics("p", lambda: [member])
    for name, code, seconds in responses:
        metrics.observe_response(name, code, seconds)
    metrics.rejected.labels("p", "no-member").inc()
    return generate_latest(metrics.registry).decode()


def test_merged_metrics_sum_counters_histograms_and_in_flight_but_not_estimates() -> None:
    first = _worker([("m", 200, 0.001), ("m", 502, 0.2)], in_flight=2, ewma=0.5)
    second = _worker([("m", 200, 0.003)], in_flight=3, ewma=0.9)
    merged = _samples(merge_metrics([first, second]))
    pool_member = (("member", "m"), ("pool", "p"))
    assert merged[("servicepool_requests_total", (("code", "200"), *pool_member))] == 2
    assert merged[("servicepool_requests_total", (("code", "502"), *pool_member))] == 1
    assert merged[("servicepool_request_duration_seconds_count", pool_member)] == 3
    bucket = (("le", "0.0025"), *pool_member)
    assert merged[("servicepool_request_duration_seconds_bucket", bucket)] == 1
    assert merged[("servicepool_rejected_total", (("pool", "p"), ("reason", "no-member")))] == 2
    assert merged[("servicepool_member_in_flight", pool_member)] == 5
    assert merged[("servicepool_member_latency_ewma_seconds", pool_member)] == 0.5


def test_merged_status_sums_member_counts_and_lists_each_workers_generation() -> None:
    def page(generation: int, requests: int, in_flight: int, state: str) -> dict:
        member = {"name": "m", "requests": requests, "inFlight": in_flight, "failures": 1,
                  "authErrors": 0, "rateLimited": 0, "state": state}  # fmt: skip
        return {"pool": "p", "generation": generation, "queued": 1, "members": [member]}

    merged = merge_status([page(2, 10, 1, "Healthy"), page(1, 5, 2, "Ejected")])
    (member,) = merged["members"]
    assert (member["requests"], member["inFlight"], member["failures"]) == (15, 3, 2)
    assert member["state"] == "Healthy"  # the first worker's own view
    assert merged["queued"] == 2
    assert merged["workers"] == [{"generation": 2}, {"generation": 1}]
