"""One admin view of several worker processes: their /metrics and /status merged (pure).

Counters and histograms are summed over the workers, and so is every count of requests,
failures and requests in flight; what each worker only estimates for itself (member
state, latency averages and percentiles, load reports) is taken from the first worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

SUMMED_TYPES = frozenset({"counter", "histogram", "summary", "untyped"})
SUMMED_GAUGES = frozenset({"servicepool_member_in_flight"})
SUMMED_MEMBER_FIELDS = ("inFlight", "requests", "failures", "authErrors", "rateLimited")


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge_metrics(texts: list[str]) -> bytes:
    """The workers' Prometheus texts as one exposition."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type
                )
                values[family.name] = {}
            summed = family.type in SUMMED_TYPES or family.name in SUMMED_GAUGES
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in samples:
                    samples[key] = sample.value
                elif summed:
                    samples[key] += sample.value
    for name, family in families.items():
        family.samples = [Sample(sample, dict(labels), value)
                          for (sample, labels), value in values[name].items()]  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


def merge_status(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """The workers' /status pages as one: the first worker's, with counts summed."""
    merged = dict(statuses[0])
    merged["queued"] = sum(status.get("queued", 0) for status in statuses)
    members: dict[str, dict[str, Any]] = {}
    for member in merged.get("members", []):
        members[member["name"]] = dict(member)
    for status in statuses[1:]:
        for member in status.get("members", []):
            mine = members.get(member["name"])
            if mine is None:  # a worker that has not applied the same config yet
                continue
            for field in SUMMED_MEMBER_FIELDS:
                mine[field] = mine.get(field, 0) + member.get(field, 0)
    merged["members"] = list(members.values())
    merged["workers"] = [{"generation": status.get("generation")} for status in statuses]
    return merged
