"""The operator's probe history of a pool's members, and how probe results fold into it (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicepool_api.health import Health, apply_probe, auth_refused
from servicepool_api.policies import HealthCheck
from servicepool_api.spec import Member
from servicepool_api.status import MemberStatus

# A member is due when this share of the interval has passed (passes run a little early).
DUE_SHARE = 0.9


def until_next_round(now: float, interval: float) -> float:
    """Seconds to the pass after this one: the next multiple of the interval, so that pools
    with the same interval probe at the same moments and can share each probe (never so soon
    that no member would be due yet)."""
    delay = interval - now % interval
    return delay + interval if delay < (1 - DUE_SHARE) * interval else delay


NOT_PROBED = "not probed: healthCheck.enabled is false"
# An Unhealthy member whose health path refused the probe with 401/403: the operator probes
# without a credential (it reads no Secrets), so that path wants one it cannot send.
AUTH_FAILED = "AuthFailed"


@dataclass(slots=True)
class MemberRecord:
    """The operator's probe history of one member."""

    name: str
    url: str
    health: Health = Health.UNKNOWN
    probe_successes: int = 0
    probe_failures: int = 0
    probe_message: str = ""
    # What status.members[].message says: why the member became Unhealthy, set when its state
    # flips. A failed probe that flips nothing is no news (a busy member's odd timeout would
    # otherwise write the status twice).
    status_message: str = ""
    last_transition_time: str | None = None

    @property
    def state(self) -> str:
        """Healthy, Unhealthy, Unknown, or AuthFailed (Unhealthy by a 401/403)."""
        if self.health is Health.UNHEALTHY and auth_refused(self.status_message):
            return AUTH_FAILED
        return self.health.value

    def to_status(self) -> MemberStatus:
        """The member's entry in status.members."""
        return MemberStatus(
            name=self.name,
            url=self.url,
            state=self.state,
            message=self.status_message,
            lastTransitionTime=self.last_transition_time,
        )

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> MemberRecord:
        """Recover a record from a status entry written earlier (e.g. before a restart)."""
        state = entry.get("state", "Unknown")
        try:
            health = Health.UNHEALTHY if state == AUTH_FAILED else Health(state)
        except ValueError:
            health = Health.UNKNOWN
        return cls(
            name=str(entry.get("name", "")),
            url=str(entry.get("url", "")),
            health=health,
            probe_successes=1 if health is Health.HEALTHY else 0,
            probe_failures=1 if health is Health.UNHEALTHY else 0,
            probe_message=str(entry.get("message") or ""),
            status_message=str(entry.get("message") or ""),
            last_transition_time=entry.get("lastTransitionTime"),
        )


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe of one member: whether it passed, and why not."""

    ok: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """A member whose health changed in this pass, and what it was before."""

    record: MemberRecord
    before: Health


class MemberRecords:
    """Probe history by member name, and when each member was last probed (monotonic time)."""

    def __init__(self, entries: Iterable[Mapping[str, Any]] = ()) -> None:
        self.by_name: dict[str, MemberRecord] = {
            entry["name"]: MemberRecord.from_status(entry) for entry in entries if entry.get("name")
        }
        self.last_probe: dict[str, float] = {}

    def follow(self, members: Sequence[Member]) -> None:
        """Forget members that left; start afresh for new members and changed URLs."""
        current = {m.name: m.url or "" for m in members}
        for name in [n for n in self.by_name if n not in current]:
            del self.by_name[name]
            self.last_probe.pop(name, None)
        for name, url in current.items():
            record = self.by_name.get(name)
            if record is None or record.url != url:
                self.by_name[name] = MemberRecord(name=name, url=url)
                self.last_probe.pop(name, None)

    def listed(self, members: Sequence[Member]) -> list[MemberRecord]:
        """The records of these members, in their order."""
        return [self.by_name[m.name] for m in members if m.name in self.by_name]

    def due(self, now: float, interval: float) -> list[MemberRecord]:
        """Members whose next probe is due at `now`."""
        return [
            r for r in self.by_name.values()
            if now - self.last_probe.get(r.name, -1e9) >= DUE_SHARE * interval
        ]  # fmt: skip

    def record_probes(
        self,
        results: Sequence[tuple[MemberRecord, ProbeResult]],
        check: HealthCheck,
        now: float,
        stamp: str,
    ) -> list[Transition]:
        """Fold probe results in (probed at `now`, written as `stamp`); returns the flips."""
        transitions = []
        for record, result in results:
            self.last_probe[record.name] = now
            before = record.health
            if apply_probe(record, result.ok, result.message, check):
                record.last_transition_time = stamp
                record.status_message = record.probe_message
                transitions.append(Transition(record, before))
        return transitions

    def assume_healthy(
        self, due: Sequence[MemberRecord], now: float, stamp: str
    ) -> list[Transition]:
        """With probing off every member counts as healthy; returns the flips."""
        transitions = []
        for record in due:
            self.last_probe[record.name] = now
            record.probe_message = record.status_message = NOT_PROBED
            if record.health is Health.HEALTHY:
                continue
            transitions.append(Transition(record, record.health))
            record.health = Health.HEALTHY
            record.last_transition_time = stamp
        return transitions

    def unhealthy(self) -> set[str]:
        """Names of the members probed unhealthy."""
        return {name for name, r in self.by_name.items() if r.health is Health.UNHEALTHY}
