"""When the proxy routes by model: spec.models, or members that declare models."""

from __future__ import annotations

from servicepool_api.policies import ModelRouting
from servicepool_api.spec import PoolSpec

# Members that declare models route by them with no spec.models block: the default request
# field and body limit, and no discovery (the declared lists are the whole truth).
IMPLIED = ModelRouting(discover=False)


def routing_spec(spec: PoolSpec) -> PoolSpec:
    """The spec the proxy routes by: with model routing on when any member declares models."""
    if spec.models is not None or not any(member.models for member in spec.members):
        return spec
    return spec.model_copy(update={"models": IMPLIED})
