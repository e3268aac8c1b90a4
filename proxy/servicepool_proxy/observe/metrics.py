"""Prometheus metrics of one proxy; member gauges are read from live state at scrape time."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from servicepool_proxy.balancer.member import MemberState

# Typed as a variable-length tuple: compiled, a fixed-length one is unboxed, and boxed again
# (13 floats) on every bisect.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
BUCKET_LABELS = (*map(floatToGoString, LATENCY_BUCKETS), "+Inf")  # as Histogram writes them
MEMBER_STATES = (
    "Healthy",
    "Unknown",
    "Unhealthy",
    "Ejected",
    "RateLimited",
    "HalfOpen",
    "AuthFailed",
)


class MemberStateCollector(Collector):
    """In-flight counts and states of the current members, read when scraped."""

    def __init__(self, pool: str, members: Callable[[], list[MemberState]]) -> None:
        self._pool = pool
        self._members = members

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now = time.monotonic()
        in_flight, state, latency, windows, tokens, rate, reported = _member_families()
        for member in self._members():
            labels = [self._pool, member.name]
            for key, family in windows.items():
                summary = getattr(member.stats, key).summary()
                for quantile, millis in (summary or {}).items():
                    family.add_metric([*labels, quantile.replace("p", "0.")], millis / 1e3)
            tokens.add_metric([*labels, "prompt"], member.stats.prompt_tokens)
            tokens.add_metric([*labels, "completion"], member.stats.completion_tokens)
            if member.stats.tokens_per_second is not None:
                rate.add_metric(labels, member.stats.tokens_per_second)
            if member.reported_at > 0:
                reported.add_metric([*labels, "queued"], member.reported_queued)
                reported.add_metric([*labels, "running"], member.reported_running)
            in_flight.add_metric([self._pool, member.name], member.in_flight)
            current = member.state_label(now)
            for name in MEMBER_STATES:
                state.add_metric([self._pool, member.name, name], 1.0 if name == current else 0.0)
            if member.ewma_latency is not None:
                latency.add_metric([self._pool, member.name], member.ewma_latency)
        yield in_flight
        yield state
        yield latency
        yield from windows.values()
        yield tokens
        yield rate
        yield reported
        yield from prefix_families(self._pool, self._members())


def prefix_families(pool: str, members: list[MemberState]) -> list[CounterMetricFamily]:
    """cacheAware's estimated prefix-cache hits per member (requests and blocks)."""
    lookups = CounterMetricFamily(
        "servicepool_member_prefix_lookups",
        "Requests with a prompt sent to the member (strategy cacheAware)",
        labels=["pool", "member"],
    )
    hits = CounterMetricFamily(
        "servicepool_member_prefix_hits",
        "Of those, requests whose prompt prefix was recently sent to the member",
        labels=["pool", "member"],
    )
    blocks = CounterMetricFamily(
        "servicepool_member_prefix_blocks",
        "Prompt blocks sent to the member, and how many of them it was recently sent (matched)",
        labels=["pool", "member", "kind"],
    )
    for member in members:
        prefixes = member.prefixes
        if not prefixes.lookups:
            continue
        labels = [pool, member.name]
        lookups.add_metric(labels, prefixes.lookups)
        hits.add_metric(labels, prefixes.hits)
        blocks.add_metric([*labels, "sent"], prefixes.blocks_sent)
        blocks.add_metric([*labels, "matched"], prefixes.blocks_matched)
    return [lookups, hits, blocks]


def _member_families() -> tuple[
    GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, dict[str, GaugeMetricFamily],
    CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
]:  # fmt: skip
    """The families a scrape fills, empty: in flight, state, latency, latency windows,
    tokens, token rate and reported load."""
    in_flight = GaugeMetricFamily(
        "servicepool_member_in_flight",
        "Requests in flight to the member",
        labels=["pool", "member"],
    )
    state = GaugeMetricFamily(
        "servicepool_member_state",
        "1 for the member's current state",
        labels=["pool", "member", "state"],
    )
    latency = GaugeMetricFamily(
        "servicepool_member_latency_ewma_seconds",
        "Moving average of member latency",
        labels=["pool", "member"],
    )
    windows = {
        "latency": GaugeMetricFamily(
            "servicepool_member_latency_quantile_seconds",
            "Member latency percentiles over the last 1024 answers",
            labels=["pool", "member", "quantile"],
        ),
        "ttft": GaugeMetricFamily(
            "servicepool_member_ttft_quantile_seconds",
            "Time to first token (the first body chunk with content) percentiles over the "
            "last 1024 answers",
            labels=["pool", "member", "quantile"],
        ),
    }
    tokens = CounterMetricFamily(
        "servicepool_member_tokens",
        "Tokens reported in OpenAI-style usage blocks",
        labels=["pool", "member", "kind"],
    )
    rate = GaugeMetricFamily(
        "servicepool_member_tokens_per_second",
        "Moving average of the decode rate: a stream's completion tokens after the first over "
        "the time after the first (a whole answer's: all of them over its whole time)",
        labels=["pool", "member"],
    )
    reported = GaugeMetricFamily(
        "servicepool_member_reported_load",
        "The member's own last load report",
        labels=["pool", "member", "kind"],
    )
    return in_flight, state, latency, windows, tokens, rate, reported


class ProxyMetrics:
    """Counters and histograms updated on the request path."""

    def __init__(self, pool: str, members: Callable[[], list[MemberState]]) -> None:
        self.pool = pool
        self.registry = CollectorRegistry()
        self.registry.register(MemberStateCollector(pool, members))
        # requests_total, request_duration_seconds and member_ttft_seconds
        self.responses = ResponseTally(pool)
        self.registry.register(self.responses)
        self.upstream_errors = self._counter(
            "servicepool_upstream_errors_total",
            "Failed attempts on members, by reason",
            ["pool", "member", "reason"],
        )
        self.retries = self._counter(
            "servicepool_retries_total",
            "Requests retried on another member, by reason",
            ["pool", "reason"],
        )
        self.ejections = self._counter(
            "servicepool_ejections_total", "Passive-health ejections", ["pool", "member"]
        )
        self.rejected = self._counter(
            "servicepool_rejected_total",
            "Requests answered by the proxy itself, by reason",
            ["pool", "reason"],
        )
        self.queue_wait = self._histogram(
            "servicepool_queue_wait_seconds", "Time requests waited for a free member", ["pool"]
        )
        self.reloads = self._counter(
            "servicepool_config_reloads_total", "Pool config reloads, by result", ["pool", "result"]
        )
        self.probes = self._counter(
            "servicepool_probes_total",
            "Active health probes, by result",
            ["pool", "member", "result"],
        )

    def _counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str, labels: list[str]) -> Histogram:
        return Histogram(
            name, documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry
        )

    def forget_members(self, names: Iterable[str]) -> None:
        """Drop the series of members that left the pool (a selector pool gets new Pod
        names on every rollout; their counters would otherwise grow for the process's life)."""
        for name in names:
            self.responses.forget(name)
            for counter in (self.upstream_errors, self.ejections, self.probes):
                counter.remove_by_labels({"member": name})

    def observe_response(self, member: str, code: int, seconds: float) -> None:
        """Count one response to a client and its duration."""
        self.responses.observe(member, code, seconds)

    def observe_ttft(self, member: str, seconds: float) -> None:
        """One answer's time to first token."""
        self.responses.tally(member).ttft.observe(seconds)


class Buckets:
    """One histogram series: a count per LATENCY_BUCKETS bound and one for +Inf, and the sum."""

    __slots__ = ("counts", "seconds")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count) pairs as a HistogramMetricFamily takes them."""
        pairs: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip(BUCKET_LABELS, list(self.counts), strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


class MemberTally:
    """One member's responses: a count per status code, their durations and their times to
    first token."""

    __slots__ = ("codes", "duration", "ttft")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.duration = Buckets()
        self.ttft = Buckets()


class ResponseTally(Collector):
    """Responses to clients by member and status, their durations and times to first token:
    plain counts on the request path (no lock, no metric child per response), Prometheus
    families when scraped."""

    def __init__(self, pool: str) -> None:
        self._pool = pool
        self._created = time.time()
        self.members: dict[str, MemberTally] = {}

    def forget(self, member: str) -> None:
        """Drop a member's counts and durations."""
        self.members.pop(member, None)

    def tally(self, member: str) -> MemberTally:
        """The member's tally, made on first use."""
        tally = self.members.get(member)
        if tally is None:
            tally = self.members[member] = MemberTally()
        return tally

    def observe(self, member: str, code: int, seconds: float) -> None:
        tally = self.tally(member)
        codes = tally.codes
        codes[code] = codes.get(code, 0) + 1
        tally.duration.observe(seconds)

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "servicepool_requests",
            "Responses sent to clients, by member and status",
            labels=["pool", "member", "code"],
        )
        duration = HistogramMetricFamily(
            "servicepool_request_duration_seconds",
            "Time from request to last response byte",
            labels=["pool", "member"],
        )
        ttft = HistogramMetricFamily(
            "servicepool_member_ttft_seconds",
            "Time from sending a request to the member to the first body chunk with content "
            "(for server-sent events, the first data event with a token)",
            labels=["pool", "member"],
        )
        for member, tally in list(self.members.items()):
            for code, count in list(tally.codes.items()):
                requests.add_metric([self._pool, member, str(code)], count, created=self._created)
            labels = [self._pool, member]
            duration.add_metric(labels, tally.duration.cumulative(), tally.duration.seconds)
            if any(tally.ttft.counts):
                ttft.add_metric(labels, tally.ttft.cumulative(), tally.ttft.seconds)
        yield requests
        yield duration
        yield ttft
