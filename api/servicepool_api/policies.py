"""The pool's policies as API models: health, ejection, retries, time and size limits, the
queue, load signals, model routing, affinity, and access."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import MEMBER_NAME_PATTERN, SpecModel

RETRY_CONDITIONS = ("connect-failure", "reset", "timeout")
_STATUS_CODE = re.compile(r"^[45][0-9][0-9]$")


class HealthCheck(SpecModel):
    """Active health probing of each member."""

    path: str = Field("/healthz", pattern=r"^/", description="HTTP path probed with GET.")
    intervalSeconds: float = Field(5, gt=0, le=3600, description="Time between probes.")
    timeoutSeconds: float = Field(1, gt=0, le=600, description="Probe timeout.")
    healthyThreshold: int = Field(
        1,
        ge=1,
        le=100,
        description="Consecutive successes that make a member Healthy, and that end a passive "
        "ejection early (the member then takes one trial request, as in Envoy).",
    )
    unhealthyThreshold: int = Field(
        2, ge=1, le=100, description="Consecutive failures that make a member Unhealthy."
    )
    enabled: bool = Field(True, description="Probe members at all.")

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> HealthCheck:
        if self.timeoutSeconds > self.intervalSeconds:
            raise ValueError(
                f"timeoutSeconds: {self.timeoutSeconds} must not exceed intervalSeconds "
                f"({self.intervalSeconds})"
            )
        return self


class OutlierDetection(SpecModel):
    """Passive health: eject members that fail real requests."""

    consecutiveFailures: int = Field(
        5, ge=1, le=1000, description="Consecutive failed requests that eject a member."
    )
    baseEjectionSeconds: float = Field(
        30, gt=0, le=3600, description="First ejection time; grows with repeated ejections."
    )
    maxEjectionSeconds: float = Field(300, gt=0, le=86400, description="Longest ejection time.")
    maxEjectionPercent: int = Field(
        50, ge=0, le=100, description="Most members (percent) ejected at once; at least one."
    )
    rateLimitCooldownSeconds: float = Field(
        1, ge=0, le=3600, description="Cool-down after a 429 without Retry-After."
    )
    authRecheckSeconds: float = Field(
        30,
        gt=0,
        le=3600,
        description="A member that refused the pool's credential (upstreamAuth) with 401/403 "
        "is AuthFailed, out of rotation, until one request after this long shows it accepts "
        "the credential again (or the credential changes).",
    )


class Retries(SpecModel):
    """Retrying a request on another member before any response byte reached the client."""

    attempts: int = Field(2, ge=0, le=10, description="Retries after the first try.")
    retryOn: list[str] = Field(
        default_factory=lambda: ["connect-failure", "reset", "429", "502", "503", "504"],
        description="Conditions: connect-failure, reset, timeout, or a 4xx/5xx status code "
        "(a 429 is retried for any method: the member did not take the request).",
    )
    bufferBytes: int = Field(
        8 << 20,
        ge=0,
        le=64 << 20,
        description="Request bodies up to this size are received whole before a member is "
        "picked, so they can be retried and a slow upload holds no member (while the proxy "
        "holds less than --body-buffer-bytes of them); larger bodies stream.",
    )

    @field_validator("retryOn")
    @classmethod
    def _known_conditions(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in RETRY_CONDITIONS and not _STATUS_CODE.match(value):
                raise ValueError(
                    f"unknown retry condition {value!r}; use one of "
                    f'{", ".join(RETRY_CONDITIONS)} or a status code such as "503"'
                )
        return values


class Timeouts(SpecModel):
    """Time limits for talking to members."""

    connectSeconds: float = Field(2, gt=0, le=300, description="TCP connect timeout.")
    requestSeconds: float = Field(
        300, gt=0, le=86400, description="Whole exchange with one member, body included."
    )


class Limits(SpecModel):
    """What a client may send."""

    maxRequestBodyBytes: int = Field(
        0, ge=0, description="Largest request body accepted (413 beyond); 0 means no limit."
    )


class Queue(SpecModel):
    """Where requests wait while every available member is at maxInFlight."""

    maxWaiting: int = Field(1000, ge=0, le=1_000_000, description="Queue length bound.")
    timeoutSeconds: float = Field(30, ge=0, le=3600, description="Longest wait in the queue.")


class CapacityFields(SpecModel):
    """Where the load numbers sit in a JSON status document (dotted paths)."""

    queued: str = Field("queued", min_length=1, description="Requests waiting.")
    running: str = Field("dispatched", min_length=1, description="Requests being served.")
    workers: str = Field(
        "active_workers", min_length=1, description="Requests the member can serve at once."
    )


class CapacityMetrics(SpecModel):
    """Prometheus metric names carrying the load numbers (vLLM's by default)."""

    queued: str = Field("vllm:num_requests_waiting", min_length=1)
    running: str = Field("vllm:num_requests_running", min_length=1)
    workers: str | None = Field(None, description="Metric with the concurrent capacity.")
    cacheUsage: str | None = Field(
        "vllm:gpu_cache_usage_perc", description="Metric with KV-cache usage (0-1)."
    )


class Capacity(SpecModel):
    """Capacity signal: the proxy polls each member's own view of its load."""

    source: Literal["status", "metrics"] = Field(
        "status", description="A JSON status endpoint, or a Prometheus metrics endpoint."
    )
    path: str | None = Field(
        None, pattern=r"^/", description="Defaults to /v1/status (status) or /metrics."
    )
    intervalSeconds: float = Field(1, ge=0.05, le=60, description="Polling interval.")
    staleAfterSeconds: float = Field(
        3, gt=0, le=600, description="A report older than this is ignored."
    )
    fields: CapacityFields = Field(default_factory=CapacityFields)
    metrics: CapacityMetrics = Field(default_factory=CapacityMetrics)
    maxCacheUsage: float = Field(
        0.98, gt=0, le=1, description="KV-cache usage at which a member counts as full."
    )

    def endpoint(self) -> str:
        """The path polled on every member."""
        return self.path or ("/v1/status" if self.source == "status" else "/metrics")


class ModelRouting(SpecModel):
    """Send a request only to members serving the model it names."""

    discover: bool = Field(
        True,
        description="Learn each member's models from GET {path} (OpenAI shape). Without a "
        "models block the proxy discovers them unless members declare models; false with no "
        "declared models turns model routing off.",
    )
    path: str = Field("/v1/models", pattern=r"^/", description="Model listing path.")
    intervalSeconds: float = Field(30, ge=1, le=3600, description="Re-discovery interval.")
    requestField: str = Field(
        "model", min_length=1, description="JSON body field naming the model (dotted path)."
    )
    maxBodyBytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="Largest body read to find the model."
    )


class Affinity(SpecModel):
    """Keep requests with the same key on the same member (weighted rendezvous hashing:
    each member homes a share of keys in proportion to its weight, the same on every
    replica)."""

    source: Literal["header", "cookie", "body"] = Field(description="Where the key comes from.")
    name: str = Field(
        min_length=1, description="Header name, cookie name, or JSON body field (dotted path)."
    )
    loadFactor: float = Field(
        1.25,
        ge=1,
        le=10,
        description="Bounded load: a member takes at most this times the mean in-flight.",
    )
    ttlSeconds: float = Field(
        0, ge=0, le=86400, description="Remember key-to-member choices this long; 0 = off."
    )
    maxBodyBytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="Largest body read to find a body key."
    )


class SecretKeyRef(SpecModel):
    """A key of a Secret in the pool's namespace (mounted into the proxy, never rendered)."""

    secretName: Annotated[str, Field(pattern=MEMBER_NAME_PATTERN, max_length=253)] = Field(
        description="Name of the Secret."
    )
    key: str = Field(
        pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key inside the Secret."
    )


class Access(SpecModel):
    """Who may call the pool: client credentials and the namespaces allowed to connect."""

    tokens: SecretKeyRef | None = Field(
        None, description="Accepted client tokens, one per line; no tokens means no check."
    )
    header: str = Field(
        "Authorization", pattern=r"^[A-Za-z0-9-]+$", description="Header carrying the token."
    )
    scheme: Literal["Bearer", "None"] = Field(
        "Bearer", description="Bearer: 'Authorization: Bearer <token>'; None: the raw header value."
    )
    allowedNamespaces: list[str] | None = Field(
        None,
        description="Only Pods in these namespaces may reach the proxy (rendered as a "
        "NetworkPolicy); unset means no NetworkPolicy.",
    )


class UpstreamAuth(SpecModel):
    """The members' own credential, injected by the proxy (the client's is stripped)."""

    secret: SecretKeyRef = Field(description="Where the credential value is.")
    header: str = Field(
        "Authorization", pattern=r"^[A-Za-z0-9-]+$", description="Header to set on members."
    )
    prefix: str | None = Field("Bearer ", description="Put before the value, e.g. 'Bearer '.")
