"""The proxy's live view of one member."""

from __future__ import annotations

from dataclasses import dataclass, field

from servicepool_api.engine_cache import CacheSize
from servicepool_api.health import Health
from servicepool_api.spec import Member

from .prefix import PrefixBlocks
from .stats import MemberStats


@dataclass(eq=False, slots=True)
class MemberState:
    """Counters and health of one member; mutated only by the balancer and the prober."""

    name: str
    url: str
    weight: int = 1
    priority: int = 0
    max_in_flight: int = 0

    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    auth_errors: int = 0
    rate_limited: int = 0
    last_error: str = ""

    health: Health = Health.UNKNOWN
    probe_successes: int = 0
    probe_failures: int = 0
    probe_message: str = ""

    ejected_until: float = 0.0
    ejections: int = 0
    probe_passes_ejected: int = 0  # active probes passed in a row since the ejection
    half_open: bool = False
    trial_in_flight: bool = False
    rate_limited_until: float = 0.0

    ewma_latency: float | None = None
    last_latency_at: float = 0.0
    current_weight: int = 0
    removed: bool = field(default=False)
    # It refused the pool's credential: out of rotation until auth_recheck_at, when one
    # request re-checks (outlier.record_auth_refused).
    auth_failed: bool = False
    auth_recheck_at: float = 0.0

    declared_models: frozenset[str] = frozenset()
    # From the member's model list: each model and its owned_by ("" when not said).
    discovered_models: dict[str, str] = field(default_factory=dict)
    # Request kinds (RequestKind values) it declared, and those its model list says; with
    # neither it serves every kind.
    declared_kinds: frozenset[str] = frozenset()
    discovered_kinds: frozenset[str] = frozenset()

    # The member's own report of its load (capacity signal).
    reported_at: float = 0.0
    reported_queued: float = 0.0
    reported_running: float = 0.0
    reported_workers: float | None = None
    reported_cache_usage: float | None = None
    in_flight_at_report: int = 0
    report_error: str = ""

    stats: MemberStats = field(default_factory=MemberStats)
    prefixes: PrefixBlocks = field(default_factory=PrefixBlocks)  # cacheAware's memory
    cache_size: CacheSize | None = None  # what the engine says its prompt cache holds
    # Requests sent here that have not answered a byte of body yet, and the prompt blocks
    # among theirs the member had not been sent before (its pending prefill work).
    prefilling: int = 0
    prefill_blocks: int = 0

    @classmethod
    def from_spec(cls, member: Member) -> MemberState:
        """A fresh state for a member of the spec."""
        return cls(
            name=member.name,
            url=member.url or "",
            weight=member.weight,
            priority=member.priority,
            max_in_flight=member.maxInFlight,
            declared_models=frozenset(member.models),
            declared_kinds=frozenset(kind.value for kind in member.capabilities),
        )

    def update_from_spec(self, member: Member) -> None:
        """Take new weight, priority and limit from the spec; keep counters and health."""
        self.weight = member.weight
        self.priority = member.priority
        self.max_in_flight = member.maxInFlight
        self.declared_models = frozenset(member.models)
        self.declared_kinds = frozenset(kind.value for kind in member.capabilities)

    def serves(self, model: str) -> bool:
        """True when the member declared or reported the model."""
        return model in self.declared_models or model in self.discovered_models

    def models(self) -> frozenset[str]:
        """Every model the member is known to serve."""
        return self.declared_models.union(self.discovered_models)

    def serves_kind(self, kind: str) -> bool:
        """True when the member serves requests of the kind: it declared or listed it, or
        neither declared nor listed any kind."""
        if kind in self.declared_kinds or kind in self.discovered_kinds:
            return True
        return not self.declared_kinds and not self.discovered_kinds

    def kinds(self) -> frozenset[str]:
        """The request kinds the member is known to serve (empty: every kind)."""
        return self.declared_kinds | self.discovered_kinds

    def record_report(
        self,
        now: float,
        queued: float,
        running: float,
        workers: float | None,
        cache_usage: float | None,
    ) -> None:
        """A fresh load report from the member itself."""
        self.reported_at = now
        self.reported_queued = queued
        self.reported_running = running
        self.reported_workers = workers
        self.reported_cache_usage = cache_usage
        self.in_flight_at_report = self.in_flight
        self.report_error = ""

    def report_fresh(self, now: float, stale_after: float) -> bool:
        """True when the last load report is recent enough to trust."""
        return self.reported_at > 0 and now - self.reported_at <= stale_after

    def saturated(self) -> bool:
        """True when the member is at its concurrency limit."""
        return 0 < self.max_in_flight <= self.in_flight

    def ejected(self, now: float) -> bool:
        """True while the member sits out a passive-health ejection."""
        return now < self.ejected_until

    def routable(self, now: float) -> bool:
        """True when the member may take a request (capacity aside)."""
        if self.health is Health.UNHEALTHY or now < self.ejected_until:
            return False
        if now < self.rate_limited_until:
            return False
        if self.auth_failed and now < self.auth_recheck_at:
            return False
        return not (self.half_open and self.trial_in_flight)

    def state_label(self, now: float) -> str:
        """One word for status pages: Healthy, Unhealthy, Unknown, Ejected, RateLimited."""
        if self.health is Health.UNHEALTHY:
            return "Unhealthy"
        if now < self.ejected_until:
            return "Ejected"
        if now < self.rate_limited_until:
            return "RateLimited"
        if self.half_open:
            return "HalfOpen"
        if self.auth_failed:
            return "AuthFailed"
        return self.health.value
