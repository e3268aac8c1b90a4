"""What every ServicePool API model shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# RFC 1123 subdomain, the shape Kubernetes uses for object names.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
MEMBER_NAME_PATTERN = DNS_SUBDOMAIN_PATTERN


class SpecModel(BaseModel):
    """Base for every API object: unknown fields are errors, names are camelCase."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)
