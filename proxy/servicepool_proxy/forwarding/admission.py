"""Admission: when no member can take a try, wait in the bounded queue or answer why not."""

from __future__ import annotations

from collections.abc import Callable

from servicepool_proxy.balancer.keys import RoutingKeys
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pool import Unavailable
from servicepool_proxy.balancer.prefill import Lease
from servicepool_proxy.forwarding.answers import credential_refused, error_response
from servicepool_proxy.http.exchange import Response
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime
from servicepool_proxy.waitqueue import WaitResult


async def admit(
    runtime: PoolRuntime, metrics: ProxyMetrics, clock: Callable[[], float],
    tried: list[MemberState], start: float, keys: RoutingKeys, choice: Unavailable,
) -> Lease | Response:  # fmt: skip
    """No member could take this try (`choice` says why): wait in the bounded queue while
    all are busy, until a freed slot is handed over, or answer with the reason."""
    refused = refusal(runtime, metrics, choice)
    if refused is not None:
        return refused
    balancer = runtime.balancer

    def claim() -> Lease | Unavailable | None:
        """This request's member, taken at once; None while every one is busy."""
        now = clock()
        picked = balancer.choose(now, tried, keys)
        if isinstance(picked, MemberState):
            return balancer.begin(picked, now, keys)
        return None if picked.saturated else picked

    deadline = start + runtime.spec.queue.timeoutSeconds
    handed = await runtime.queue.wait(deadline - clock(), start, keys.wait_group(), claim)
    if isinstance(handed, Lease):
        metrics.queue_wait.labels(runtime.name).observe(clock() - start)
        return handed
    if isinstance(handed, Unavailable):  # the members changed while it waited
        return refusal(runtime, metrics, handed) or error_response(
            503, runtime.name, "no-member", handed.detail
        )
    metrics.rejected.labels(runtime.name, "queue-" + handed.name.lower()).inc()
    return error_response(503, runtime.name, "saturated", saturated_detail(runtime, handed, choice))


def refusal(runtime: PoolRuntime, metrics: ProxyMetrics, choice: Unavailable) -> Response | None:
    """The answer when waiting cannot help (no member serves the model or the request's
    kind, or none is up)."""
    if choice.credential_refused:
        return credential_refused(metrics, runtime.name, choice.detail)
    if choice.unknown_model is not None:
        metrics.rejected.labels(runtime.name, "unknown-model").inc()
        return error_response(404, runtime.name, "unknown-model", choice.detail)
    if choice.unserved_kind is not None:
        metrics.rejected.labels(runtime.name, "unserved-kind").inc()
        return error_response(404, runtime.name, "unserved-kind", choice.detail)
    if not choice.saturated:
        metrics.rejected.labels(runtime.name, "no-member").inc()
        return error_response(503, runtime.name, "no-member", choice.detail)
    return None


def saturated_detail(runtime: PoolRuntime, result: WaitResult, choice: Unavailable) -> str:
    """Why a request that waited for a member got none."""
    if result is WaitResult.QUEUE_FULL:
        return f"{choice.detail}, and the wait queue is full ({runtime.queue.max_waiting})"
    return f"{choice.detail}; no member became free within {runtime.spec.queue.timeoutSeconds:g}s"
