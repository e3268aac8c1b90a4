"""When the proxy routes by model: spec.models, members that declare models, or members that
list models at GET /v1/models (discovered with no spec.models)."""

from __future__ import annotations

from servicepool_api.policies import ModelRouting
from servicepool_api.spec import PoolSpec

# Members that declare models route by them with no spec.models block: the default request
# field and body limit, and no discovery (the declared lists are the whole truth).
IMPLIED = ModelRouting(discover=False)
# Neither: the defaults, discovering, and routing by model once some member lists one.
DISCOVERED = ModelRouting()


def discovery(spec: PoolSpec) -> ModelRouting | None:
    """Where and how often members' model lists are read, or None when they are not."""
    if spec.models is not None:
        return spec.models if spec.models.discover else None
    return None if any(member.models for member in spec.members) else DISCOVERED


def routing_spec(spec: PoolSpec, listed: bool = False) -> PoolSpec:
    """The spec the proxy routes by: with model routing on when any member declares models,
    or (`listed`) some member listed models at GET /v1/models; off when spec.models turns
    discovery off and no member declares models (nothing to route by)."""
    declared = any(member.models for member in spec.members)
    if spec.models is not None:
        if spec.models.discover or declared:
            return spec
        return spec.model_copy(update={"models": None})
    if declared:
        return spec.model_copy(update={"models": IMPLIED})
    return spec.model_copy(update={"models": DISCOVERED}) if listed else spec
