"""Compute a pool's status and decide when it is worth writing (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servicepool_proxy.balancer.member import Health

from .proxies import ProxyPods

# Fields that change on every probe (a failing member's count too); alone they justify a
# write at most once a minute.
VOLATILE_MEMBER_FIELDS = frozenset(
    {"lastProbeTime", "latencyMs", "capacity", "consecutiveFailures"}
)
LATENCY_REFRESH_SECONDS = 60.0


def now_iso() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class MemberRecord:
    """The operator's probe history of one member."""

    name: str
    url: str
    health: Health = Health.UNKNOWN
    probe_successes: int = 0
    probe_failures: int = 0
    probe_message: str = ""
    last_probe_time: str | None = None
    last_transition_time: str | None = None
    latency_ms: float | None = None
    capacity: dict[str, Any] | None = None

    def to_status(self) -> dict[str, Any]:
        """The member's entry in status.members."""
        entry: dict[str, Any] = {
            "name": self.name,
            "url": self.url,
            "state": self.health.value,
            "consecutiveFailures": self.probe_failures,
        }
        # Empty strings are left out: the local 1.20 harness decodes "" as null.
        if self.probe_message:
            entry["message"] = self.probe_message
        if self.last_probe_time:
            entry["lastProbeTime"] = self.last_probe_time
        if self.last_transition_time:
            entry["lastTransitionTime"] = self.last_transition_time
        if self.latency_ms is not None:
            entry["latencyMs"] = self.latency_ms
        if self.capacity is not None:
            entry["capacity"] = self.capacity
        return entry

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> MemberRecord:
        """Recover a record from a status entry written earlier (e.g. before a restart)."""
        try:
            health = Health(entry.get("state", "Unknown"))
        except ValueError:
            health = Health.UNKNOWN
        failures = int(entry.get("consecutiveFailures") or 0)
        return cls(
            name=str(entry.get("name", "")),
            url=str(entry.get("url", "")),
            health=health,
            probe_successes=1 if health is Health.HEALTHY else 0,
            probe_failures=failures,
            probe_message=str(entry.get("message") or ""),
            last_probe_time=entry.get("lastProbeTime"),
            last_transition_time=entry.get("lastTransitionTime"),
            latency_ms=entry.get("latencyMs"),
            capacity=entry.get("capacity"),
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the pool cannot be (fully) served as specified."""

    reason: str  # InvalidSpec, Conflict, ApplyFailed
    message: str


def set_condition(
    previous: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> dict[str, Any]:
    """A condition; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    old = next((c for c in previous if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value else now
    return {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def build_status(
    *,
    generation: int,
    endpoint: str,
    records: Sequence[MemberRecord],
    problem: Problem | None,
    previous: Mapping[str, Any],
    now: str,
    proxies: ProxyPods | None = None,
) -> dict[str, Any]:
    """The whole status block for the pool (proxies: None before any were rendered)."""
    total = len(records)
    ready = sum(1 for r in records if r.health is Health.HEALTHY)
    unhealthy = [r.name for r in records if r.health is Health.UNHEALTHY]
    conditions_before = previous.get("conditions") or []

    if problem is not None:
        ready_condition = (False, problem.reason, problem.message)
    elif total == 0:
        ready_condition = (False, "NoMembers", "the pool has no members (no Pod matches yet)")
    elif ready == 0:
        ready_condition = (False, "NoHealthyMembers", f"0 of {total} members are healthy")
    elif ready == total:
        ready_condition = (True, "AllMembersHealthy", f"{ready} of {total} members are healthy")
    else:
        ready_condition = (True, "SomeMembersHealthy", f"{ready} of {total} members are healthy")

    if problem is not None:
        degraded = (True, problem.reason, problem.message)
    elif unhealthy:
        degraded = (True, "MembersUnhealthy", "unhealthy: " + ", ".join(sorted(unhealthy)))
    elif ready < total:
        degraded = (True, "MembersUnknown", f"{total - ready} member(s) not probed healthy yet")
    else:
        degraded = (False, "AllMembersHealthy", "every member is healthy")

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "ready": f"{ready}/{total}",
        "readyMembers": ready,
        "totalMembers": total,
        "members": [r.to_status() for r in records],
        "conditions": [
            set_condition(conditions_before, "Ready", *ready_condition, generation, now),
            set_condition(conditions_before, "Degraded", *degraded, generation, now),
        ],
    }
    if proxies is not None:
        status["proxies"] = proxies.summary
        status["conditions"].append(set_condition(
            conditions_before, "ProxyAvailable", *proxies.condition(), generation, now
        ))  # fmt: skip
    if endpoint:
        status["endpoint"] = endpoint
    return status


def _stable_view(status: Mapping[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in status.items() if k != "members"}
    view["members"] = [
        {k: v for k, v in m.items() if k not in VOLATILE_MEMBER_FIELDS}
        for m in status.get("members") or []
    ]
    return view


def _volatile_moved(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    before = {m.get("name"): m for m in old.get("members") or []}
    for member in new.get("members") or []:
        previous = before.get(member.get("name")) or {}
        for key in ("capacity", "consecutiveFailures"):
            if previous.get(key) != member.get(key):
                return True
        was, now = previous.get("latencyMs"), member.get("latencyMs")
        if (was is None) != (now is None):
            return True
        if was is not None and now is not None and abs(now - was) > max(5.0, 0.25 * was):
            return True
    return False


def needs_write(old: Mapping[str, Any], new: Mapping[str, Any], seconds_since_write: float) -> bool:
    """Write when something real changed; latency or capacity alone at most once a minute."""
    if _stable_view(old) != _stable_view(new):
        return True
    return seconds_since_write >= LATENCY_REFRESH_SECONDS and _volatile_moved(old, new)
