"""The ServicePool API (servicepool.dev/v1alpha1) as pydantic models.

One schema serves the proxy (which reads a pool file) and the operator (which reads the
custom resource). Field names are the camelCase names users write in YAML.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_GROUP = "servicepool.dev"
API_VERSION = "v1alpha1"
KIND = "ServicePool"

# RFC 1123 label, the shape Kubernetes uses for names inside a pool.
MEMBER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
RETRY_CONDITIONS = ("connect-failure", "reset", "timeout")
_STATUS_CODE = re.compile(r"^[45][0-9][0-9]$")


class Strategy(StrEnum):
    """How the proxy picks a member among the available ones of the best tier."""

    ROUND_ROBIN = "roundRobin"
    WEIGHTED_ROUND_ROBIN = "weightedRoundRobin"
    RANDOM = "random"
    LEAST_IN_FLIGHT = "leastInFlight"
    POWER_OF_TWO_CHOICES = "powerOfTwoChoices"
    LATENCY = "latency"
    CAPACITY = "capacity"


class SpecModel(BaseModel):
    """Base for every API object: unknown fields are errors, names are camelCase."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


class ServiceRef(SpecModel):
    """A Kubernetes Service in the pool's namespace, used as one member."""

    name: Annotated[str, Field(pattern=MEMBER_NAME_PATTERN, max_length=63)] = Field(
        description="Name of the Service."
    )
    port: int = Field(ge=1, le=65535, description="Service port to send requests to.")
    scheme: Literal["http", "https"] = Field("http", description="Protocol of the port.")


class Member(SpecModel):
    """One backend instance of the pool: a fixed URL or a Service."""

    name: Annotated[str, Field(pattern=MEMBER_NAME_PATTERN, max_length=253)] = Field(
        description="Unique name of the member inside the pool (a DNS-1123 name)."
    )
    url: str | None = Field(None, description="Base URL of the member, e.g. http://10.0.0.7:8000.")
    service: ServiceRef | None = Field(
        None, description="A Service in the pool's namespace (resolved by the operator)."
    )
    weight: int = Field(1, ge=1, le=1000, description="Relative share of traffic (1-1000).")
    priority: int = Field(
        0,
        ge=0,
        le=100,
        description="Tier; lower is preferred. A worse tier is used only while no member "
        "of a better tier is available.",
    )
    maxInFlight: int = Field(
        0, ge=0, description="Most concurrent requests sent to this member; 0 means no limit."
    )
    models: list[str] = Field(
        default_factory=list, description="Models this member serves (model-aware routing)."
    )

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        return None if value is None else validate_http_url(value)

    @model_validator(mode="after")
    def _one_address(self) -> Member:
        if (self.url is None) == (self.service is None):
            raise ValueError("url: set exactly one of url or service")
        return self


def validate_http_url(value: str) -> str:
    """Return the URL without a trailing slash, or raise ValueError saying what is wrong."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"has a bad port: {value!r}") from exc
    if parts.query or parts.fragment:
        raise ValueError(f"must not carry a query or fragment: {value!r}")
    return value.rstrip("/")


class HealthCheck(SpecModel):
    """Active health probing of each member."""

    path: str = Field("/healthz", pattern=r"^/", description="HTTP path probed with GET.")
    intervalSeconds: float = Field(5, gt=0, le=3600, description="Time between probes.")
    timeoutSeconds: float = Field(1, gt=0, le=600, description="Probe timeout.")
    healthyThreshold: int = Field(
        1, ge=1, le=100, description="Consecutive successes that make a member Healthy."
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


class Retries(SpecModel):
    """Retrying a request on another member before any response byte reached the client."""

    attempts: int = Field(2, ge=0, le=10, description="Retries after the first try.")
    retryOn: list[str] = Field(
        default_factory=lambda: ["connect-failure", "reset", "502", "503", "504"],
        description="Conditions: connect-failure, reset, timeout, or a 4xx/5xx status code.",
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


class MemberSelector(SpecModel):
    """Members discovered from Ready Pods in the pool's namespace that match labels."""

    matchLabels: dict[str, str] = Field(
        min_length=1, description="Pods with all these labels become members."
    )
    port: int = Field(ge=1, le=65535, description="Container port members listen on.")
    scheme: Literal["http", "https"] = Field("http", description="Protocol of the port.")
    weight: int = Field(1, ge=1, le=1000, description="Weight of every discovered member.")
    priority: int = Field(0, ge=0, le=100, description="Tier of every discovered member.")
    maxInFlight: int = Field(0, ge=0, description="Limit of every discovered member.")
    models: list[str] = Field(
        default_factory=list, description="Models every discovered member serves."
    )


Quantity = Annotated[
    str | int,
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


class ProxyResources(SpecModel):
    """Compute resources of each proxy container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "100m", "memory": "128Mi"}
    )
    limits: dict[str, Quantity] = Field(default_factory=lambda: {"memory": "256Mi"})


class ProxyDeployment(SpecModel):
    """The shape of the proxy Deployment the operator runs for the pool."""

    replicas: int = Field(1, ge=0, le=100, description="Proxy Pods.")
    image: str | None = Field(
        None,
        min_length=1,
        description="Proxy image; unset: the operator's own image (its --proxy-image).",
    )
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="Unset: the operator's own pull policy (its --proxy-image-pull-policy)."
    )
    resources: ProxyResources = Field(default_factory=ProxyResources)
    port: int = Field(80, ge=1, le=65535, description="Port of the pool's Service.")


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
        True, description="Learn each member's models from GET {path} (OpenAI shape)."
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
    """Keep requests with the same key on the same member (consistent hashing)."""

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


class PoolSpec(SpecModel):
    """The desired state of a pool."""

    strategy: Strategy = Field(Strategy.ROUND_ROBIN, description="Balancing strategy.")
    members: list[Member] = Field(default_factory=list, description="Members by URL or Service.")
    memberSelector: MemberSelector | None = Field(
        None, description="Also use matching Ready Pods as members."
    )
    healthCheck: HealthCheck = Field(default_factory=HealthCheck)
    outlierDetection: OutlierDetection = Field(default_factory=OutlierDetection)
    retries: Retries = Field(default_factory=Retries)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    queue: Queue = Field(default_factory=Queue)
    limits: Limits = Field(default_factory=Limits)
    memberHeader: bool = Field(
        True, description="Add X-ServicePool-Member: <name> to every response."
    )
    capacity: Capacity | None = Field(None, description="Poll members for their load.")
    models: ModelRouting | None = Field(None, description="Model-aware routing.")
    affinity: Affinity | None = Field(None, description="Session affinity.")
    access: Access | None = Field(None, description="Client authentication and allowed callers.")
    upstreamAuth: UpstreamAuth | None = Field(
        None, description="Credential the proxy sends to members."
    )
    proxy: ProxyDeployment = Field(default_factory=ProxyDeployment)

    @model_validator(mode="after")
    def _member_names_unique(self) -> PoolSpec:
        seen: dict[str, int] = {}
        for index, member in enumerate(self.members):
            if member.name in seen:
                raise ValueError(
                    f"members[{index}].name: duplicate member name {member.name!r} "
                    f"(also members[{seen[member.name]}])"
                )
            seen[member.name] = index
        return self


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata the proxy cares about; the rest is kept as is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field("pool", min_length=1)
    namespace: str | None = None


class ServicePool(SpecModel):
    """A whole ServicePool document, as applied to Kubernetes or written to a pool file."""

    apiVersion: Literal["servicepool.dev/v1alpha1"] = "servicepool.dev/v1alpha1"
    kind: Literal["ServicePool"] = "ServicePool"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PoolSpec
    status: dict[str, Any] | None = Field(None, description="Written by the operator.")
