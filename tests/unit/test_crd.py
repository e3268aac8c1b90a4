"""The CRD in crds/ is generated from the pydantic model and agrees with it field by field."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from servicepool_api.spec import PoolSpec
from servicepool_api.status import PoolStatus
from servicepool_dev import crd

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "servicepool.dev_servicepools.yaml"


def schema_node(part: str) -> dict[str, Any]:
    document = yaml.safe_load(CRD_FILE.read_text())
    version = document["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]["properties"][part]


def spec_node() -> dict[str, Any]:
    return schema_node("spec")


def test_committed_crd_is_the_generated_one() -> None:
    assert CRD_FILE.read_text() == crd.render(), "run `make crd` and commit the result"
    assert crd.main(["--check", str(CRD_FILE)]) == 0


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _expected_type(annotation: Any) -> str | None:
    annotation = _strip_optional(annotation)
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _expected_type(get_args(annotation)[0])
    if origin is list:
        return "array"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "object"
    if origin is Literal or (isinstance(annotation, type) and issubclass(annotation, str)):
        return "string"
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "number"
    return None  # e.g. int-or-string


def _bounds(field: FieldInfo, expected: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            found["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            found["maximum"] = item.le
        elif isinstance(item, annotated_types.Gt):
            found["minimum"], found["exclusiveMinimum"] = item.gt, True
        elif isinstance(item, annotated_types.MinLen):
            found["minLength" if expected == "string" else "minItems"] = item.min_length
    return found


def check_model(model: type[BaseModel], node: dict[str, Any], path: str) -> int:
    """Recursively compare a model with its schema node; returns fields checked."""
    properties = node.get("properties", {})
    assert set(properties) == set(model.model_fields), (
        path,
        set(properties) ^ set(model.model_fields),
    )
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert set(node.get("required", [])) == required, path
    checked = 0
    for name, field in model.model_fields.items():
        child = properties[name]
        where = f"{path}.{name}"
        expected = _expected_type(field.annotation)
        if expected is None:
            assert child.get("x-kubernetes-int-or-string") or "type" in child, where
        else:
            assert child.get("type") == expected, (where, child.get("type"), expected)
        for key, value in _bounds(field, expected).items():
            if key == "minItems" and expected == "object":
                continue
            assert child.get(key) == value, (where, key, child.get(key), value)
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            assert child.get("default") == {}, where
        elif default is not None and not field.is_required():
            assert child.get("default") == (
                default.value if hasattr(default, "value") else default
            ), where
        inner = _strip_optional(field.annotation)
        if get_origin(inner) is list:
            inner = get_args(inner)[0]
            child = child["items"]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            checked += check_model(inner, child, where)
        literal = _strip_optional(field.annotation)
        if get_origin(literal) is Literal:
            assert child["enum"] == list(get_args(literal)), where
        checked += 1
    return checked


def test_every_model_field_is_in_the_schema_with_matching_type_bounds_and_default() -> None:
    assert check_model(PoolSpec, spec_node(), "spec") > 60


def test_every_status_field_is_in_the_schema_and_conditions_are_a_map_by_type() -> None:
    status = schema_node("status")
    assert check_model(PoolStatus, status, "status") > 15  # it walked the whole model
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]  # a map key must be required
    assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_schema_is_structural() -> None:
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            assert "$ref" not in node and "anyOf" not in node, path
            assert node.get("additionalProperties") is not False, path
            if "properties" in node or "items" in node:
                assert "type" in node, path
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")

    walk(yaml.safe_load(CRD_FILE.read_text()), "crd")


def test_strategy_enum_matches() -> None:
    from servicepool_api.spec import Strategy

    assert spec_node()["properties"]["strategy"]["enum"] == [s.value for s in Strategy]


def test_the_field_reference_is_current() -> None:
    from servicepool_dev import fieldref

    reference = (ROOT / "docs" / "reference.md").read_text()
    assert fieldref.replace_in(reference) == reference, "run `make docs`, commit docs/"
    assert "`members[].weight`" in reference and "`capacity.metrics.queued`" in reference
