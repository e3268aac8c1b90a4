"""Passive health: eject members that fail real requests, bring them back through a trial."""

from __future__ import annotations

import math
from collections.abc import Sequence

from servicepool_api.policies import OutlierDetection

from .member import MemberState

EWMA_ALPHA = 0.3


def ejection_limit(total: int, max_percent: int) -> int:
    """How many members may be ejected at once: the percentage, but at least one."""
    if max_percent <= 0 or total <= 0:
        return 0
    return max(1, math.floor(total * max_percent / 100))


def ejection_seconds(policy: OutlierDetection, ejections: int) -> float:
    """Ejection time grows linearly with the number of ejections, up to the maximum."""
    return min(policy.baseEjectionSeconds * max(1, ejections), policy.maxEjectionSeconds)


def record_success(
    member: MemberState, latency: float, now: float, policy: OutlierDetection, trial: bool = False
) -> None:
    """A request got a usable answer: reset failures; the trial request closes a half-open one.

    While half-open, only the trial decides: a request that started before the ejection
    proves nothing about the member now. The ejection count (which lengthens the next
    ejection) is forgotten once the member has served well for maxEjectionSeconds since its
    last ejection ended.
    """
    update_latency(member, latency, now)
    member.auth_failed = False
    if member.half_open:
        if trial:
            member.half_open = False
            member.trial_in_flight = False
            member.consecutive_failures = 0
        return
    member.consecutive_failures = 0
    if member.ejections and now - member.ejected_until > policy.maxEjectionSeconds:
        member.ejections = 0


def update_latency(member: MemberState, latency: float, now: float) -> None:
    """Fold one latency sample into the member's moving average."""
    if member.ewma_latency is None:
        member.ewma_latency = latency
    else:
        member.ewma_latency += EWMA_ALPHA * (latency - member.ewma_latency)
    member.last_latency_at = now


def _may_eject(
    member: MemberState, now: float, members: Sequence[MemberState], policy: OutlierDetection
) -> bool:
    ejected_now = sum(1 for other in members if other is not member and other.ejected(now))
    return ejected_now < ejection_limit(len(members), policy.maxEjectionPercent)


def record_failure(
    member: MemberState,
    reason: str,
    now: float,
    members: Sequence[MemberState],
    policy: OutlierDetection,
    trial: bool = False,
) -> bool:
    """Count a failed request; eject the member when it crosses the threshold.

    Failures of requests that were in flight when the member got ejected (or that started
    before a half-open trial) are counted but decide nothing. A failed trial ejects again,
    for longer, unless maxEjectionPercent is reached; then the member stays half-open.
    Returns True when this failure ejected the member.
    """
    member.failures += 1
    member.last_error = reason
    if member.half_open:
        if not trial:
            return False
        member.trial_in_flight = False
        return _may_eject(member, now, members, policy) and _eject(member, now, policy)
    if member.ejected(now):
        return False
    member.consecutive_failures += 1
    if member.consecutive_failures < policy.consecutiveFailures:
        return False
    return _may_eject(member, now, members, policy) and _eject(member, now, policy)


def _eject(member: MemberState, now: float, policy: OutlierDetection) -> bool:
    member.ejections += 1
    member.ejected_until = now + ejection_seconds(policy, member.ejections)
    member.half_open = True
    member.trial_in_flight = False
    member.consecutive_failures = 0
    member.probe_passes_ejected = 0
    return True


def record_probe(member: MemberState, ok: bool, now: float, healthy_threshold: int) -> bool:
    """An active probe's result: `healthy_threshold` passes in a row during an ejection end
    it (as a passing active check un-ejects a host in Envoy). The member is half-open then,
    so one trial request decides, and its ejection count still lengthens the next ejection.
    Returns True when this probe ended the ejection."""
    if not ok:
        member.probe_passes_ejected = 0
        return False
    if not member.ejected(now):
        return False
    member.probe_passes_ejected += 1
    if member.probe_passes_ejected < healthy_threshold:
        return False
    member.ejected_until = now
    member.probe_passes_ejected = 0
    return True


def end_trial(member: MemberState, trial: bool) -> None:
    """The trial request ended without a verdict (429, 401/403, client gone): free the slot."""
    if trial and member.half_open:
        member.trial_in_flight = False


def record_rate_limited(
    member: MemberState,
    now: float,
    retry_after: float | None,
    policy: OutlierDetection,
    trial: bool = False,
) -> None:
    """A 429: cool the member down for Retry-After (or the default); not a failure."""
    member.rate_limited += 1
    cooldown = policy.rateLimitCooldownSeconds if retry_after is None else retry_after
    member.rate_limited_until = max(member.rate_limited_until, now + min(cooldown, 3600.0))
    end_trial(member, trial)


def record_auth_error(member: MemberState, trial: bool = False) -> None:
    """A 401/403 to the client's own credential (the pool sent none): the client's problem,
    relayed to it; counted, the member stays in rotation."""
    member.auth_errors += 1
    end_trial(member, trial)


def record_auth_refused(
    member: MemberState, detail: str, now: float, recheck_seconds: float, trial: bool = False
) -> bool:
    """A 401/403 to the pool's credential: the member is AuthFailed, out of rotation until
    one request after `recheck_seconds` shows it accepts the credential again (a success
    ends it, record_success) or the credential changes (credential_changed). Not an ejection:
    maxEjectionPercent does not bound it, since every member may refuse a wrong credential.
    Returns True when the member was not AuthFailed before."""
    member.auth_errors += 1
    news = not member.auth_failed
    member.auth_failed = True
    member.auth_recheck_at = now + recheck_seconds
    member.last_error = f"{detail}: refused the pool's credential"
    end_trial(member, trial)
    return news


def credential_changed(members: Sequence[MemberState]) -> int:
    """The pool's credential changed: every AuthFailed member is back in rotation (the next
    request tells). Returns how many were AuthFailed."""
    returned = 0
    for member in members:
        if member.auth_failed:
            returned += 1
        member.auth_failed = False
        member.auth_recheck_at = 0.0
    return returned
