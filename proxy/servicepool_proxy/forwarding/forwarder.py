"""The request path: pick a member, forward, retry what may be retried, relay the answer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from multidict import CIMultiDict

from servicepool_api.signals import find_usage_in_json, find_usage_in_sse
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.pool import Unavailable
from servicepool_proxy.forwarding.admission import WaitResult
from servicepool_proxy.forwarding.faults import (
    AttemptFailed,
    ClientFault,
    attribute,
    classify,
    client_fault,
)
from servicepool_proxy.forwarding.routing_keys import (
    RoutingKeys,
    body_limit,
    needs_json_body,
    routing_keys,
)
from servicepool_proxy.http.body import (
    BodyTooLarge,
    BufferBudget,
    StreamedBody,
    held_bytes,
    read_body,
)
from servicepool_proxy.http.exchange import Request, Response, StreamResponse, json_response
from servicepool_proxy.http.headers import (
    MEMBER_HEADER,
    Networks,
    downstream_response_headers,
    is_trusted,
    parse_retry_after,
    upstream_request_headers,
)
from servicepool_proxy.http.upstream import UpstreamPool, UpstreamResponse
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime

log = logging.getLogger("servicepool.proxy")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Responses up to this size are read whole before the client sees a byte, so a member
# failing mid-body can still be retried; larger or unsized responses are streamed.
BUFFERED_RESPONSE_LIMIT = 256 * 1024
NO_BODY_STATUSES = frozenset({204, 304})

NO_KEYS = RoutingKeys()


class Timing(NamedTuple):
    """When the request arrived, when this try was sent, when its first byte came back."""

    start: float
    sent: float
    first_byte: float


def error_response(status: int, pool: str, error: str, detail: str) -> Response:
    """A response the proxy writes itself, with a body saying what happened."""
    body = json.dumps({"error": error, "pool": pool, "detail": detail}) + "\n"
    headers = {"X-ServicePool-Error": error}
    if status == 503:
        headers["Retry-After"] = "1"
    return Response(status, body=body.encode(), content_type="application/json", headers=headers)


class Forwarder:
    """The handler for every request to the pool."""

    def __init__(
        self,
        runtime: PoolRuntime,
        upstream: UpstreamPool,
        metrics: ProxyMetrics,
        budget: BufferBudget,
        clock: Callable[[], float] = time.monotonic,
        trusted_proxies: Networks = (),
    ) -> None:
        self.runtime = runtime
        self.upstream = upstream
        self.metrics = metrics
        self.clock = clock
        self.trusted_proxies = trusted_proxies
        self.budget = budget  # request-body bytes held at once, across all requests

    async def __call__(self, request: Request) -> Response | StreamResponse:
        runtime = self.runtime
        spec = runtime.spec
        start = self.clock()
        auth = runtime.client_auth
        if auth is not None and not auth.allows(request.headers.get(auth.policy.header)):
            self.metrics.rejected.labels(runtime.name, "unauthorized").inc()
            response = error_response(
                401, runtime.name, "unauthorized", "a valid client token is required"
            )
            response.headers["WWW-Authenticate"] = auth.challenge(runtime.name)
            return response
        headers = upstream_request_headers(
            request.headers, request.remote, request.scheme, request.host,
            is_trusted(request.remote, self.trusted_proxies),
        )  # fmt: skip
        if spec.access is not None:
            headers.popall(spec.access.header, None)  # the pool's credential, not the members'
        credential = runtime.upstream_credential
        if credential is not None:
            header = credential.header()
            if header is not None:
                headers.popall(header[0], None)
                headers[header[0]] = header[1]
        body: bytes | StreamedBody | None = None
        content = request.content
        if content is not None:
            try:
                async with asyncio.timeout(spec.timeouts.requestSeconds):
                    body = await read_body(
                        content, request.content_length, body_limit(spec), self.budget,
                        spec.limits.maxRequestBodyBytes,
                    )  # fmt: skip
            except BodyTooLarge as exc:
                return self._too_large(exc)
            except TimeoutError:
                self.metrics.rejected.labels(runtime.name, "body-timeout").inc()
                return error_response(408, runtime.name, "body-timeout",
                                      "the request body did not arrive in time")  # fmt: skip
            if isinstance(body, StreamedBody) and request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
        try:
            return await self._forward(request, headers, body, start)
        finally:
            self.budget.give(held_bytes(body))

    async def _forward(
        self, request: Request, headers: CIMultiDict[str], body: bytes | StreamedBody | None,
        start: float,
    ) -> Response | StreamResponse:  # fmt: skip
        """Pick a member, try, retry what may be retried; the answer or the last failure."""
        runtime = self.runtime
        spec = runtime.spec
        keys = NO_KEYS
        if spec.models is not None or spec.affinity is not None:
            if (
                spec.models is not None
                and request.method == "GET"
                and (request.path == spec.models.path)
            ):
                return self._model_listing()
            readable = body if isinstance(body, bytes) else None
            if readable is not None and not needs_json_body(
                spec, request.headers.get("Content-Type", "")
            ):
                readable = None
            keys = routing_keys(spec, request.headers, readable)
        idempotent = request.method in IDEMPOTENT_METHODS or "Idempotency-Key" in headers
        target = request.target
        max_tries = 1 + spec.retries.attempts
        tried: list[MemberState] = []
        failures: list[str] = []
        last_kind: str | None = None  # of the last failure (the exception is not kept: a cycle)

        for attempt in range(max_tries):
            choice = runtime.balancer.choose(self.clock(), tried, keys.model, keys.affinity_key)
            member = (
                choice
                if isinstance(choice, MemberState)
                else await self._admit(runtime, tried, start, keys, choice)
            )
            if isinstance(member, Response):
                if last_kind is None:
                    return member
                break
            tried.append(member)
            balancer = runtime.balancer
            trial = balancer.acquire(member, self.clock())
            try:
                return await self._attempt(
                    request,
                    member,
                    trial,
                    target,
                    headers,
                    body,
                    start,
                    idempotent,
                    # A 429 means the member did not take the request: safe for any method.
                    may_retry_status=lambda status, last=attempt + 1 >= max_tries: (
                        not last
                        and not isinstance(body, StreamedBody)
                        and (idempotent or status == 429)
                    ),
                )
            except ClientFault as fault:
                return self._client_failed(fault)
            except AttemptFailed as failure:
                last_kind = failure.kind
                failures.append(f"{member.name}: {failure}")
                self.metrics.upstream_errors.labels(runtime.name, member.name, failure.kind).inc()
                if failure.kind != "status" and balancer.record_failure(
                    member, str(failure), self.clock(), trial
                ):
                    self._note_ejection(member)
                if not self._may_retry(failure, attempt, max_tries, idempotent, body):
                    break
                self.metrics.retries.labels(runtime.name, failure.kind).inc()
            finally:
                balancer.release(member, trial)
                runtime.queue.wake_one()

        assert last_kind is not None
        status = 504 if last_kind == "timeout" else 502
        self.metrics.rejected.labels(runtime.name, "upstream-" + last_kind).inc()
        return error_response(
            status,
            runtime.name,
            "upstream-failed",
            f"{len(failures)} attempt(s) failed: " + "; ".join(failures),
        )

    def _may_retry(
        self,
        failure: AttemptFailed,
        attempt: int,
        max_tries: int,
        idempotent: bool,
        body: bytes | StreamedBody | None,
    ) -> bool:
        if attempt + 1 >= max_tries:
            return False
        if isinstance(body, StreamedBody) and body.started:
            return False
        if failure.kind == "status":
            return True  # only raised when a status retry was allowed
        if failure.kind not in self.runtime.retry_on:
            return False
        return idempotent or failure.kind == "connect-failure"

    def _too_large(self, exc: BodyTooLarge) -> Response:
        """413, and the connection closes: the rest of the body is not read."""
        return self._client_failed(ClientFault("body-too-large", 413, str(exc)))

    def _client_failed(self, fault: ClientFault) -> Response:
        """The answer to a client that ended its own exchange; the connection closes."""
        self.metrics.rejected.labels(self.runtime.name, fault.reason).inc()
        response = error_response(fault.status, self.runtime.name, fault.reason, str(fault))
        response.force_close()
        return response

    def _model_listing(self) -> Response:
        """GET /v1/models on the pool: the union of what its members serve."""
        models = sorted(self.runtime.balancer.served_models())
        return json_response({
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": self.runtime.name} for m in models],
        })  # fmt: skip

    async def _admit(
        self, runtime: PoolRuntime, tried: list[MemberState], start: float, keys: RoutingKeys,
        choice: Unavailable,
    ) -> MemberState | Response:  # fmt: skip
        """No member could take this try (`choice` says why): wait in the bounded queue while
        all are busy, or answer with the reason."""
        deadline = start + runtime.spec.queue.timeoutSeconds
        while True:
            if choice.unknown_model is not None:
                self.metrics.rejected.labels(runtime.name, "unknown-model").inc()
                return error_response(404, runtime.name, "unknown-model", choice.detail)
            if not choice.saturated:
                self.metrics.rejected.labels(runtime.name, "no-member").inc()
                return error_response(503, runtime.name, "no-member", choice.detail)
            result = await runtime.queue.wait(deadline - self.clock())
            if result is not WaitResult.WOKEN:
                self.metrics.rejected.labels(runtime.name, "queue-" + result.name.lower()).inc()
                return error_response(
                    503, runtime.name, "saturated", _saturated_detail(runtime, result, choice)
                )
            now = self.clock()
            woken = runtime.balancer.choose(now, tried, keys.model, keys.affinity_key)
            if isinstance(woken, MemberState):
                self.metrics.queue_wait.labels(runtime.name).observe(now - start)
                return woken
            choice = woken

    async def _attempt(
        self,
        request: Request,
        member: MemberState,
        trial: bool,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | StreamedBody | None,
        start: float,
        idempotent: bool,
        may_retry_status: Callable[[int], bool],
    ) -> Response | StreamResponse:
        runtime = self.runtime
        balancer = runtime.balancer
        timeouts = runtime.spec.timeouts
        data = body.chunks() if isinstance(body, StreamedBody) else body
        sent = self.clock()
        try:
            upstream = await self.upstream.request(
                member.url,
                request.method,
                target,
                headers.items(),
                data,
                total_seconds=timeouts.requestSeconds,
                connect_seconds=timeouts.connectSeconds,
                replayable=idempotent,
            )
        except Exception as exc:  # the client's fault, or the member's failure classified
            raise attribute(exc) from exc
        try:
            first_byte = self.clock()
            status = upstream.status
            if status >= 500:
                if balancer.record_failure(member, f"HTTP {status}", first_byte, trial):
                    self._note_ejection(member)
            elif status == 429:
                retry_after = parse_retry_after(upstream.headers.get("Retry-After"), time.time())
                balancer.record_rate_limited(member, first_byte, retry_after, trial)
            elif status in (401, 403):
                balancer.record_auth_error(member, status, trial)
            else:
                balancer.record_success(member, first_byte - sent, first_byte, trial)
            if str(status) in runtime.retry_on and may_retry_status(status):
                raise AttemptFailed("status", f"HTTP {status}")
            member.stats.first_byte.add(first_byte - sent)
            return await self._relay(request, upstream, member, Timing(start, sent, first_byte))
        finally:
            upstream.release()

    def _finish(
        self,
        member: MemberState,
        status: int,
        timing: Timing,
        usage: dict[str, Any] | None,
        streamed: bool,
    ) -> None:
        now = self.clock()
        member.stats.latency.add(now - timing.sent)
        if usage is not None:
            generating = now - (timing.first_byte if streamed else timing.sent)
            member.stats.record_usage(usage, generating)
        self.metrics.observe_response(member.name, status, now - timing.start)

    async def _relay(
        self,
        request: Request,
        upstream: UpstreamResponse,
        member: MemberState,
        timing: Timing,
    ) -> Response | StreamResponse:
        status = upstream.status
        length = upstream.content_length
        no_body = request.method == "HEAD" or status in NO_BODY_STATUSES
        buffered = not no_body and length is not None and length <= BUFFERED_RESPONSE_LIMIT
        headers = downstream_response_headers(upstream.raw_headers, keep_length=no_body)
        if self.runtime.spec.memberHeader:
            headers[MEMBER_HEADER] = member.name

        if buffered:
            try:
                payload = await upstream.read()
            except Exception as exc:
                raise attribute(exc) from exc
            response = Response(
                status=status, reason=upstream.reason, headers=headers, body=payload
            )
            usage = find_usage_in_json(payload) if "json" in upstream.content_type else None
            self._finish(member, status, timing, usage, streamed=False)
            return response

        stream = StreamResponse(status=status, reason=upstream.reason, headers=headers)
        if length is not None and not no_body:
            stream.content_length = length
        await stream.prepare(request, no_body)
        usage = None
        if not no_body:
            scan = upstream.content_type == "text/event-stream"
            try:
                async for chunk in upstream.iter_any():
                    await stream.write(chunk)
                    if scan:
                        usage = find_usage_in_sse(chunk) or usage
            except ConnectionResetError:
                raise  # the client went away; nothing to tell it
            except Exception as exc:
                fault = client_fault(exc)
                if fault is not None:  # headers are out: cut the stream, blame nobody
                    self.metrics.rejected.labels(self.runtime.name, fault.reason).inc()
                    request.connection.close(graceful=True)
                    return stream
                failure = classify(exc)
                log.warning("member %s failed mid-stream: %s", member.name, failure)
                if self.runtime.balancer.record_failure(
                    member, f"mid-stream {failure}", self.clock()
                ):
                    self._note_ejection(member)
                self.metrics.upstream_errors.labels(
                    self.runtime.name, member.name, "midstream-" + failure.kind
                ).inc()
                self._finish(member, status, timing, None, streamed=True)
                # Headers are out: the only honest signal left is an unterminated stream.
                request.connection.close(graceful=True)
                return stream
        await stream.write_eof()
        self._finish(member, status, timing, usage, streamed=True)
        return stream

    def _note_ejection(self, member: MemberState) -> None:
        self.metrics.ejections.labels(self.runtime.name, member.name).inc()
        log.warning(
            "pool %s: ejected member %s for %.1fs after %s",
            self.runtime.name,
            member.name,
            member.ejected_until - self.clock(),
            member.last_error,
        )


def _saturated_detail(runtime: PoolRuntime, result: WaitResult, choice: Unavailable) -> str:
    if result is WaitResult.QUEUE_FULL:
        return f"{choice.detail}, and the wait queue is full ({runtime.queue.max_waiting})"
    return f"{choice.detail}; no member became free within {runtime.spec.queue.timeoutSeconds:g}s"
