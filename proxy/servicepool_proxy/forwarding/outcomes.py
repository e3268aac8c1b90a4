"""What each member outcome does to the member's standing: every answer and every failure
goes through one `record_outcome()` (balancer bookkeeping, error metrics, ejection log)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.forwarding.faults import CREDENTIAL_REFUSED
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime

log = logging.getLogger("servicepool.proxy")


class Answered:
    """The member answered with a status; `latency` is from sending to its first byte.

    Plain classes with their own __init__: one is made per request, and compiled they are
    made without running Python code (a NamedTuple's __new__ is Python code).
    """

    __slots__ = ("latency", "retry_after", "status")

    def __init__(self, status: int, latency: float, retry_after: float | None = None) -> None:
        self.status = status
        self.latency = latency
        self.retry_after = retry_after  # a 429's Retry-After, in seconds


class Failed:
    """A try failed (`kind` as retryOn names it), before or after the answer began."""

    __slots__ = ("answered", "detail", "kind", "midstream")

    def __init__(
        self, kind: str, detail: str, midstream: bool = False, answered: bool = False
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.midstream = midstream  # the client had the answer's start
        self.answered = answered  # counted as answered at its first byte, failed after it


Outcome = Answered | Failed


class OutcomeRecorder:
    """Records member outcomes for one pool."""

    def __init__(
        self, runtime: PoolRuntime, metrics: ProxyMetrics, clock: Callable[[], float]
    ) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.clock = clock

    def record_outcome(
        self, member: MemberState, outcome: Outcome, trial: bool = False, at: float | None = None
    ) -> None:
        """Count the outcome (seen `at`, default now) toward the member's health, ejection and
        metrics."""
        balancer = self.runtime.balancer
        now = self.clock() if at is None else at
        if isinstance(outcome, Answered):
            status = outcome.status
            if status >= 500:
                ejected = balancer.record_failure(member, f"HTTP {status}", now, trial)
            elif status == 429:
                balancer.record_rate_limited(member, now, outcome.retry_after, trial)
                return
            elif status in (401, 403):  # to the client's credential (the pool sent none)
                balancer.record_auth_error(member, trial)
                return
            else:
                balancer.record_success(member, outcome.latency, now, trial)
                return
        else:
            label = ("midstream-" if outcome.midstream else "") + outcome.kind
            self.metrics.upstream_errors.labels(self.runtime.name, member.name, label).inc()
            if outcome.kind == "status":  # a retried status, already recorded as answered
                return
            if outcome.kind == CREDENTIAL_REFUSED:
                self._note_refusal(member, outcome.detail, now, trial)
                return
            what = f"{outcome.kind}: {outcome.detail}"
            if outcome.midstream:
                ejected = balancer.record_failure(member, f"mid-stream {what}", now, answered=True)
            else:
                ejected = balancer.record_failure(member, what, now, trial, outcome.answered)
        if ejected:
            self._note_ejection(member)

    def _note_refusal(self, member: MemberState, detail: str, now: float, trial: bool) -> None:
        if self.runtime.balancer.record_auth_refused(member, detail, now, trial):
            log.warning(
                "pool %s: member %s refused the pool's credential (%s): AuthFailed, out of "
                "rotation until the credential changes or a re-check in %gs passes",
                self.runtime.name, member.name, detail,
                self.runtime.spec.outlierDetection.authRecheckSeconds,
            )  # fmt: skip

    def _note_ejection(self, member: MemberState) -> None:
        self.metrics.ejections.labels(self.runtime.name, member.name).inc()
        log.warning(
            "pool %s: ejected member %s for %.1fs after %s",
            self.runtime.name,
            member.name,
            member.ejected_until - self.clock(),
            member.last_error,
        )
