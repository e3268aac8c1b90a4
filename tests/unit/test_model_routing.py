"""Which pools route by model and discover members' models: a table over plain specs."""

from __future__ import annotations

import pytest

from servicepool_api.spec import PoolSpec
from servicepool_proxy.balancer.model_routing import discovery, routing_spec

A = {"name": "a", "url": "http://127.0.0.1:1"}
B = {"name": "b", "url": "http://127.0.0.1:2"}


@pytest.mark.parametrize(
    ("spec", "routes_by_model", "discovers"),
    [
        ({"members": [A, B]}, False, None),  # until a member lists models (below)
        ({"members": [{**A, "models": ["m"]}, B]}, True, False),
        ({"members": [A, B], "models": {}}, True, True),
        ({"members": [{**A, "models": ["m"]}], "models": {"discover": True}}, True, True),
        ({"members": [{**A, "models": ["m"]}], "models": {"discover": False}}, True, False),
    ],
)
def test_model_routing_is_on_when_the_spec_asks_or_any_member_declares_models(
    spec: dict, routes_by_model: bool, discovers: bool | None
) -> None:
    routed = routing_spec(PoolSpec.model_validate(spec))
    assert (routed.models is not None) == routes_by_model
    assert (routed.models.discover if routed.models else None) == discovers


def test_a_spec_that_already_routes_by_model_is_kept_as_it_is() -> None:
    spec = PoolSpec.model_validate({"members": [A], "models": {"requestField": "x.model"}})
    assert routing_spec(spec) is spec


@pytest.mark.parametrize(
    ("spec", "listed", "routes_by_model", "polled"),
    [
        # no spec.models, no declared models: discovered by default, routed once listed
        ({"members": [A, B]}, False, False, "/v1/models"),
        ({"members": [A, B]}, True, True, "/v1/models"),
        # declared models are the whole truth: nothing is polled
        ({"members": [{**A, "models": ["m"]}, B]}, True, True, None),
        ({"members": [A], "models": {"path": "/models"}}, False, True, "/models"),
        # discovery off and nothing declared: no model routing (the opt-out)
        ({"members": [A], "models": {"discover": False}}, True, False, None),
    ],
)
def test_members_model_lists_are_discovered_by_default_and_route_once_one_lists_a_model(
    spec: dict, listed: bool, routes_by_model: bool, polled: str | None
) -> None:
    pool = PoolSpec.model_validate(spec)
    assert (routing_spec(pool, listed).models is not None) == routes_by_model
    found = discovery(pool)
    assert (found.path if found else None) == polled
