"""The one-line answer to "which member is failing?" for `kubectl get sp -o wide` (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from servicepool_api.health import Health

from .records import MemberRecord

MAX_REASON = 60  # characters of the probe message kept in the column


def failing_summary(records: Sequence[MemberRecord]) -> str | None:
    """The first unhealthy member and why, plus how many more fail; None when none does."""
    failing = [r for r in records if r.health is Health.UNHEALTHY]
    if not failing:
        return None
    first = failing[0]
    reason = first.probe_message.strip()
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    text = f"{first.name} ({reason})" if reason else first.name
    return text + (f" +{len(failing) - 1} more" if len(failing) > 1 else "")
