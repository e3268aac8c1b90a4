"""values.schema.json covers every value: a wrong one fails `helm template` and `helm lint`
naming it, and the defaults and the README's documented `--set` examples pass."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml

from servicepool_operator.cli import build_parser

from .test_chart import CHART, ROOT, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """The schema node a `$ref` names (only refs into this file's definitions)."""
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def uncovered(values: dict[str, Any], node: dict[str, Any], path: str = "") -> list[str]:
    """Keys of `values` that the schema does not describe, where the schema owns the shape."""
    node = resolve(node)
    if node.get("additionalProperties") is not False:
        return []  # open: a Kubernetes object or a map the user fills
    missing = []
    for key, value in values.items():
        child = node.get("properties", {}).get(key)
        if child is None:
            missing.append(f"{path}{key}")
        elif isinstance(value, dict):
            missing += uncovered(value, child, f"{path}{key}.")
    return missing


def test_the_schema_describes_every_value() -> None:
    assert uncovered(VALUES, SCHEMA) == []


def test_every_value_the_chart_owns_has_a_type() -> None:
    def untyped(node: dict[str, Any], path: str) -> list[str]:
        node = resolve(node)
        own = [] if "type" in node else [path]
        return own + [p for key, child in node.get("properties", {}).items()
                      for p in untyped(child, f"{path}.{key}")]  # fmt: skip

    assert untyped(SCHEMA, "values") == []


@pytest.mark.parametrize(
    ("flag", "path"),
    [("--log-format", ("logFormat",)), ("--proxy-image-pull-policy", ("image", "pullPolicy"))],
)
def test_the_schemas_choices_are_the_operators(flag: str, path: tuple[str, ...]) -> None:
    (action,) = [a for a in build_parser()._actions if flag in a.option_strings]
    node = SCHEMA
    for key in path:
        node = resolve(node)["properties"][key]
    assert node["enum"] == list(action.choices)


def readme_set_examples() -> list[str]:
    """Every `--set KEY=VALUE` of the top-level README's install instructions, as the shell
    passes it (quotes removed)."""
    text = (ROOT / "README.md").read_text()
    found = [word.replace("'", "") for word in re.findall(r"--set (\S+)", text)]
    assert len(found) >= 5, found
    return found


@pytest.mark.parametrize("expression", readme_set_examples())
def test_a_documented_example_passes(expression: str) -> None:
    values = helm.parse_set_string(expression)
    assert render(values)
    assert helm.lint(str(CHART), values, strict=True)["errors"] == []


def test_the_defaults_pass() -> None:
    assert render({}) and render(VALUES)


WRONG = [
    ({"replicas": "two"}, "/replicas"),
    ({"replicas": -1}, "/replicas"),
    ({"replica": 2}, "'replica'"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"repository": ""}}, "/image/repository"),
    ({"logFormat": "xml"}, "/logFormat"),
    ({"healthPort": 0}, "/healthPort"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"leaderElection": {"enabled": "yes"}}, "/leaderElection/enabled"),
    ({"imagePullSecrets": [{"secret": "regcred"}]}, "/imagePullSecrets/0"),
    ({"podMonitor": {"interval": "15 seconds"}}, "/podMonitor/interval"),
    ({"monitoring": {"prometheusRule": {"errorRatio": 5}}},
     "/monitoring/prometheusRule/errorRatio"),
    ({"podAnnotations": {"a": 1}}, "/podAnnotations/a"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "named"), WRONG, ids=[named for _, named in WRONG])
def test_a_wrong_value_fails_template_and_lint_naming_it(values: dict, named: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(named)):
        render(values)
    errors = helm.lint(str(CHART), values, strict=True)["errors"]
    assert errors and any(named in error for error in errors), errors
