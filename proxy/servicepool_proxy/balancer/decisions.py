"""Why a member was or was not a candidate, and the record of one routing decision (pure)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import StrEnum
from typing import Any, Final

from servicepool_api.health import Health

from .member import MemberState

# An enum member looked up once (through the enum class it costs more than the whole test).
UNHEALTHY: Final = Health.UNHEALTHY


class SkipReason(StrEnum):
    """Why a member was not a candidate for a request."""

    TRIED = "already-tried"  # this request failed there already
    UNHEALTHY = "unhealthy"  # health probes fail
    EJECTED = "ejected"  # passive health took it out
    COOLING_DOWN = "cooling-down-after-429"  # it answered 429; Retry-After not over
    CREDENTIAL_REFUSED = "credential-refused"  # AuthFailed until its re-check
    TRIAL = "half-open-trial-in-flight"  # one trial request decides whether it is back
    NO_MODEL = "no-such-model"  # it does not serve the requested model
    NO_KIND = "kind-not-served"  # it does not serve requests of this kind (capabilities)
    AT_LIMIT = "at-maxInFlight"  # as many requests as its maxInFlight
    LOWER_TIER = "lower-priority-tier"  # a better tier had room


def skip_reason(
    member: MemberState, now: float, exclude: Collection[MemberState], model: str | None,
    kind: str | None = None,
) -> SkipReason | None:  # fmt: skip
    """Why the member cannot take this request now; None when it is a candidate.

    The routable checks follow MemberState.routable in the same order.
    """
    if member in exclude:
        return SkipReason.TRIED
    if member.health is UNHEALTHY:
        return SkipReason.UNHEALTHY
    if now < member.ejected_until:
        return SkipReason.EJECTED
    if now < member.rate_limited_until:
        return SkipReason.COOLING_DOWN
    if member.auth_failed and now < member.auth_recheck_at:
        return SkipReason.CREDENTIAL_REFUSED
    if member.half_open and member.trial_in_flight:
        return SkipReason.TRIAL
    if model is not None and not member.serves(model):
        return SkipReason.NO_MODEL
    if kind is not None and not member.serves_kind(kind):
        return SkipReason.NO_KIND
    if member.saturated():
        return SkipReason.AT_LIMIT
    return None


class Decision:
    """One routing decision: who could take the request, who could not and why, the pick.

    Without explanations only the pick, the model and the attempt are kept. A plain class
    with its own __init__ (never changed once made): one is made per request, and compiled
    it is made without running Python code (a NamedTuple's or dataclass's __init__ is).
    """

    __slots__ = ("affinity", "at", "attempt", "candidates", "detail", "explained", "model",
                 "pick", "scores", "skipped", "strategy")  # fmt: skip

    def __init__(
        self, at: float, attempt: int, pick: str | None, model: str | None = None,
        strategy: str = "", candidates: tuple[str, ...] = (),
        skipped: tuple[tuple[str, str], ...] = (), scores: tuple[tuple[str, float], ...] = (),
        affinity: bool = False, detail: str = "", explained: bool = False,
    ) -> None:  # fmt: skip
        self.at = at  # wall-clock seconds
        self.attempt = attempt  # 1 for the first try, 2 for the first retry...
        self.pick = pick  # None: no member could take it (detail says why)
        self.model = model
        self.strategy = strategy
        self.candidates = candidates
        self.skipped = skipped  # (member, reason)
        self.scores = scores  # lower is better, when the strategy scores
        self.affinity = affinity  # an affinity key chose among the candidates
        self.detail = detail
        self.explained = explained

    def header(self) -> str:
        """One decision as an HTTP header value (ASCII, no commas inside items)."""
        parts = [f"attempt={self.attempt}", f"pick={self.pick or '-'}"]
        if self.explained:
            parts.append(f"strategy={self.strategy}" + (" (affinity)" if self.affinity else ""))
            parts.append("candidates=" + (",".join(self.candidates) or "-"))
            parts.append("skipped=" + (",".join(f"{m}:{r}" for m, r in self.skipped) or "-"))
            if self.scores:
                parts.append("scores=" + ",".join(f"{m}:{s:.4g}" for m, s in self.scores))
        if self.model is not None:
            parts.append(f"model={self.model}")
        return "; ".join(parts).encode("ascii", "replace").decode()

    def to_json(self) -> dict[str, Any]:
        """The decision for /status and /events."""
        return {
            "at": round(self.at, 3),
            "attempt": self.attempt,
            "pick": self.pick,
            "model": self.model,
            "strategy": self.strategy or None,
            "candidates": list(self.candidates) if self.explained else None,
            "skipped": [{"member": m, "reason": r} for m, r in self.skipped]
            if self.explained
            else None,
            "scores": dict(self.scores) if self.scores else None,
            "affinity": self.affinity,
            "detail": self.detail or None,
        }


def decisions_header(decisions: Sequence[Decision]) -> str:
    """Every decision of one request (one per try), as X-ServicePool-Decision."""
    return " | ".join(d.header() for d in decisions)


def classify(
    members: Sequence[MemberState],
    now: float,
    exclude: Collection[MemberState],
    model: str | None,
    kind: str | None = None,
) -> tuple[list[MemberState], list[tuple[str, str]]]:
    """The candidates of the best tier with any, and every other member with its reason,
    as the balancer filters them."""
    skipped: list[tuple[str, str]] = []
    candidates: list[MemberState] = []
    for priority in sorted({m.priority for m in members}):
        better_tier_had_room = bool(candidates)
        for member in (m for m in members if m.priority == priority):
            reason = SkipReason.LOWER_TIER if better_tier_had_room else skip_reason(
                member, now, exclude, model, kind
            )  # fmt: skip
            if reason is None:
                candidates.append(member)
            else:
                skipped.append((member.name, reason.value))
    return candidates, skipped
