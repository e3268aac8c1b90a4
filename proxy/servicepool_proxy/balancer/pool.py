"""The balancer of one pool: which member takes the next request, and what we learned."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from servicepool_api.engine_cache import CacheSize
from servicepool_api.spec import PoolSpec

from . import cache_model, outlier
from .affinity import AffinityTable, pick_affine
from .decisions import SkipReason, skip_reason
from .keys import NO_KEYS, RoutingKeys
from .member import MemberState
from .pickers import Tuning, make_picker
from .prefill import Lease, PendingPrefill


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No member can take the request now; saturated means waiting may help.

    unknown_model is set when no member of the pool serves the requested model;
    unserved_kind when none serves the request's kind (with its model, if it names one);
    credential_refused when every member refused the pool's credential (AuthFailed).
    """

    saturated: bool
    detail: str
    unknown_model: str | None = None
    credential_refused: bool = False
    unserved_kind: str | None = None


class Balancer:
    """Members, their state, and the strategy that picks among them."""

    def __init__(self, spec: PoolSpec, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.members: list[MemberState] = []
        self._tiers: list[list[MemberState]] = []
        self._table: AffinityTable | None = None
        self.chars_per_token = cache_model.CharsPerToken()
        self.apply(spec)

    def apply(self, spec: PoolSpec) -> list[MemberState]:
        """Adopt a new spec; members with the same name and URL keep their state.

        Returns the states that left (removed members, and members whose URL changed).
        """
        old = {m.name: m for m in self.members}
        replaced: list[MemberState] = []
        members: list[MemberState] = []
        tuning = Tuning.of(spec, self.chars_per_token)
        self._cache_aware = policy = tuning.cache_aware
        for member_spec in spec.members:
            state = old.pop(member_spec.name, None)
            if state is None or state.url != member_spec.url:
                if state is not None:
                    state.removed = True
                    replaced.append(state)
                state = MemberState.from_spec(member_spec)
                limit = cache_model.initial_limit(state, policy, self.tokens_per_block)
                state.prefixes.resize(limit)
            else:
                state.update_from_spec(member_spec)
                state.prefixes.resize(min(state.prefixes.limit, policy.maxBlocksPerMember))
            members.append(state)
        for gone in old.values():
            gone.removed = True
        self.spec = spec
        self.members = members
        self.by_name = {m.name: m for m in members}
        priorities = sorted({m.priority for m in members})
        self._tiers = [[m for m in members if m.priority == p] for p in priorities]
        self._pick = make_picker(spec.strategy, self._rng, tuning=tuning)
        affinity = spec.affinity
        if affinity is None or affinity.ttlSeconds <= 0:
            self._table = None
        elif self._table is None or self._table.ttl != affinity.ttlSeconds:
            self._table = AffinityTable(affinity.ttlSeconds)
        return replaced + list(old.values())

    def choose(
        self,
        now: float,
        exclude: Collection[MemberState] = (),
        keys: RoutingKeys = NO_KEYS,
    ) -> MemberState | Unavailable:
        """The member for the next request, from the best tier that has room.

        Members in `exclude` (already tried for this request) are avoided while any
        other member can take it. With a model, only members serving it qualify, and with a
        kind only members serving the kind; with an affinity key, the key's home (rendezvous
        hashing) is preferred while it has room; the strategy sees the keys too (cacheAware
        routes by the prompt's prefix).
        """
        model = keys.model
        if model is not None and not any(m.serves(model) for m in self.members):
            served = ", ".join(sorted(self.served_models())) or "none known"
            return Unavailable(
                False, f"no member serves model {model!r}; this pool serves: {served}", model
            )
        kind = keys.kind
        if kind is not None and not any(
            m.serves_kind(kind) and (model is None or m.serves(model)) for m in self.members
        ):
            return self._unserved(kind, model)
        choice = self._choose(now, exclude, keys) if exclude else None
        if isinstance(choice, MemberState):
            return choice
        return self._choose(now, (), keys)

    def served_models(self) -> set[str]:
        """The union of every member's models."""
        return set().union(*(m.models() for m in self.members)) if self.members else set()

    def _unserved(self, kind: str, model: str | None) -> Unavailable:
        """No member serves the kind (for the model): the kinds the pool serves (for it)."""
        kinds: set[str] = set()
        for member in self.members:
            if model is None or member.serves(model):
                kinds.update(member.kinds())
        served = ", ".join(sorted(kinds)) or "none"
        which = "this pool serves" if model is None else f"members serving model {model!r} serve"
        asked = f"{kind} requests" + ("" if model is None else f" for model {model!r}")
        return Unavailable(False, f"no member serves {asked}; {which}: {served}",
                           unserved_kind=kind)  # fmt: skip

    def _choose(
        self,
        now: float,
        exclude: Collection[MemberState],
        keys: RoutingKeys,
    ) -> MemberState | Unavailable:
        model, affinity_key, kind = keys.model, keys.affinity_key, keys.kind
        saturated = False
        for tier in self._tiers:
            available = []
            for member in tier:
                reason = skip_reason(member, now, exclude, model, kind)
                if reason is None:
                    available.append(member)
                elif reason is SkipReason.AT_LIMIT:
                    saturated = True
            if available:
                if affinity_key is not None and self.spec.affinity is not None:
                    affine = self._choose_affine(affinity_key, available, now)
                    if affine is not None:
                        return affine
                return self._pick(available, now, keys)
        if saturated:
            return Unavailable(True, "every available member is at its maxInFlight limit")
        refused = bool(self.members) and all(m.auth_failed for m in self.members)
        return Unavailable(False, self.describe_unavailable(now), credential_refused=refused)

    def _choose_affine(
        self, key: str, available: list[MemberState], now: float
    ) -> MemberState | None:
        assert self.spec.affinity is not None
        remembered = self._table.get(key, now) if self._table is not None else None
        member = pick_affine(key, available, self.spec.affinity.loadFactor, remembered)
        if member is not None and self._table is not None:
            self._table.put(key, member.name, now)
        return member

    def describe_unavailable(self, now: float) -> str:
        """Why no member can take a request, member by member."""
        if not self.members:
            return "the pool has no members"
        reasons = []
        for member in self.members:
            state = member.state_label(now)
            if state == "Ejected":
                state += f" for {member.ejected_until - now:.1f}s"
            elif state == "RateLimited":
                state += f" for {member.rate_limited_until - now:.1f}s"
            elif state == "HalfOpen":
                state += " (trial request in flight)"
            elif state == "AuthFailed":
                state += f", re-checked in {max(0.0, member.auth_recheck_at - now):.1f}s"
            detail = member.probe_message or member.last_error
            reasons.append(f"{member.name}: {state}" + (f" ({detail})" if detail else ""))
        return "no member can take the request: " + "; ".join(reasons)

    def routable_count(self, now: float) -> int:
        """How many members could take a request now (capacity aside)."""
        return sum(1 for m in self.members if m.routable(now))

    @property
    def tokens_per_block(self) -> float:
        """Prompt tokens in one cacheAware block, as far as answers have told."""
        return self._cache_aware.blockChars / self.chars_per_token.value

    def begin(self, member: MemberState, now: float, keys: RoutingKeys = NO_KEYS) -> Lease:
        """acquire, and count the prompt blocks the member was not sent before as its pending
        prefill until the lease's prefill_done (first byte of the answer's body, or the end)."""
        blocks = len(keys.prefix) - member.prefixes.matched(keys.prefix) if keys.prefix else 0
        trial = self.acquire(member, now, keys)
        prefill = PendingPrefill(member, blocks)
        return Lease(member, trial, prefill, keys.prefix, keys.prompt_chars)

    def learn(self, lease: Lease, usage: dict[str, Any]) -> None:
        """An answer's usage: learn characters per token, and correct the member's index by
        the cached tokens it reported (cache_model)."""
        prompt_tokens = usage.get("prompt_tokens")
        if not lease.prefix or not isinstance(prompt_tokens, int) or prompt_tokens <= 0:
            return
        self.chars_per_token.add(lease.prompt_chars, prompt_tokens)
        cached = cache_model.cached_tokens(usage)
        if cached is None:
            return
        member = lease.member
        member.prefixes.record_realised(prompt_tokens, cached)
        predicted = len(lease.prefix) - lease.prefill.blocks
        cache_model.correct(member, len(lease.prefix), predicted, cached,
                            self.tokens_per_block, self._cache_aware)  # fmt: skip

    def tell_cache_size(self, member: MemberState, size: CacheSize) -> bool:
        """What the member's engine says its prompt cache holds; True when that is news."""
        return cache_model.tell_size(member, size, self._cache_aware, self.tokens_per_block)

    def acquire(self, member: MemberState, now: float, keys: RoutingKeys = NO_KEYS) -> bool:
        """A request starts on the member (its prompt's prefix is now there too); True when
        it is the half-open trial."""
        member.in_flight += 1
        member.requests += 1
        if member.auth_failed and now >= member.auth_recheck_at:  # this request re-checks
            member.auth_recheck_at = now + self.spec.outlierDetection.authRecheckSeconds
        if keys.prefix:
            member.prefixes.record(keys.prefix, now)
        if member.half_open and not member.trial_in_flight and not member.ejected(now):
            member.trial_in_flight = True
            return True
        return False

    def release(self, member: MemberState, trial: bool = False) -> None:
        """A request on the member is over (whatever its outcome).

        A trial that ended without a verdict (the client left) frees the trial slot.
        """
        member.in_flight -= 1
        outlier.end_trial(member, trial)

    def record_success(
        self, member: MemberState, latency: float, now: float, trial: bool = False
    ) -> None:
        """The member answered usefully."""
        member.stats.record_outcome(False, now)
        outlier.record_success(member, latency, now, self.spec.outlierDetection, trial)

    def record_failure(
        self, member: MemberState, reason: str, now: float, trial: bool = False,
        answered: bool = False,
    ) -> bool:  # fmt: skip
        """The member failed a request (`answered`: one already counted a success at its
        first byte); True when that ejected it."""
        member.stats.record_outcome(True, now, replaces_success=answered)
        return outlier.record_failure(
            member, reason, now, self.members, self.spec.outlierDetection, trial
        )

    def record_probe(self, member: MemberState, ok: bool, now: float) -> bool:
        """An active probe's result; True when it returned the member from an ejection."""
        return outlier.record_probe(member, ok, now, self.spec.healthCheck.healthyThreshold)

    def record_rate_limited(
        self, member: MemberState, now: float, retry_after: float | None, trial: bool = False
    ) -> None:
        """The member answered 429."""
        outlier.record_rate_limited(member, now, retry_after, self.spec.outlierDetection, trial)

    def record_auth_error(self, member: MemberState, trial: bool = False) -> None:
        """The member answered 401 or 403 to the client's own credential."""
        outlier.record_auth_error(member, trial)

    def record_auth_refused(
        self, member: MemberState, detail: str, now: float, trial: bool = False
    ) -> bool:
        """The member refused the pool's credential; True when it just became AuthFailed."""
        recheck = self.spec.outlierDetection.authRecheckSeconds
        return outlier.record_auth_refused(member, detail, now, recheck, trial)

    def credential_changed(self) -> int:
        """The pool's credential changed; returns how many members left AuthFailed."""
        return outlier.credential_changed(self.members)
