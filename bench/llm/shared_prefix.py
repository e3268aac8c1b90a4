"""The shape of the Inference Extension's own prefix benchmark (inference-perf `shared_prefix`),
scaled to a 2-core machine: GROUPS groups, each with a long system prompt shared by
PROMPTS_PER_GROUP distinct questions; each arrival (Poisson at the given rate) asks a uniformly
chosen question of a uniformly chosen group and wants exactly OUTPUT_TOKENS tokens back.

Before the measured window, one warm-up request per group (not measured) lets every router
place each group once. Requests are `bench.llm.workload.Request`s, so the driver, the report and
the oracle treat both workloads alike (a group is a `tenant`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bench.llm.text import prompt_tokens, words
from bench.llm.workload import Request

WARMUP_SPACING_SECONDS = 0.25


@dataclass(frozen=True)
class Shape:
    """inference-perf shared_prefix's knobs."""

    groups: int = 8
    prompts_per_group: int = 16
    system_prompt_tokens: int = 600
    question_tokens: int = 48
    output_tokens: int = 24
    model: str = "sim-8b"


def _questions(shape: Shape, rng: random.Random) -> list[list[str]]:
    return [
        [" ".join(words(rng, shape.question_tokens)) for _ in range(shape.prompts_per_group)]
        for _ in range(shape.groups)
    ]


def _request(
    shape: Shape, system: str, question: str, at: float, group: int, warmup: bool
) -> Request:
    body: dict[str, Any] = {
        "model": shape.model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ],
        "max_tokens": shape.output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tokens = len(prompt_tokens(body))
    return Request(at, group, 1, body, warmup, tokens, shape.output_tokens)


def schedule(rate: float, seconds: float, seed: int = 13, shape: Shape = Shape()) -> list[Request]:
    """Warm-up requests (one per group), then Poisson arrivals at `rate` for `seconds`."""
    rng = random.Random(seed)
    systems = [
        f"group{g} " + " ".join(words(rng, shape.system_prompt_tokens - 1))
        for g in range(shape.groups)
    ]
    questions = _questions(shape, rng)
    arrivals = random.Random(seed * 1000 + int(rate * 10))
    out = [
        _request(shape, systems[g], questions[g][0], g * WARMUP_SPACING_SECONDS, g, True)
        for g in range(shape.groups)
    ]
    start = shape.groups * WARMUP_SPACING_SECONDS + 0.5
    at = start
    while True:
        at += arrivals.expovariate(rate)
        if at >= start + seconds:
            return out
        group = arrivals.randrange(shape.groups)
        question = questions[group][arrivals.randrange(shape.prompts_per_group)]
        out.append(_request(shape, systems[group], question, at, group, False))


def describe(shape: Shape = Shape()) -> dict[str, Any]:
    """The workload's constants, for the report."""
    return {"workload": "shared_prefix", **shape.__dict__}
