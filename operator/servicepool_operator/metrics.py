"""The operator's Prometheus metrics: every watched pool's readiness, read from the status
the operator wrote (so every replica, leader or not, says the same)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

Bodies = Callable[[], Iterable[Mapping[str, Any]]]


def pool_families(bodies: Iterable[Mapping[str, Any]]) -> list[GaugeMetricFamily]:
    """Gauges of the pools' status: Ready, ready members and all members."""
    ready = GaugeMetricFamily(
        "servicepool_pool_ready",
        "1 while the pool's Ready condition is True (as the operator last wrote it)",
        labels=["namespace", "pool"],
    )
    ready_members = GaugeMetricFamily(
        "servicepool_pool_ready_members", "Members probed healthy", labels=["namespace", "pool"]
    )
    members = GaugeMetricFamily(
        "servicepool_pool_members", "Members of the pool", labels=["namespace", "pool"]
    )
    for body in bodies:
        metadata = body.get("metadata") or {}
        labels = [str(metadata.get("namespace", "")), str(metadata.get("name", ""))]
        status = body.get("status") or {}
        conditions = status.get("conditions") or []
        holds = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        ready.add_metric(labels, 1.0 if holds else 0.0)
        ready_members.add_metric(labels, float(status.get("readyMembers") or 0))
        members.add_metric(labels, float(status.get("totalMembers") or 0))
    return [ready, ready_members, members]


class PoolStatusCollector(Collector):
    """The pool gauges, computed when scraped."""

    def __init__(self, bodies: Bodies) -> None:
        self._bodies = bodies

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from pool_families(list(self._bodies()))


def serve_metrics(address: str, bodies: Bodies) -> Callable[[], None]:
    """Serve /metrics on HOST:PORT in a thread; returns what stops it."""
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    registry.register(PoolStatusCollector(bodies))
    server, thread = start_http_server(int(port), host.strip("[]") or "0.0.0.0", registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
