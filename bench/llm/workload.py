"""The multi-tenant chat workload: a fixed schedule of OpenAI chat requests.

Tenants each have a long system prompt (tenant_prompt_tokens) shared by all their users;
tenant popularity follows a mild Zipf law (weight 1/(i+1)^zipf). Each arrival (Poisson at the
given rate) either continues one of its tenant's open conversations (whose previous turn was
sent at least think_seconds ago) with continue_probability, or starts a new one. A new turn
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

WARMUP_SPACING_SECONDS = 0.06


@dataclass(frozen=True)
class ChatShape:
    """The multi-tenant chat workload's knobs."""

    tenants: int = 12
    tenant_prompt_tokens: tuple[int, int] = (2000, 4000)  # uniform
    zipf: float = 0.7
    user_tokens: tuple[int, int] = (40, 160)
    max_tokens: tuple[int, int] = (24, 96)
    continue_probability: float = 0.6
    think_seconds: float = 2.0
    max_turns: int = 6
    model: str = "sim-8b"


# For the simulated engines (an 8B model on a 24 GB-class GPU): 36k tokens of system prompts.
SIM_CHAT = ChatShape()
# For three llama-server engines of two 1,024-token slots: six tenants, whose conversations
# stay within a slot for all four turns.
LLAMA_CHAT = ChatShape(
    tenants=6, tenant_prompt_tokens=(450, 650), zipf=0.3, user_tokens=(16, 40),
    max_tokens=(8, 24), continue_probability=0.7, think_seconds=1.0, max_turns=4,
    model="tiny",
)  # fmt: skip


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


def tenant_prompts(seed: int, shape: ChatShape = SIM_CHAT) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(words(rng, rng.randint(*shape.tenant_prompt_tokens))) for _ in range(shape.tenants)
    ]


def _turn(
    conv: Conversation, rng: random.Random, at: float, warmup: bool, shape: ChatShape
) -> Request:
    conv.messages.append(
        {"role": "user", "content": " ".join(words(rng, rng.randint(*shape.user_tokens)))}
    )
    max_tokens = rng.randint(*shape.max_tokens)
    body = {
        "model": shape.model,
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


def schedule(
    rate: float, seconds: float, seed: int = 13, shape: ChatShape = SIM_CHAT
) -> list[Request]:
    """Warm-up requests, then Poisson arrivals at `rate` per second for `seconds`."""
    rng = random.Random(seed * 1000 + int(rate * 10))
    prompts = tenant_prompts(seed, shape)
    tenants = shape.tenants
    weights = [1 / (i + 1) ** shape.zipf for i in range(tenants)]
    open_conversations: list[Conversation] = []
    out: list[Request] = []
    for tenant in range(tenants):
        conv = Conversation(tenant, [{"role": "system", "content": prompts[tenant]}], 0.0)
        out.append(_turn(conv, rng, tenant * WARMUP_SPACING_SECONDS, True, shape))
    start = tenants * WARMUP_SPACING_SECONDS + 0.3
    at = start
    while True:
        at += rng.expovariate(rate)
        if at >= start + seconds:
            return out
        tenant = rng.choices(range(tenants), weights)[0]
        ready = [
            c
            for c in open_conversations
            if c.tenant == tenant and at - c.last_sent >= shape.think_seconds
        ]
        if ready and rng.random() < shape.continue_probability:
            conv = rng.choice(ready)
        else:
            conv = Conversation(tenant, [{"role": "system", "content": prompts[tenant]}], at)
            open_conversations.append(conv)
        out.append(_turn(conv, rng, at, False, shape))
        if conv.turns >= shape.max_turns:
            open_conversations.remove(conv)


def describe(shape: ChatShape = SIM_CHAT) -> dict[str, Any]:
    """The workload's constants, for the report."""
    return {"workload": "chat", **shape.__dict__}
