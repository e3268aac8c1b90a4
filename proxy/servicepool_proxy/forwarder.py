"""The request path: pick a member, forward, retry what may be retried, relay the answer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from yarl import URL

from .admission import WaitResult
from .balancer.member import MemberState
from .balancer.pool import Unavailable
from .body import StreamedBody, read_body
from .headers import (
    MEMBER_HEADER,
    downstream_response_headers,
    parse_retry_after,
    upstream_request_headers,
)
from .metrics import ProxyMetrics
from .runtime import PoolRuntime

log = logging.getLogger("servicepool.proxy")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Responses up to this size are read whole before the client sees a byte, so a member
# failing mid-body can still be retried; larger or unsized responses are streamed.
BUFFERED_RESPONSE_LIMIT = 256 * 1024
# aiohttp would otherwise add these when the client did not send them.
SKIP_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})
NO_BODY_STATUSES = frozenset({204, 304})

_RESET_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
    ConnectionResetError,
)


class AttemptFailed(Exception):
    """One try on one member failed before the client saw a byte."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def classify(exc: BaseException) -> AttemptFailed:
    """Name the failure the way retryOn does: connect-failure, reset or timeout."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return AttemptFailed("connect-failure", str(exc.os_error or exc))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return AttemptFailed("timeout", "no answer in time")
    if isinstance(exc, _RESET_ERRORS):
        return AttemptFailed("reset", str(exc) or type(exc).__name__)
    return AttemptFailed("reset", f"{type(exc).__name__}: {exc}")


def error_response(status: int, pool: str, error: str, detail: str) -> web.Response:
    """A response the proxy writes itself, with a body saying what happened."""
    body = json.dumps({"error": error, "pool": pool, "detail": detail}) + "\n"
    headers = {"X-ServicePool-Error": error}
    if status == 503:
        headers["Retry-After"] = "1"
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


class Forwarder:
    """The aiohttp handler for every request to the pool."""

    def __init__(
        self,
        runtime: PoolRuntime,
        session: aiohttp.ClientSession,
        metrics: ProxyMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.session = session
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        runtime = self.runtime
        spec = runtime.spec
        start = self.clock()
        headers = upstream_request_headers(
            request.headers, request.remote, request.scheme, request.host
        )
        body: bytes | StreamedBody | None = None
        if request.body_exists:
            body = await read_body(
                request.content, request.content_length, spec.retries.bufferBytes
            )
            if isinstance(body, StreamedBody) and request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
        idempotent = request.method in IDEMPOTENT_METHODS or "Idempotency-Key" in headers
        target = request.rel_url.raw_path_qs
        max_tries = 1 + spec.retries.attempts
        tried: list[MemberState] = []
        failures: list[str] = []
        last: AttemptFailed | None = None

        for attempt in range(max_tries):
            member = await self._admit(runtime, tried, start)
            if isinstance(member, web.Response):
                if last is None:
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
                    allow_status_retry=idempotent
                    and attempt + 1 < max_tries
                    and not isinstance(body, StreamedBody),
                )
            except AttemptFailed as failure:
                last = failure
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

        assert last is not None
        status = 504 if last.kind == "timeout" else 502
        self.metrics.rejected.labels(runtime.name, "upstream-" + last.kind).inc()
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

    async def _admit(
        self, runtime: PoolRuntime, tried: list[MemberState], start: float
    ) -> MemberState | web.Response:
        """A member for this try, waiting in the bounded queue while all are busy."""
        deadline = start + runtime.spec.queue.timeoutSeconds
        waited = False
        while True:
            now = self.clock()
            choice = runtime.balancer.choose(now, tried)
            if isinstance(choice, MemberState):
                if waited:
                    self.metrics.queue_wait.labels(runtime.name).observe(now - start)
                return choice
            if not choice.saturated:
                self.metrics.rejected.labels(runtime.name, "no-member").inc()
                return error_response(503, runtime.name, "no-member", choice.detail)
            result = await runtime.queue.wait(deadline - now)
            waited = True
            if result is WaitResult.WOKEN:
                continue
            self.metrics.rejected.labels(runtime.name, "queue-" + result.name.lower()).inc()
            return error_response(
                503, runtime.name, "saturated", _saturated_detail(runtime, result, choice)
            )

    async def _attempt(
        self,
        request: web.Request,
        member: MemberState,
        trial: bool,
        target: str,
        headers: aiohttp.typedefs.LooseHeaders,
        body: bytes | StreamedBody | None,
        start: float,
        allow_status_retry: bool,
    ) -> web.StreamResponse:
        runtime = self.runtime
        balancer = runtime.balancer
        data = body.chunks() if isinstance(body, StreamedBody) else body
        try:
            upstream = await self.session.request(
                request.method,
                URL(member.url + target, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=runtime.timeout,
                skip_auto_headers=SKIP_AUTO_HEADERS,
            )
        except Exception as exc:  # every transport error becomes a classified failure
            raise classify(exc) from exc
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
                balancer.record_success(member, first_byte - start, first_byte, trial)
            if allow_status_retry and str(status) in runtime.retry_on:
                raise AttemptFailed("status", f"HTTP {status}")
            return await self._relay(request, upstream, member, start)
        finally:
            upstream.release()

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        member: MemberState,
        start: float,
    ) -> web.StreamResponse:
        status = upstream.status
        length = upstream.content_length
        no_body = request.method == "HEAD" or status in NO_BODY_STATUSES
        buffered = not no_body and length is not None and length <= BUFFERED_RESPONSE_LIMIT
        headers = downstream_response_headers(upstream.headers, keep_length=no_body)
        if self.runtime.spec.memberHeader:
            headers[MEMBER_HEADER] = member.name

        if buffered:
            try:
                payload = await upstream.read()
            except Exception as exc:
                raise classify(exc) from exc
            response = web.Response(
                status=status, reason=upstream.reason, headers=headers, body=payload
            )
            self.metrics.observe_response(member.name, status, self.clock() - start)
            return response

        response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
        if length is not None and not no_body:
            response.content_length = length
        await response.prepare(request)
        if not no_body:
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                raise  # the client went away; nothing to tell it
            except Exception as exc:
                failure = classify(exc)
                log.warning("member %s failed mid-stream: %s", member.name, failure)
                if self.runtime.balancer.record_failure(
                    member, f"mid-stream {failure}", self.clock()
                ):
                    self._note_ejection(member)
                self.metrics.upstream_errors.labels(
                    self.runtime.name, member.name, "midstream-" + failure.kind
                ).inc()
                self.metrics.observe_response(member.name, status, self.clock() - start)
                # Headers are out: the only honest signal left is an unterminated stream.
                if request.transport is not None:
                    request.transport.close()
                return response
        await response.write_eof()
        self.metrics.observe_response(member.name, status, self.clock() - start)
        return response

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
