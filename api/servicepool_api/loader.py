"""Read a ServicePool document from YAML and explain what is wrong with it in one line."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError

from .spec import ServicePool

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A validator message may start with the sub-field it is about: "members[1].name: ...".
_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*"
_SUBFIELD = re.compile(rf"^({_NAME}(?:\.{_NAME})*): ")


class PoolFileError(ValueError):
    """A pool document that cannot be used; the message names the field at fault."""


def format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a field path such as spec.members[1].weight."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _IDENTIFIER.fullmatch(part):
            path += f"[{part!r}]"  # a key no field has, shown so it stays on one line
        else:
            path += f".{part}" if path else str(part)
    return path


def explain_validation_error(error: ValidationError) -> str:
    """One line per problem, each starting with the field path."""
    lines = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        where = format_location(tuple(item["loc"]))
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        sub = _SUBFIELD.match(message)
        if sub:
            where = f"{where}.{sub.group(1)}" if where else sub.group(1)
            message = message[sub.end() :]
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines).replace("\n", "\\n")


def parse_pool(document: Any) -> ServicePool:
    """Validate a decoded document; raise PoolFileError naming the field at fault."""
    if not isinstance(document, dict):
        raise PoolFileError("the document must be a mapping with apiVersion, kind, spec")
    try:
        return ServicePool.model_validate(document)
    except ValidationError as exc:
        raise PoolFileError(explain_validation_error(exc)) from None


def require_urls(pool: ServicePool) -> ServicePool:
    """The proxy sends traffic to URLs: Service and selector members need the operator."""
    if pool.spec.memberSelector is not None:
        raise PoolFileError(
            "spec.memberSelector: the proxy cannot discover Pods itself; the operator "
            "resolves selectors into url members"
        )
    for index, member in enumerate(pool.spec.members):
        if member.url is None:
            raise PoolFileError(
                f"spec.members[{index}].url: the proxy needs a url; service members are "
                "resolved by the operator"
            )
    return pool


def parse_pool_text(text: str) -> ServicePool:
    """Parse YAML (or JSON) text holding one ServicePool."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PoolFileError("not valid YAML: " + " ".join(str(exc).split())) from None
    return require_urls(parse_pool(document))
