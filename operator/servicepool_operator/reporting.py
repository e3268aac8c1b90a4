"""Events and log lines about a pool: problems, member flips, stuck proxies (once each)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from servicepool_api.health import Health

from .planning import PoolRef
from .proxies import ProxyPods
from .records import AUTH_FAILED, Transition
from .status import Problem

log = logging.getLogger("servicepool.operator")

# (pool body, type, reason, message): posts a Kubernetes Event on the pool
EventSink = Callable[[Mapping[str, Any], str, str, str], None]
# A problem that belongs to no generation (the ConfigMap's conflict) is keyed with this.
ANY_GENERATION = -1


def transition_event(transition: Transition) -> tuple[str, str, str]:
    """The Event for a member's flip: (type, reason, message)."""
    record, before = transition.record, transition.before
    healthy = record.health is Health.HEALTHY
    message = f"member {record.name} ({record.url}) is {record.state}"
    message += f" (was {before.value})" + (f": {record.probe_message}" if not healthy else "")
    if healthy:
        return "Normal", "MemberHealthy", message
    if record.state == AUTH_FAILED:
        return "Warning", "MemberAuthFailed", message
    return "Warning", "MemberUnhealthy", message


class Reporter:
    """Posts a pool's Events, each distinct problem once."""

    def __init__(
        self, emit: EventSink, pool: PoolRef, body: Callable[[], Mapping[str, Any]]
    ) -> None:
        self.emit = emit
        self.pool = pool
        self.body = body  # the pool as last seen: the Events' object
        self.reported_problem: tuple[int, str] | None = None
        self.reported_proxies: str | None = None

    def _log(self, level: int, message: str) -> None:
        log.log(level, "pool %s/%s: %s", self.pool.namespace, self.pool.name, message)

    def problem(self, generation: int, problem: Problem) -> None:
        """A Warning, unless this generation's same problem was reported already."""
        key = (generation, problem.message)
        if self.reported_problem == key:
            return
        self.reported_problem = key
        self._log(logging.WARNING, f"{problem.reason}: {problem.message}")
        self.emit(self.body(), "Warning", problem.reason, problem.message)

    def transition(self, transition: Transition) -> None:
        """A member turned healthy or unhealthy."""
        type_, reason, message = transition_event(transition)
        self._log(logging.INFO, message)
        self.emit(self.body(), type_, reason, message)

    def proxies(self, proxies: ProxyPods) -> None:
        """A Warning when proxy Pods get stuck (once per distinct problem), Normal on recovery."""
        _, reason, message = proxies.condition()
        if proxies.problems and message != self.reported_proxies:
            self.reported_proxies = message
            self._log(logging.WARNING, message)
            self.emit(self.body(), "Warning", "ProxyPodsFailing", message)
        elif self.reported_proxies and reason == "ProxiesReady":
            self.reported_proxies = None
            self.emit(self.body(), "Normal", reason, message)
