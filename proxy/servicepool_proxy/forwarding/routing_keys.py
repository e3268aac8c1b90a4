"""What a request says about where it should go: its model and its affinity key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie

from servicepool_api.signals import request_field
from servicepool_api.spec import PoolSpec


@dataclass(frozen=True, slots=True)
class RoutingKeys:
    """The model a request asks for and its session key (either may be absent)."""

    model: str | None = None
    affinity_key: str | None = None


def body_limit(spec: PoolSpec) -> int:
    """How much of a request body to buffer: enough to retry it and to read routing keys."""
    limit = spec.retries.bufferBytes
    if spec.models is not None:
        limit = max(limit, spec.models.maxBodyBytes)
    if spec.affinity is not None and spec.affinity.source == "body":
        limit = max(limit, spec.affinity.maxBodyBytes)
    return limit


def needs_json_body(spec: PoolSpec, content_type: str) -> bool:
    """True when a routing rule reads the JSON body of this request."""
    if "json" not in content_type.lower():
        return False
    return spec.models is not None or (spec.affinity is not None and spec.affinity.source == "body")


def cookie_value(cookie_header: str, name: str) -> str | None:
    """One cookie's value from a Cookie header."""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except Exception:  # a malformed Cookie header simply has no key
        return None
    morsel = cookies.get(name)
    return morsel.value if morsel is not None else None


def routing_keys(spec: PoolSpec, headers: Mapping[str, str], body: bytes | None) -> RoutingKeys:
    """Read the model and the affinity key the pool's rules ask for."""
    model = None
    if spec.models is not None and body:
        model = request_field(body, spec.models.requestField)
    key = None
    affinity = spec.affinity
    if affinity is not None:
        if affinity.source == "header":
            key = headers.get(affinity.name) or None
        elif affinity.source == "cookie":
            raw = headers.get("Cookie")
            key = cookie_value(raw, affinity.name) if raw else None
        elif body:
            key = request_field(body, affinity.name)
    return RoutingKeys(model, key)
