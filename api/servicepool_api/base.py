"""What every ServicePool API model shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# RFC 1123 label, the shape Kubernetes uses for names inside a pool.
MEMBER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class SpecModel(BaseModel):
    """Base for every API object: unknown fields are errors, names are camelCase."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)
