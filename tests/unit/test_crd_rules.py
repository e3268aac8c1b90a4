"""The CRD's CEL rules sit where they belong, and the operator refuses the same mistakes.

Servers older than 1.25 drop the rules, so every mistake a rule refuses must also be an
InvalidSpec from the operator, naming the same field.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from servicepool_dev import crd, crd_rules
from servicepool_operator.planning import read_spec

URL = "http://198.18.0.9:8000"


def nodes_with_rules(node: Any, path: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}
    if isinstance(node, dict):
        if "x-kubernetes-validations" in node:
            found[path] = node
        for key, value in node.items():
            found.update(nodes_with_rules(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for value in node:
            found.update(nodes_with_rules(value, path))
    return found


def test_every_rule_is_in_the_generated_crd_once() -> None:
    placed = nodes_with_rules(yaml.safe_load(crd.render()))
    rules = [rule for node in placed.values() for rule in node["x-kubernetes-validations"]]
    expected = [*crd_rules.OBJECT_RULES.values(), *crd_rules.FIELD_RULES.values()]
    assert len(rules) == sum(len(group) for group in expected)


def test_every_field_path_names_a_property_of_the_object_the_rule_is_on() -> None:
    for node in nodes_with_rules(yaml.safe_load(crd.render())).values():
        for rule in node["x-kubernetes-validations"]:
            assert rule["message"] and rule["rule"]
            if "fieldPath" in rule:
                assert rule["fieldPath"].removeprefix(".") in node["properties"], rule


def test_a_rule_on_a_list_of_members_has_a_bound_the_server_can_afford() -> None:
    members = yaml.safe_load(crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]["properties"]["members"]  # fmt: skip
    assert "x-kubernetes-validations" in members and members["maxItems"] <= 256


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"members": [{"name": "a", "url": URL}, {"name": "a", "url": URL}]}, "spec.members[1]"),
        ({"members": []}, "spec.members"),
        ({"members": [{"name": "a", "url": URL, "service": {"name": "s", "port": 80}}]},
         "spec.members[0].url"),
        ({"members": [{"name": "a"}]}, "spec.members[0].url"),
        ({"members": [{"name": "a", "url": URL}],
          "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 2}},
         "spec.healthCheck.timeoutSeconds"),
    ],
)  # fmt: skip
def test_a_pool_a_rule_refuses_is_also_invalid_to_the_operator_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    body = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": spec}
    problem = read_spec(body, [], []).problem
    assert problem is not None and problem.reason == "InvalidSpec"
    assert problem.message.startswith(field), problem.message
