"""The ServicePool API (servicepool.dev/v1alpha1) as pydantic models.

One schema serves the proxy (which reads a pool file) and the operator (which reads the
custom resource). Field names are the camelCase names users write in YAML.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .base import DNS_SUBDOMAIN_PATTERN, MEMBER_NAME_PATTERN, SpecModel
from .kinds import RequestKind
from .llm_policies import Adaptive, CacheAware, Speed, TokenWindow
from .policies import (
    Access,
    Affinity,
    Capacity,
    HealthCheck,
    Limits,
    ModelRouting,
    OutlierDetection,
    Queue,
    Retries,
    Timeouts,
    UpstreamAuth,
)

API_GROUP = "servicepool.dev"
API_VERSION = "v1alpha1"
KIND = "ServicePool"
# Members listed in one spec: bounded so that the API server can afford its uniqueness check.
MAX_MEMBERS = 256

# Request kinds a member serves (each at most once: a set in the CRD).
Capabilities = Annotated[
    list[RequestKind],
    Field(max_length=len(RequestKind), json_schema_extra={"x-kubernetes-list-type": "set"}),
]


class Strategy(StrEnum):
    """How the proxy picks a member among the available ones of the best tier."""

    ROUND_ROBIN = "roundRobin"
    WEIGHTED_ROUND_ROBIN = "weightedRoundRobin"
    RANDOM = "random"
    LEAST_IN_FLIGHT = "leastInFlight"
    POWER_OF_TWO_CHOICES = "powerOfTwoChoices"
    LATENCY = "latency"
    CAPACITY = "capacity"
    CACHE_AWARE = "cacheAware"
    TOKENS = "tokens"
    SPEED = "speed"
    ADAPTIVE = "adaptive"


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
    capabilities: Capabilities = Field(
        default_factory=list,
        description="Request kinds this member serves (chat, completions, embeddings...), "
        "with any its model list names; only requests of these kinds are sent to it. A member "
        "with none serves every kind.",
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
    capabilities: Capabilities = Field(
        default_factory=list, description="Request kinds every discovered member serves."
    )


Quantity = Annotated[
    str | int,
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


class ProxyResources(SpecModel):
    """Compute resources of each proxy container, as in a Pod spec (its only files: its log)."""

    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"}
    )
    limits: dict[str, Quantity] = Field(
        default_factory=lambda: {"memory": "256Mi", "ephemeral-storage": "256Mi"}
    )


class LocalObjectReference(SpecModel):
    """An object in the pool's namespace, by name (as in a Pod's imagePullSecrets)."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Its name."
    )


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
    imagePullSecrets: list[LocalObjectReference] | None = Field(
        None,
        description="Secrets in the pool's namespace for pulling the proxy image; "
        "unset: the operator's --proxy-image-pull-secret names.",
    )
    resources: ProxyResources = Field(default_factory=ProxyResources)
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Processes in each proxy Pod sharing its port (--workers), each "
        "balancing on its own; unset: one per whole CPU of resources.limits.cpu, 1 without "
        "a CPU limit.",
    )
    port: int = Field(80, ge=1, le=65535, description="Port of the pool's Service.")

    def balancers(self) -> int:
        """How many processes balance the pool's requests, each on its own: the replicas'
        worker processes (at least 1)."""
        return max(1, self.replicas) * self.worker_processes()

    def worker_processes(self) -> int:
        """`workers`, or one per whole CPU of the CPU limit (at least 1)."""
        if self.workers is not None:
            return self.workers
        limit = self.resources.limits.get("cpu")
        if limit is None:
            return 1
        text = str(limit)
        try:
            cpus = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:  # not a plain CPU quantity: the API server will say so
            return 1
        return max(1, int(cpus))


class PoolSpec(SpecModel):
    """The desired state of a pool."""

    strategy: Strategy = Field(Strategy.ROUND_ROBIN, description="Balancing strategy.")
    members: list[Member] = Field(
        default_factory=list,
        max_length=MAX_MEMBERS,
        description="Members by URL or Service (at most 256; a memberSelector finds any number).",
    )
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
    cacheAware: CacheAware | None = Field(
        None, description="Settings of strategy cacheAware (defaults when unset)."
    )
    tokens: TokenWindow | None = Field(
        None, description="Settings of strategy tokens (defaults when unset)."
    )
    speed: Speed | None = Field(
        None, description="Settings of strategy speed (defaults when unset)."
    )
    adaptive: Adaptive | None = Field(
        None, description="Settings of strategy adaptive (defaults when unset)."
    )
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
