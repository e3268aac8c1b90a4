"""The pool's status as the operator writes it (typed); the CRD's status schema comes from here.

Fields are optional in the schema, as Kubernetes status fields are (`omitempty`): clients and
tests may patch part of a status. The operator itself always writes the whole block.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from pydantic.json_schema import JsonDict

ConditionStatus = Literal["True", "False", "Unknown"]

# Kept through API round trips: an older or newer operator may write fields this one lacks.
PRESERVE_UNKNOWN: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}
# Conditions merge by type, as Kubernetes lists of conditions do.
MAP_BY_TYPE: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class StatusModel(BaseModel):
    """A part of the status. Written without None and without empty strings: the local
    1.20 harness decodes "" as null, which would read back as a change."""

    @model_serializer(mode="wrap")
    def _without_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None and v != ""}


class MemberStatus(StatusModel):
    """One member as the operator last probed it: its state and why, nothing that moves on
    every probe (latency, load, failure counts and probe times would make every pool at rest
    write its status)."""

    model_config = ConfigDict(json_schema_extra=PRESERVE_UNKNOWN)

    name: str | None = Field(None, description="The member's name.")
    url: str | None = Field(None, description="The URL the proxies send its requests to.")
    state: str | None = Field(
        None,
        description="Healthy, Unhealthy, AuthFailed (its health path refused the operator's "
        "probe with 401/403) or Unknown (not probed).",
    )
    message: str | None = Field(None, description="Why it became Unhealthy.")
    lastTransitionTime: str | None = Field(None, description="When its state last changed.")


class Condition(StatusModel):
    """One aspect of the pool's state: Ready, Degraded or ProxyAvailable."""

    type: str = Field(description="Ready, Degraded or ProxyAvailable.")
    status: ConditionStatus = Field(description="Whether it holds.")
    reason: str | None = Field(None, description="Why, in one CamelCase word.")
    message: str | None = Field(None, description="Why, in words.")
    lastTransitionTime: str | None = Field(None, description="When status last changed.")
    observedGeneration: int | None = Field(None, description="The generation it describes.")


class PoolStatus(StatusModel):
    """What the operator observed of the pool: members, health, proxies and conditions."""

    model_config = ConfigDict(json_schema_extra=PRESERVE_UNKNOWN)

    observedGeneration: int | None = Field(None, description="The generation last acted on.")
    ready: str | None = Field(None, description="Healthy members over all members, e.g. 2/3.")
    readyMembers: int | None = Field(None, description="How many members are healthy.")
    totalMembers: int | None = Field(None, description="How many members the pool has.")
    members: list[MemberStatus] | None = Field(None, description="Every member, in spec order.")
    conditions: list[Condition] | None = Field(
        None,
        description="Ready, Degraded and ProxyAvailable, one of each.",
        json_schema_extra=MAP_BY_TYPE,
    )
    proxies: str | None = Field(None, description="Ready proxy Pods over wanted, e.g. 2/2.")
    endpoint: str | None = Field(None, description="The pool's in-cluster URL.")
    failing: str | None = Field(
        None, description="The first unhealthy member and why (+N more); unset when none fails."
    )

    def to_api(self) -> dict[str, Any]:
        """The status as JSON for the API."""
        return self.model_dump(mode="json")
