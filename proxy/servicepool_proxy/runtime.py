"""The live state of one pool inside the proxy: balancer, queue and policy, swapped on reload."""

from __future__ import annotations

import logging
import random
from collections import deque
from pathlib import Path

from servicepool_api.contract import DEFAULT_SECRETS_DIR
from servicepool_api.spec import ServicePool
from servicepool_proxy.balancer.decisions import Decision
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.model_routing import routing_spec
from servicepool_proxy.balancer.pool import Balancer, Unavailable
from servicepool_proxy.balancer.prefill import Lease
from servicepool_proxy.config.access import ClientAuth, UpstreamCredential
from servicepool_proxy.waitqueue import WaitQueue

log = logging.getLogger("servicepool.proxy")
DECISIONS_KEPT = 32  # the last routing decisions shown in /status and /events


class PoolRuntime:
    """Everything the request path needs, rebuilt in place when the pool changes."""

    def __init__(
        self,
        pool: ServicePool,
        rng: random.Random | None = None,
        secrets_dir: Path = DEFAULT_SECRETS_DIR,
    ) -> None:
        self.name = pool.metadata.name
        self.secrets_dir = secrets_dir
        self.balancer = Balancer(routing_spec(pool.spec), rng)
        self.queue: WaitQueue[Lease | Unavailable] = WaitQueue(
            pool.spec.queue.maxWaiting, self._give_back
        )
        self.generation = 0
        # Bumped whenever the members' credential changes (attempts judge refusals by it).
        self.credential_version = 0
        self._credential: tuple[str, str] | None = None
        self.explain = False  # --explain: record why each member was or was not picked
        # Read by every request: whether to find its kind (some member serves only some).
        self.routes_by_kind = False
        self.decisions: deque[Decision] = deque(maxlen=DECISIONS_KEPT)
        self._adopt(pool)

    def _adopt(self, pool: ServicePool) -> None:
        spec = routing_spec(pool.spec, self._models_listed())
        self.pool = pool
        self.spec = spec
        self._note_kinds()
        self.retry_on = frozenset(spec.retries.retryOn)
        # Read by every request: plain attributes, not the spec's nested models.
        self.max_tries = 1 + spec.retries.attempts
        self.request_seconds = spec.timeouts.requestSeconds
        self.connect_seconds = spec.timeouts.connectSeconds
        self.queue.max_waiting = spec.queue.maxWaiting
        access = spec.access
        self.client_auth = (
            ClientAuth(access, self.secrets_dir) if access and access.tokens else None
        )
        self.upstream_credential = (
            UpstreamCredential(spec.upstreamAuth, self.secrets_dir) if spec.upstreamAuth else None
        )
        # Header names (lower-case) not passed on to members: the pool's own credential, and
        # the members' credential while the proxy has one to set instead.
        kept = frozenset({access.header.lower().encode()} if access is not None else ())
        self.kept_from_members = kept
        self.kept_with_credential = (
            kept | {spec.upstreamAuth.header.lower().encode()} if spec.upstreamAuth else kept
        )
        self._note_credential()
        self.generation += 1

    def apply(self, pool: ServicePool) -> list[MemberState]:
        """Adopt a new version of the pool; in-flight requests finish on their members.

        Returns the members that left the pool.
        """
        gone = self.balancer.apply(routing_spec(pool.spec))
        self._adopt(pool)
        self.queue.offer()
        names = ", ".join(m.name for m in self.balancer.members) or "none"
        log.info(
            "pool %s: applied config #%d: strategy %s, members %s",
            self.name,
            self.generation,
            pool.spec.strategy.value,
            names,
        )
        return gone

    def _give_back(self, handed: Lease | Unavailable) -> None:
        """A member handed to a waiter whose request was cancelled meanwhile: free it."""
        if isinstance(handed, Lease):
            handed.prefill.done()
            self.balancer.release(handed.member, handed.trial)
            self.queue.offer()

    def _models_listed(self) -> bool:
        return any(member.discovered_models for member in self.balancer.members)

    def models_discovered(self) -> None:
        """Members' model lists changed: route by model once some member lists one, and by
        request kind once some member's says which kinds it serves."""
        self.spec = routing_spec(self.pool.spec, self._models_listed())
        self._note_kinds()

    def _note_kinds(self) -> None:
        """Route by request kind while some member declared or listed the kinds it serves."""
        self.routes_by_kind = any(m.declared_kinds or m.discovered_kinds for m in self.members)

    def refresh_secrets(self) -> None:
        """Pick up rotated client tokens or member credentials."""
        if self.client_auth is not None:
            self.client_auth.refresh()
        if self.upstream_credential is not None:
            self.upstream_credential.refresh()
            self._note_credential()

    def _note_credential(self) -> None:
        """A new members' credential (value, header or none at all) ends every member's
        AuthFailed: what they refused is no longer sent."""
        credential = self.upstream_credential
        current = credential.header() if credential is not None else None
        if current == self._credential:
            return
        self._credential = current
        self.credential_version += 1
        returned = self.balancer.credential_changed()
        if returned:
            log.info("pool %s: the members' credential changed: %d AuthFailed member(s) back "
                     "in rotation", self.name, returned)  # fmt: skip

    @property
    def members(self) -> list[MemberState]:
        """The current members."""
        return self.balancer.members
