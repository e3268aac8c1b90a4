"""CEL validation rules: the model's own checks that the API server can make at admission.

Each rule repeats one check of the pydantic model (or of the operator) in CEL, so that a bad
pool is refused by `kubectl apply` instead of being reported later as InvalidSpec. The
fieldPath makes the API server name the field; the message says what is wrong with it. API
servers older than 1.25 drop the rules (they do not know x-kubernetes-validations), and the
operator's InvalidSpec check stays the net. Checks that need the cluster (a Service that
does not exist) stay the operator's alone.
"""

from __future__ import annotations

from typing import Any

Rule = dict[str, str]

# Rules on an object, by the model's class name.
OBJECT_RULES: dict[str, list[Rule]] = {
    "PoolSpec": [
        {
            # The operator's check_not_empty.
            "rule": "(has(self.members) && size(self.members) > 0) || has(self.memberSelector)",
            "message": "the pool has no members and no memberSelector",
            "fieldPath": ".members",
            "reason": "FieldValueRequired",
        }
    ],
    "Member": [
        {
            "rule": "has(self.url) != has(self.service)",
            "message": "set exactly one of url or service",
            "fieldPath": ".url",
        }
    ],
    "HealthCheck": [
        {
            # Both have defaults, but the API server also checks the rule against the
            # healthCheck default ({}) itself, without the fields' own defaults.
            "rule": "!has(self.timeoutSeconds) || !has(self.intervalSeconds)"
            " || self.timeoutSeconds <= self.intervalSeconds",
            "message": "timeoutSeconds must not exceed intervalSeconds",
            "fieldPath": ".timeoutSeconds",
        }
    ],
}

# Rules on one field of an object, by (class name, field name).
FIELD_RULES: dict[tuple[str, str], list[Rule]] = {
    ("PoolSpec", "members"): [
        {
            "rule": "self.all(m, self.exists_one(n, n.name == m.name))",
            "message": "member names must be unique: a name is used more than once",
        }
    ],
}


def object_rules(title: str | None) -> dict[str, Any]:
    """The x-kubernetes-validations of the object a model describes, if it has any."""
    rules = OBJECT_RULES.get(title or "")
    return {"x-kubernetes-validations": rules} if rules else {}


def field_rules(title: str | None, field: str) -> dict[str, Any]:
    """The x-kubernetes-validations of one field of that object, if it has any."""
    rules = FIELD_RULES.get((title or "", field))
    return {"x-kubernetes-validations": rules} if rules else {}
