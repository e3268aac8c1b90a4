"""Relay a member's answer to the client: whole when small and sized, streamed otherwise."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from servicepool_api.signals import FirstToken, find_usage_in_json, find_usage_in_sse
from servicepool_proxy.balancer.decisions import Decision, decisions_header
from servicepool_proxy.balancer.prefill import Lease
from servicepool_proxy.forwarding.explain import DECISION_HEADER
from servicepool_proxy.forwarding.faults import AttemptFailed, attribute, classify, client_fault
from servicepool_proxy.forwarding.outcomes import Failed, OutcomeRecorder
from servicepool_proxy.http.exchange import Request, Response, StreamResponse
from servicepool_proxy.http.headers import MEMBER_HEADER, downstream_response_lines, field_line
from servicepool_proxy.http.upstream import UpstreamResponse
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime

log = logging.getLogger("servicepool.proxy")

# Responses up to this size are read whole before the client sees a byte, so a member
# failing mid-body can still be retried; larger or unsized responses are streamed.
BUFFERED_RESPONSE_LIMIT = 256 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
_MEMBER: Final = MEMBER_HEADER.encode()
_DECISION: Final = DECISION_HEADER.encode()
# The member's own headers that the proxy replaces: by (memberHeader, explained).
_REPLACED: Final = {
    (named, explained): frozenset(
        name.lower() for name, on in ((_MEMBER, named), (_DECISION, explained)) if on
    )
    for named in (False, True)
    for explained in (False, True)
}


class Timing:
    """When the request arrived, when this try was sent, when its first token came back (0
    until it has; a plain class: compiled, it is made without running Python code)."""

    __slots__ = ("first_token", "sent", "start")

    def __init__(self, start: float, sent: float) -> None:
        self.start = start
        self.sent = sent
        self.first_token = 0.0


class Relay:
    """Sends members' answers on to clients, and records latency, usage and status."""

    def __init__(
        self, runtime: PoolRuntime, metrics: ProxyMetrics, outcomes: OutcomeRecorder,
        clock: Callable[[], float],
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.metrics = metrics
        self.outcomes = outcomes
        self.clock = clock
        self._member_lines: dict[str, bytes] = {}

    async def __call__(
        self, request: Request, upstream: UpstreamResponse, lease: Lease, timing: Timing,
        explained: list[Decision] | None = None,
    ) -> Response | StreamResponse:  # fmt: skip
        """Relay the answer of the lease's member, and record its time to first token."""
        member = lease.member
        status = upstream.status
        length = upstream.content_length
        no_body = request.method == "HEAD" or status in NO_BODY_STATUSES
        buffered = not no_body and length is not None and length <= BUFFERED_RESPONSE_LIMIT
        named = self.runtime.spec.memberHeader
        replaced = _REPLACED[(named, explained is not None)]
        lines = downstream_response_lines(upstream.raw_headers, no_body, replaced)
        if named:
            lines.append(self._member_line(member.name))
        if not buffered:
            if explained is not None:  # a whole answer gets it from the forwarder, at the end
                decision = decisions_header(explained).encode("utf-8", "surrogateescape")
                lines.append(field_line(_DECISION, decision))
            stream = StreamResponse(status=status, reason=upstream.reason, lines=lines)
            if length is not None and not no_body:
                stream.content_length = length
            await stream.prepare(request, no_body)
            return await self._stream(request, upstream, lease, timing, stream, no_body)
        try:
            payload = await upstream.read()
        except Exception as exc:
            fault = attribute(exc)
            if isinstance(fault, AttemptFailed):
                fault.answered = True  # counted as answered at its first byte
            raise fault from exc
        self._first_token(lease, timing)  # a whole answer's content comes at once
        response = Response(status=status, reason=upstream.reason, lines=lines, body=payload)
        usage = find_usage_in_json(payload) if "json" in upstream.content_type else None
        self._finish(lease, status, timing, usage, streamed=False)
        return response

    def _member_line(self, name: str) -> bytes:
        """The header line naming the member that answered (made once per member)."""
        line = self._member_lines.get(name)
        if line is None:
            if len(self._member_lines) > 4096:
                self._member_lines.clear()
            value = name.encode("utf-8", "surrogateescape")
            line = self._member_lines[name] = field_line(_MEMBER, value)
        return line

    async def _stream(
        self, request: Request, upstream: UpstreamResponse, lease: Lease, timing: Timing,
        stream: StreamResponse, no_body: bool,
    ) -> StreamResponse:  # fmt: skip
        member = lease.member
        usage = None
        if no_body:
            self._first_token(lease, timing)  # the head is the whole answer
        else:
            scan = upstream.content_type == "text/event-stream"
            watch = FirstToken(scan)
            try:
                while chunk := await upstream.readany():
                    if not timing.first_token and watch.found_in(chunk):
                        self._first_token(lease, timing)
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
                self.outcomes.record_outcome(
                    member, Failed(failure.kind, failure.detail, midstream=True)
                )
                self._finish(lease, upstream.status, timing, None, streamed=True)
                # Headers are out: the only honest signal left is an unterminated stream.
                request.connection.close(graceful=True)
                return stream
        await stream.write_eof()
        self._finish(lease, upstream.status, timing, usage, streamed=True)
        return stream

    def _first_token(self, lease: Lease, timing: Timing) -> None:
        """The answer's first token came: its prefill is over; record its time to first token."""
        now = self.clock()
        timing.first_token = now
        lease.prefill.done()
        seconds = now - timing.sent
        lease.member.stats.record_ttft(seconds, now)
        self.metrics.observe_ttft(lease.member.name, seconds)

    def _finish(
        self, lease: Lease, status: int, timing: Timing, usage: dict[str, Any] | None,
        streamed: bool,
    ) -> None:  # fmt: skip
        now = self.clock()
        member = lease.member
        member.stats.latency.add(now - timing.sent)
        if usage is not None:  # tokens/s: the decode rate of a stream, after its first token
            after_first = streamed and timing.first_token > 0
            generating = now - (timing.first_token if after_first else timing.sent)
            member.stats.record_usage(usage, generating, now, after_first)
            self.runtime.balancer.learn(lease, usage)
        self.metrics.observe_response(member.name, status, now - timing.start)
