"""What a request says about where it should go: its model, its affinity key, and (for
cacheAware) the block hashes of its prompt."""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

from servicepool_api.llm_policies import CacheAware
from servicepool_api.prompts import prompt_text
from servicepool_api.signals import document_field, request_document
from servicepool_api.spec import PoolSpec, Strategy
from servicepool_proxy.balancer.keys import RoutingKeys
from servicepool_proxy.balancer.prefix import block_hashes


def cache_aware(spec: PoolSpec) -> CacheAware | None:
    """The cacheAware settings when the pool routes by prompt prefix, else None."""
    if spec.strategy is not Strategy.CACHE_AWARE:
        return None
    return spec.cacheAware or CacheAware()


def reads_routing_keys(spec: PoolSpec) -> bool:
    """True when some rule of the pool routes by what a request says."""
    return spec.models is not None or spec.affinity is not None or cache_aware(spec) is not None


def body_limit(spec: PoolSpec) -> int:
    """How much of a request body to buffer: enough to retry it and to read routing keys."""
    limit = spec.retries.bufferBytes
    if spec.models is not None:
        limit = max(limit, spec.models.maxBodyBytes)
    if spec.affinity is not None and spec.affinity.source == "body":
        limit = max(limit, spec.affinity.maxBodyBytes)
    prefix = cache_aware(spec)
    if prefix is not None:
        limit = max(limit, prefix.maxBodyBytes)
    return limit


def needs_json_body(spec: PoolSpec, content_type: str) -> bool:
    """True when a routing rule reads the JSON body of this request."""
    if "json" not in content_type.lower():
        return False
    return (
        spec.models is not None
        or (spec.affinity is not None and spec.affinity.source == "body")
        or cache_aware(spec) is not None
    )


def cookie_value(cookie_header: str, name: str) -> str | None:
    """One cookie's value from a Cookie header."""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except Exception:  # a malformed Cookie header simply has no key
        return None
    morsel = cookies.get(name)
    return morsel.value if morsel is not None else None


def prompt_prefix(document: Any, prompt: str, policy: CacheAware) -> tuple[int, ...]:
    """The chained block hashes of a request's prompt text (its model first: one model's
    cache is not another's)."""
    model = document.get("model") if isinstance(document, dict) else None
    head = model + "\x00" if isinstance(model, str) else ""
    return block_hashes(head + prompt, policy.blockChars)


def routing_keys(
    spec: PoolSpec, headers: Mapping[str, str], body: bytes | None, kind: str | None = None
) -> RoutingKeys:
    """Read the model, the affinity key and the prompt prefix the pool's rules ask for (the
    JSON body is parsed once); `kind` is the request's, when the pool routes by kind."""
    document = request_document(body) if body else None
    model = None
    if spec.models is not None and document is not None:
        model = document_field(document, spec.models.requestField)
    key = None
    affinity = spec.affinity
    if affinity is not None:
        if affinity.source == "header":
            key = headers.get(affinity.name) or None
        elif affinity.source == "cookie":
            raw = headers.get("Cookie")
            key = cookie_value(raw, affinity.name) if raw else None
        elif document is not None:
            key = document_field(document, affinity.name)
    policy = cache_aware(spec)
    if policy is None or not document:
        return RoutingKeys(model, key, kind=kind)
    prompt = prompt_text(document)
    if prompt is None:
        return RoutingKeys(model, key, kind=kind)
    return RoutingKeys(model, key, prompt_prefix(document, prompt, policy), len(prompt), kind)
