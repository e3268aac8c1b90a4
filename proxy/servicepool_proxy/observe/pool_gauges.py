"""Pool-wide gauges of one proxy, read from the live pool when scraped: how many members
could take a request now, and how many requests wait for one."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from servicepool_proxy.runtime import PoolRuntime


class PoolGaugeCollector(Collector):
    """servicepool_routable_members and servicepool_queue_waiting of the pool."""

    def __init__(self, runtime: PoolRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runtime = self._runtime
        routable = GaugeMetricFamily(
            "servicepool_routable_members",
            "Members that could take a request now (healthy, not ejected or cooling down)",
            labels=["pool"],
        )
        routable.add_metric([runtime.name], runtime.balancer.routable_count(time.monotonic()))
        waiting = GaugeMetricFamily(
            "servicepool_queue_waiting", "Requests waiting for a free member", labels=["pool"]
        )
        waiting.add_metric([runtime.name], len(runtime.queue))
        yield routable
        yield waiting
