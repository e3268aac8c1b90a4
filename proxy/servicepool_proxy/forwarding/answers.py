"""The answers the proxy writes itself, each with a body saying what happened."""

from __future__ import annotations

import json

from servicepool_proxy.forwarding.faults import CREDENTIAL_REFUSED, ClientFault
from servicepool_proxy.http.exchange import Response
from servicepool_proxy.observe.metrics import ProxyMetrics


def error_response(status: int, pool: str, error: str, detail: str) -> Response:
    """A response the proxy writes itself, with a body saying what happened."""
    body = json.dumps({"error": error, "pool": pool, "detail": detail}) + "\n"
    headers = {"X-ServicePool-Error": error}
    if status == 503:
        headers["Retry-After"] = "1"
    return Response(status, body=body.encode(), content_type="application/json", headers=headers)


def credential_refused(metrics: ProxyMetrics, pool: str, detail: str) -> Response:
    """The 502 when every member refused the pool's credential (never a member's 401: the
    client's own token was not what they refused)."""
    metrics.rejected.labels(pool, CREDENTIAL_REFUSED).inc()
    return error_response(
        502, pool, CREDENTIAL_REFUSED,
        "every member refused the pool's credential (spec.upstreamAuth; fix or rotate its "
        f"Secret): {detail}",
    )  # fmt: skip


def client_failed(metrics: ProxyMetrics, pool: str, fault: ClientFault) -> Response:
    """The answer to a client that ended its own exchange; the connection closes."""
    metrics.rejected.labels(pool, fault.reason).inc()
    response = error_response(fault.status, pool, fault.reason, str(fault))
    response.force_close()
    return response
