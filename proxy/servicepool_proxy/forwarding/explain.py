"""Routing decisions as records: every pick goes to the pool's ring (for /status and
/events); with --explain the record says who else was considered, who was skipped and why,
and the strategy's scores."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from servicepool_proxy.balancer.decisions import Decision, classify
from servicepool_proxy.balancer.member import MemberState
from servicepool_proxy.balancer.scores import strategy_scores
from servicepool_proxy.forwarding.routing_keys import RoutingKeys
from servicepool_proxy.http.exchange import Request
from servicepool_proxy.runtime import PoolRuntime

EXPLAIN_HEADER = "X-ServicePool-Explain"
DECISION_HEADER = "X-ServicePool-Decision"


def wants_explanation(runtime: PoolRuntime, request: Request) -> bool:
    """True when explanations are on and the request asks for one."""
    if not runtime.explain:
        return False
    value = request.headers.get(EXPLAIN_HEADER)
    return value is not None and value.strip() in ("1", "true", "yes")


class DecisionRecorder:
    """Records the decisions of the pool's requests."""

    def __init__(self, runtime: PoolRuntime, wall: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.wall = wall

    def record(
        self, now: float, tried: Sequence[MemberState], keys: RoutingKeys, pick: MemberState | None,
        detail: str = "", into: list[Decision] | None = None,
    ) -> None:  # fmt: skip
        """One decision (pick None: no member could take the request, detail says why)."""
        runtime = self.runtime
        attempt = len(tried) + 1
        name = pick.name if pick is not None else None
        if not runtime.explain:
            decision = Decision(self.wall(), attempt, name, keys.model, detail=detail)
        else:
            exclude = () if pick is not None and pick in tried else tried
            candidates, skipped = classify(runtime.members, now, exclude, keys.model, keys.kind)
            spec = runtime.spec
            tokens_per_block = runtime.balancer.tokens_per_block
            scores = strategy_scores(spec, candidates, now, keys, tokens_per_block) or {}
            decision = Decision(
                self.wall(), attempt, name, keys.model, spec.strategy.value,
                tuple(m.name for m in candidates), tuple(skipped), tuple(scores.items()),
                affinity=keys.affinity_key is not None and spec.affinity is not None,
                detail=detail, explained=True,
            )  # fmt: skip
        runtime.decisions.append(decision)
        if into is not None:
            into.append(decision)
