"""The live state of one pool inside the proxy: balancer, queue and policy, swapped on reload."""

from __future__ import annotations

import logging
import random

import aiohttp

from .admission import WaitQueue
from .balancer.member import MemberState
from .balancer.pool import Balancer
from .spec import ServicePool

log = logging.getLogger("servicepool.proxy")


class PoolRuntime:
    """Everything the request path needs, rebuilt in place when the pool changes."""

    def __init__(self, pool: ServicePool, rng: random.Random | None = None) -> None:
        self.name = pool.metadata.name
        self.balancer = Balancer(pool.spec, rng)
        self.queue = WaitQueue(pool.spec.queue.maxWaiting)
        self.generation = 0
        self._adopt(pool)

    def _adopt(self, pool: ServicePool) -> None:
        spec = pool.spec
        self.pool = pool
        self.spec = spec
        self.retry_on = frozenset(spec.retries.retryOn)
        self.timeout = aiohttp.ClientTimeout(
            total=spec.timeouts.requestSeconds, sock_connect=spec.timeouts.connectSeconds
        )
        self.queue.max_waiting = spec.queue.maxWaiting
        self.generation += 1

    def apply(self, pool: ServicePool) -> list[MemberState]:
        """Adopt a new version of the pool; in-flight requests finish on their members.

        Returns the members that left the pool.
        """
        gone = self.balancer.apply(pool.spec)
        self._adopt(pool)
        self.queue.wake_all()
        names = ", ".join(m.name for m in self.balancer.members) or "none"
        log.info(
            "pool %s: applied config #%d: strategy %s, members %s",
            self.name,
            self.generation,
            pool.spec.strategy.value,
            names,
        )
        return gone

    @property
    def members(self) -> list[MemberState]:
        """The current members."""
        return self.balancer.members
