"""Compute a pool's status and decide when it is worth writing (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicepool_api.health import Health
from servicepool_api.status import Condition, ConditionStatus, PoolStatus

from .failing import failing_summary
from .proxies import ProxyPods
from .records import AUTH_FAILED, MemberRecord

# (holds, reason, message) of one condition
Verdict = tuple[bool, str, str]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the pool cannot be (fully) served as specified."""

    reason: str  # InvalidSpec, Conflict
    message: str


def set_condition(
    previous: Sequence[Mapping[str, Any]],
    type_: str,
    verdict: Verdict,
    generation: int,
    now: str,
) -> Condition:
    """A condition; lastTransitionTime moves only when the status flips."""
    holds, reason, message = verdict
    value: ConditionStatus = "True" if holds else "False"
    old = next((c for c in previous if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value else now
    return Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        lastTransitionTime=since,
        observedGeneration=generation,
    )


def ready_verdict(problem: Problem | None, ready: int, total: int) -> Verdict:
    """The Ready condition: True while any member can serve and nothing blocks the pool."""
    if problem is not None:
        return False, problem.reason, problem.message
    if total == 0:
        return False, "NoMembers", "the pool has no members (no Pod matches yet)"
    if ready == 0:
        return False, "NoHealthyMembers", f"0 of {total} members are healthy"
    if ready == total:
        return True, "AllMembersHealthy", f"{ready} of {total} members are healthy"
    return True, "SomeMembersHealthy", f"{ready} of {total} members are healthy"


def degraded_verdict(problem: Problem | None, records: Sequence[MemberRecord]) -> Verdict:
    """The Degraded condition: True when anything is less than fully well."""
    refused = [r.name for r in records if r.state == AUTH_FAILED]
    unhealthy = [r.name for r in records if r.health is Health.UNHEALTHY and r.name not in refused]
    not_healthy = sum(1 for r in records if r.health is not Health.HEALTHY)
    if problem is not None:
        return True, problem.reason, problem.message
    if refused:
        message = (
            "health path refused the operator's probe, which carries no credential (401/403; "
            "probe a path that needs none): " + ", ".join(sorted(refused))
        )
        if unhealthy:
            message += "; unhealthy: " + ", ".join(sorted(unhealthy))
        return True, "MembersAuthFailed", message
    if unhealthy:
        return True, "MembersUnhealthy", "unhealthy: " + ", ".join(sorted(unhealthy))
    if not_healthy:
        return True, "MembersUnknown", f"{not_healthy} member(s) not probed healthy yet"
    return False, "AllMembersHealthy", "every member is healthy"


def build_status(
    *,
    generation: int,
    endpoint: str,
    records: Sequence[MemberRecord],
    problem: Problem | None,
    previous: Mapping[str, Any],
    now: str,
    proxies: ProxyPods | None = None,
) -> PoolStatus:
    """The whole status block for the pool (proxies: None before any were rendered)."""
    total = len(records)
    ready = sum(1 for r in records if r.health is Health.HEALTHY)
    before = previous.get("conditions") or []
    conditions = [
        set_condition(before, "Ready", ready_verdict(problem, ready, total), generation, now),
        set_condition(before, "Degraded", degraded_verdict(problem, records), generation, now),
    ]
    if proxies is not None:
        conditions.append(
            set_condition(before, "ProxyAvailable", proxies.condition(), generation, now)
        )
    return PoolStatus(
        observedGeneration=generation,
        ready=f"{ready}/{total}",
        readyMembers=ready,
        totalMembers=total,
        members=[r.to_status() for r in records],
        conditions=conditions,
        proxies=proxies.summary if proxies is not None else None,
        endpoint=endpoint or None,
        failing=failing_summary(records),
    )


def needs_write(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Write only when the status says something new: a member's state or message, the member
    set, a condition, the proxies or observedGeneration. Nothing in it moves on its own, so a
    pool at rest is never written."""
    return dict(old) != dict(new)
