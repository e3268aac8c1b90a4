"""The oracle lines: how much of a schedule's prompt tokens an ideal placement would reuse
(`reuse`, an engine with room for everything), and the ideal spread itself (`spread`), which
the benchmark runs on the real engines to learn what they reuse under it.

Ideal: every prefix family (a tenant's conversations, a shared-prefix group) lives on one
member with room for it, so a request reuses its longest common token prefix with the
family's earlier requests (each earlier chat turn with its reply, as an engine's cache holds
it); the first request of a family is cold. Warm-up requests prime the cache and are not
counted, as in the measured runs.
"""

from __future__ import annotations

from collections import defaultdict

from bench.llm.text import prompt_tokens, reply_tokens
from bench.llm.workload import Request

RECENT = 64  # earlier requests of a family compared (the longest match is among the last few)


def _common(a: list[str], b: list[str]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def reuse(requests: list[Request], replies: bool = True) -> float:
    """Share of the measured requests' prompt tokens an ideal placement finds cached
    (`replies`: the engine's replies are the ones the schedule's next turns carry, as the
    simulated engine's are; a real engine's are its own, so only earlier prompts match)."""
    seen: dict[int, list[list[str]]] = defaultdict(list)
    total = cached = 0
    for request in sorted(requests, key=lambda r: r.at):
        tokens = prompt_tokens(request.body)
        earlier = seen[request.tenant]
        best = max((_common(tokens, e) for e in earlier[-RECENT:]), default=0)
        if not request.warmup:
            total += len(tokens)
            cached += min(best, len(tokens) - 1)  # an engine computes the last token anyway
        earlier.append(tokens + reply_tokens(tokens, request.max_tokens) if replies else tokens)
    return cached / total if total else 0.0


def spread(requests: list[Request], members: int) -> dict[int, int]:
    """The ideal even spread of a schedule's prefix families over `members`: each family on
    one member, the families with the most prompt tokens placed first, each on the member
    with the fewest tokens so far (it knows the whole schedule in advance, as no router can)."""
    load: dict[int, int] = defaultdict(int)
    for request in requests:
        load[request.tenant] += request.prompt_tokens
    held = [0] * members
    out = {}
    for family in sorted(load, key=lambda f: (-load[f], f)):
        member = min(range(members), key=lambda m: (held[m], m))
        out[family] = member
        held[member] += load[family]
    return out
