"""Admission: when no member can take a try, wait in the bounded queue or answer why not."""

from __future__ import annotations

from collections.abc import Callable

from servicepool_proxy.balancer.keys import RoutingKeys
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pool import Unavailable
from servicepool_proxy.forwarding.answers import error_response
from servicepool_proxy.http.exchange import Response
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime
from servicepool_proxy.waitqueue import WaitResult


async def admit(
    runtime: PoolRuntime, metrics: ProxyMetrics, clock: Callable[[], float],
    tried: list[MemberState], start: float, keys: RoutingKeys, choice: Unavailable,
) -> MemberState | Response:  # fmt: skip
    """No member could take this try (`choice` says why): wait in the bounded queue while
    all are busy, or answer with the reason."""
    deadline = start + runtime.spec.queue.timeoutSeconds
    while True:
        if choice.unknown_model is not None:
            metrics.rejected.labels(runtime.name, "unknown-model").inc()
            return error_response(404, runtime.name, "unknown-model", choice.detail)
        if not choice.saturated:
            metrics.rejected.labels(runtime.name, "no-member").inc()
            return error_response(503, runtime.name, "no-member", choice.detail)
        result = await runtime.queue.wait(deadline - clock())
        if result is not WaitResult.WOKEN:
            metrics.rejected.labels(runtime.name, "queue-" + result.name.lower()).inc()
            return error_response(
                503, runtime.name, "saturated", saturated_detail(runtime, result, choice)
            )
        now = clock()
        woken = runtime.balancer.choose(now, tried, keys)
        if isinstance(woken, MemberState):
            metrics.queue_wait.labels(runtime.name).observe(now - start)
            return woken
        choice = woken


def saturated_detail(runtime: PoolRuntime, result: WaitResult, choice: Unavailable) -> str:
    """Why a request that waited for a member got none."""
    if result is WaitResult.QUEUE_FULL:
        return f"{choice.detail}, and the wait queue is full ({runtime.queue.max_waiting})"
    return f"{choice.detail}; no member became free within {runtime.spec.queue.timeoutSeconds:g}s"
