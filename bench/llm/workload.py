"""The multi-tenant chat workload: a fixed schedule of OpenAI chat requests.

Tenants each have a long system prompt (TENANT_PROMPT_TOKENS) shared by all their users;
tenant popularity follows a mild Zipf law (weight 1/(i+1)^ZIPF). Each arrival (Poisson at the
given rate) either continues one of its tenant's open conversations (whose previous turn was
sent at least THINK_SECONDS ago) with CONTINUE_PROBABILITY, or starts a new one. A new turn
resends the whole history: system prompt, every user message and every reply. Replies are
deterministic in the prompt (bench/llm/text.py), so the schedule is built before anything is
sent and every peer gets exactly the same requests.

Before the measured window, one warm-up request per tenant (not measured) lets every router
place each tenant once, so short runs measure the steady state rather than a cold start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from bench.llm.text import prompt_tokens, reply_tokens, words

TENANTS = 12
TENANT_PROMPT_TOKENS = (2000, 4000)  # uniform: 3,000 on average, 36k for all tenants
ZIPF = 0.7
USER_TOKENS = (40, 160)
MAX_TOKENS = (24, 96)
CONTINUE_PROBABILITY = 0.6
THINK_SECONDS = 2.0
MAX_TURNS = 6
WARMUP_SPACING_SECONDS = 0.06


@dataclass
class Conversation:
    tenant: int
    messages: list[dict[str, str]]
    last_sent: float
    turns: int = 0


@dataclass
class Request:
    at: float  # seconds after the start of the run
    tenant: int
    turn: int
    body: dict[str, Any]
    warmup: bool = False
    prompt_tokens: int = 0
    max_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def tenant_prompts(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"tenant{i} " + " ".join(words(rng, rng.randint(*TENANT_PROMPT_TOKENS) - 1))
        for i in range(TENANTS)
    ]


def _turn(conv: Conversation, rng: random.Random, at: float, warmup: bool) -> Request:
    conv.messages.append(
        {"role": "user", "content": " ".join(words(rng, rng.randint(*USER_TOKENS)))}
    )
    max_tokens = rng.randint(*MAX_TOKENS)
    body = {
        "model": "sim-8b",
        "messages": [dict(m) for m in conv.messages],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tokens = prompt_tokens(body)
    conv.messages.append(
        {"role": "assistant", "content": " ".join(reply_tokens(tokens, max_tokens))}
    )
    conv.turns += 1
    conv.last_sent = at
    return Request(at, conv.tenant, conv.turns, body, warmup, len(tokens), max_tokens)


def schedule(rate: float, seconds: float, seed: int = 13) -> list[Request]:
    """Warm-up requests, then Poisson arrivals at `rate` per second for `seconds`."""
    rng = random.Random(seed * 1000 + int(rate * 10))
    prompts = tenant_prompts(seed)
    weights = [1 / (i + 1) ** ZIPF for i in range(TENANTS)]
    open_conversations: list[Conversation] = []
    out: list[Request] = []
    for tenant in range(TENANTS):
        conv = Conversation(tenant, [{"role": "system", "content": prompts[tenant]}], 0.0)
        out.append(_turn(conv, rng, tenant * WARMUP_SPACING_SECONDS, warmup=True))
    start = TENANTS * WARMUP_SPACING_SECONDS + 0.3
    at = start
    while True:
        at += rng.expovariate(rate)
        if at >= start + seconds:
            return out
        tenant = rng.choices(range(TENANTS), weights)[0]
        ready = [
            c
            for c in open_conversations
            if c.tenant == tenant and at - c.last_sent >= THINK_SECONDS
        ]
        if ready and rng.random() < CONTINUE_PROBABILITY:
            conv = rng.choice(ready)
        else:
            conv = Conversation(tenant, [{"role": "system", "content": prompts[tenant]}], at)
            open_conversations.append(conv)
        out.append(_turn(conv, rng, at, warmup=False))
        if conv.turns >= MAX_TURNS:
            open_conversations.remove(conv)


def describe() -> dict[str, Any]:
    """The workload's constants, for the report."""
    return {
        "tenants": TENANTS,
        "tenantPromptTokens": TENANT_PROMPT_TOKENS,
        "zipf": ZIPF,
        "userTokens": USER_TOKENS,
        "maxTokens": MAX_TOKENS,
        "continueProbability": CONTINUE_PROBABILITY,
        "thinkSeconds": THINK_SECONDS,
        "maxTurns": MAX_TURNS,
    }
