"""The pool's request handler: who may ask, what is sent on, which members could answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from servicepool_api.kinds import request_kind
from servicepool_api.spec import PoolSpec
from servicepool_proxy.balancer.decisions import Decision, decisions_header
from servicepool_proxy.balancer.keys import NO_KEYS, RoutingKeys
from servicepool_proxy.forwarding.answers import client_failed, error_response
from servicepool_proxy.forwarding.attempts import Attempts
from servicepool_proxy.forwarding.explain import DECISION_HEADER, wants_explanation
from servicepool_proxy.forwarding.faults import ClientFault
from servicepool_proxy.forwarding.outcomes import OutcomeRecorder
from servicepool_proxy.forwarding.relay import Relay
from servicepool_proxy.forwarding.routing_keys import (
    body_limit,
    needs_json_body,
    reads_routing_keys,
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
    Fields,
    Networks,
    is_trusted,
    upstream_request_fields,
)
from servicepool_proxy.http.upstream import UpstreamPool
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.runtime import PoolRuntime


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
        self.metrics = metrics
        self.clock = clock
        self.trusted_proxies = trusted_proxies
        self.budget = budget  # request-body bytes held at once, across all requests
        outcomes = OutcomeRecorder(runtime, metrics, clock)
        relay = Relay(runtime, metrics, outcomes, clock)
        self.attempts = Attempts(runtime, upstream, metrics, outcomes, relay, clock)
        self._keys_spec: PoolSpec | None = None  # the spec _reads_keys was worked out for
        self._reads_keys = False

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
        credential = runtime.upstream_credential
        ours = credential.header() if credential is not None else None
        removed = runtime.kept_with_credential if ours is not None else runtime.kept_from_members
        # Only a 401/403 to the pool's own credential is the pool's problem (attempts.refused);
        # without one, the client's credential goes through and its 401 is the client's.
        version = runtime.credential_version if ours is not None else -1
        headers = upstream_request_fields(
            request.fields, request.remote, request.scheme, request.raw_host,
            is_trusted(request.remote, self.trusted_proxies), removed,
        )  # fmt: skip
        if ours is not None:
            headers.append((ours[0].encode(), ours[1].encode("utf-8", "surrogateescape")))
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
                return client_failed(
                    self.metrics, runtime.name, ClientFault("body-too-large", 413, str(exc))
                )
            except TimeoutError:
                self.metrics.rejected.labels(runtime.name, "body-timeout").inc()
                return error_response(408, runtime.name, "body-timeout",
                                      "the request body did not arrive in time")  # fmt: skip
            if isinstance(body, StreamedBody) and request.content_length is not None:
                headers.append((b"Content-Length", b"%d" % request.content_length))
        try:
            return await self._forward(request, headers, body, start, version)
        finally:
            if body is not None:
                self.budget.give(held_bytes(body))

    async def _forward(
        self, request: Request, headers: Fields, body: bytes | StreamedBody | None,
        start: float, credential: int,
    ) -> Response | StreamResponse:  # fmt: skip
        """Route the request by its keys and run its tries; explained when it asks."""
        keys = self._route(request, body)
        if isinstance(keys, Response):
            return keys
        attempts = self.attempts
        if not wants_explanation(self.runtime, request):
            return await attempts.run(request, headers, body, start, keys, None, credential)
        explained: list[Decision] = []
        answer = await attempts.run(request, headers, body, start, keys, explained, credential)
        if isinstance(answer, Response):  # a stream got the header before it started
            answer.headers[DECISION_HEADER] = decisions_header(explained)
        return answer

    def _route(self, request: Request, body: bytes | StreamedBody | None) -> RoutingKeys | Response:
        """The model, affinity key, prompt prefix and kind the request routes by (or the
        pool's model listing)."""
        runtime = self.runtime
        spec = runtime.spec
        kind = request_kind(request.method, request.path) if runtime.routes_by_kind else None
        if spec is not self._keys_spec:  # once per spec, not per request
            self._keys_spec, self._reads_keys = spec, reads_routing_keys(spec)
        if not self._reads_keys:
            return NO_KEYS if kind is None else RoutingKeys(kind=kind)
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
        return routing_keys(spec, request.headers, readable, kind)

    def _model_listing(self) -> Response:
        """GET /v1/models on the pool: the union of what its members serve, each model owned
        by whom its members say (the first by member name), else by the pool."""
        members = sorted(self.runtime.members, key=lambda m: m.name)
        owners: dict[str, str] = {}
        for member in members:
            for model, owner in member.discovered_models.items():
                if owner:
                    owners.setdefault(model, owner)
        models = sorted(self.runtime.balancer.served_models())
        return json_response({
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": owners.get(m, self.runtime.name)}
                     for m in models],
        })  # fmt: skip
