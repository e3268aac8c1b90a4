"""Tries on members: pick one, send, retry on another what may be retried."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from servicepool_proxy.balancer.decisions import Decision
from servicepool_proxy.balancer.keys import RoutingKeys
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pool import Unavailable
from servicepool_proxy.balancer.prefill import Lease
from servicepool_proxy.forwarding.admission import admit
from servicepool_proxy.forwarding.answers import client_failed, credential_refused, error_response
from servicepool_proxy.forwarding.explain import DecisionRecorder
from servicepool_proxy.forwarding.faults import (
    CREDENTIAL_REFUSED,
    AttemptFailed,
    ClientFault,
    attribute,
)
from servicepool_proxy.forwarding.outcomes import Answered, Failed, OutcomeRecorder
from servicepool_proxy.forwarding.relay import Relay, Timing
from servicepool_proxy.http.body import StreamedBody
from servicepool_proxy.http.exchange import Request, Response, StreamResponse
from servicepool_proxy.http.headers import Fields, Names, parse_retry_after
from servicepool_proxy.http.upstream import UpstreamPool
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_IDEMPOTENCY_KEY: Final = Names(frozenset({b"idempotency-key"}))
Body = bytes | StreamedBody | None
# While requests of the same group wait, a newcomer queues behind them (first in, first out).
_BEHIND_EARLIER: Final = Unavailable(True, "earlier requests wait for a member")


def refused(status: int, current: bool) -> None:
    """A 401/403 to the pool's credential: the pool's problem, never relayed (raises). One
    to a credential replaced since it was sent is just retried (the member is not judged)."""
    if current:
        raise AttemptFailed(CREDENTIAL_REFUSED, f"HTTP {status}")
    raise AttemptFailed("status", f"HTTP {status} to a credential replaced since")


class Attempts:
    """Runs the tries of one request on the pool's members."""

    def __init__(
        self, runtime: PoolRuntime, upstream: UpstreamPool, metrics: ProxyMetrics,
        outcomes: OutcomeRecorder, relay: Relay, clock: Callable[[], float],
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.upstream = upstream
        self.metrics = metrics
        self.outcomes = outcomes
        self.relay = relay
        self.clock = clock
        self.recorder = DecisionRecorder(runtime)

    async def run(
        self, request: Request, headers: Fields, body: Body, start: float,
        keys: RoutingKeys, explained: list[Decision] | None = None, credential: int = -1,
    ) -> Response | StreamResponse:  # fmt: skip
        """Pick a member, try, retry what may be retried; the answer or the last failure.

        With `explained`, each try's decision is added to it (and to the response's headers).
        `credential`: the version of the pool's credential in `headers`, -1 for none. A
        member refusing it is a free retry: it counts against no `attempts`.
        """
        runtime = self.runtime
        idempotent = request.method in IDEMPOTENT_METHODS or _IDEMPOTENCY_KEY.among(headers)
        tried: list[MemberState] = []
        failures: list[str] = []
        last_kind: str | None = None  # of the last failure (the exception is not kept: a cycle)
        refusals = 0  # tries whose member refused the pool's credential
        while len(tried) - refusals < runtime.max_tries:
            lease = await self._pick(tried, start, keys, explained)
            if isinstance(lease, Response):  # (after refusals: already why, and counted)
                if last_kind is None or last_kind == CREDENTIAL_REFUSED:
                    return lease
                break
            member = lease.member
            tried.append(member)
            trial = lease.trial
            last = len(tried) - refusals >= runtime.max_tries
            give_up = False  # (no break inside try/finally: mypyc cannot compile it)
            try:
                return await self._attempt(
                    request, lease, headers, body, start, idempotent,
                    status_retry=not last and not isinstance(body, StreamedBody),
                    explained=explained, credential=credential,
                )  # fmt: skip
            except ClientFault as fault:
                return client_failed(self.metrics, runtime.name, fault)
            except AttemptFailed as failure:
                last_kind = failure.kind
                failures.append(f"{member.name}: {failure}")
                failed = Failed(failure.kind, failure.detail, answered=failure.answered)
                self.outcomes.record_outcome(member, failed, trial)
                if failure.kind == CREDENTIAL_REFUSED:
                    refusals += 1
                    last = refusals >= len(runtime.members)
                give_up = last or not self._may_retry(failure, idempotent, body)
                if not give_up:
                    self.metrics.retries.labels(runtime.name, failure.kind).inc()
            finally:
                lease.prefill.done()
                runtime.balancer.release(member, trial)
                runtime.queue.offer()  # the freed slot goes to the oldest waiter
            if give_up:
                break
        assert last_kind is not None
        if last_kind == CREDENTIAL_REFUSED:
            return credential_refused(self.metrics, runtime.name, "; ".join(failures))
        self.metrics.rejected.labels(runtime.name, "upstream-" + last_kind).inc()
        return error_response(
            504 if last_kind == "timeout" else 502, runtime.name, "upstream-failed",
            f"{len(failures)} attempt(s) failed: " + "; ".join(failures),
        )  # fmt: skip

    async def _pick(
        self, tried: list[MemberState], start: float, keys: RoutingKeys,
        explained: list[Decision] | None,
    ) -> Lease | Response:  # fmt: skip
        """The next try's member, taken (after a wait in the queue while all are busy, or
        while earlier requests wait for one), or the answer saying why there is none; the
        decision is recorded either way."""
        runtime = self.runtime
        now = self.clock()
        choice: MemberState | Unavailable = _BEHIND_EARLIER
        if not runtime.queue.waiting(keys.wait_group()):
            choice = runtime.balancer.choose(now, tried, keys)
        if isinstance(choice, MemberState):
            self.recorder.record(now, tried, keys, choice, into=explained)
            return runtime.balancer.begin(choice, now, keys)
        lease = await admit(runtime, self.metrics, self.clock, tried, start, keys, choice)
        pick = lease.member if isinstance(lease, Lease) else None
        self.recorder.record(self.clock(), tried, keys, pick, choice.detail, explained)
        return lease

    def _may_retry(self, failure: AttemptFailed, idempotent: bool, body: Body) -> bool:
        """Whether a failed try (not the last) may be tried again on another member."""
        if isinstance(body, StreamedBody) and body.started:
            return False
        if failure.kind == "status" or failure.kind == CREDENTIAL_REFUSED:
            return True  # a status retry was allowed; a refusing member did nothing
        if failure.kind not in self.runtime.retry_on:
            return False
        return idempotent or failure.kind == "connect-failure"

    async def _attempt(
        self, request: Request, lease: Lease, headers: Fields, body: Body,
        start: float, idempotent: bool, status_retry: bool,
        explained: list[Decision] | None = None, credential: int = -1,
    ) -> Response | StreamResponse:  # fmt: skip
        """One try on one member; raises AttemptFailed or ClientFault (`status_retry`: an
        answer whose status is in retryOn may be retried elsewhere; `credential`: as run's)."""
        member, trial = lease.member, lease.trial
        data = body.chunks() if isinstance(body, StreamedBody) else body
        sent = self.clock()
        try:
            upstream = await self.upstream.request(
                member.url, request.method, request.target, headers, data,
                total_seconds=self.runtime.request_seconds,
                connect_seconds=self.runtime.connect_seconds,
                replayable=idempotent,
            )  # fmt: skip
        except Exception as exc:  # the client's fault, or the member's failure classified
            raise attribute(exc) from exc
        try:
            first_byte = self.clock()
            status = upstream.status
            if credential >= 0 and (status == 401 or status == 403):
                refused(status, credential == self.runtime.credential_version)
            retry_after = None
            if status == 429:
                retry_after = parse_retry_after(upstream.headers.get("Retry-After"), time.time())
            answered = Answered(status, first_byte - sent, retry_after)
            self.outcomes.record_outcome(member, answered, trial, at=first_byte)
            # A 429 means the member did not take the request: safe for any method.
            if (
                status_retry
                and (idempotent or status == 429)
                and str(status) in self.runtime.retry_on
            ):
                raise AttemptFailed("status", f"HTTP {status}")
            return await self.relay(request, upstream, lease, Timing(start, sent), explained)
        finally:
            upstream.release()
