"""Member health from active probes, as the proxy and the operator both keep it (pure)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Protocol

from .spec import HealthCheck

# Ends the message of a probe the member refused with 401/403 (auth_refused tells).
AUTH_FAILED_NOTE: Final = " (auth-failed)"


def auth_refused(message: str) -> bool:
    """Whether a probe's message says the member refused it with 401/403."""
    return message.endswith(AUTH_FAILED_NOTE)


class Health(StrEnum):
    """Result of active probing."""

    UNKNOWN = "Unknown"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


class ProbeTarget(Protocol):
    """Anything that keeps probe counters: the proxy's members and the operator's records."""

    health: Health
    probe_successes: int
    probe_failures: int
    probe_message: str


def apply_probe(member: ProbeTarget, ok: bool, message: str, check: HealthCheck) -> bool:
    """Fold one active probe result into the member's health; True on a state change."""
    member.probe_message = "" if ok else message
    if ok:
        member.probe_failures = 0
        member.probe_successes += 1
        if member.health is not Health.HEALTHY and member.probe_successes >= check.healthyThreshold:
            member.health = Health.HEALTHY
            return True
        return False
    member.probe_successes = 0
    member.probe_failures += 1
    if member.health is not Health.UNHEALTHY and member.probe_failures >= check.unhealthyThreshold:
        member.health = Health.UNHEALTHY
        return True
    return False
