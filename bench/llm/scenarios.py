"""The workloads of the LLM benchmark, sized for each engine kind, and the rates they run at.

Two workloads no one tuned to: multi-turn chat tenants (bench/llm/workload.py) and the shape of
the Inference Extension's own prefix benchmark (inference-perf `shared_prefix`,
bench/llm/shared_prefix.py). Each is sized so that an even spread of its prefixes fits the
fleet's caches while one member alone cannot hold them all: a router that places prefixes
badly makes its engines evict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.llm import shared_prefix, workload
from bench.llm.workload import Request

Schedule = Callable[[float, float, int], list[Request]]


@dataclass(frozen=True)
class Scenario:
    """One workload on one engine kind: its schedule, its description and its rates."""

    engine: str  # llama | sim
    workload: str  # chat | shared_prefix
    schedule: Schedule  # (rate, seconds, seed) -> requests
    describe: Callable[[], dict[str, Any]]
    rates: tuple[float, ...]  # full run, rising
    quick_rate: float  # the one rate of the quick run


# Three llama-server engines of two 1,024-token slots and about 1,500 tokens of host cache
# each: 6 tenants or 8 groups of 450-650 tokens (an even spread holds them all).
LLAMA_SHARED = shared_prefix.Shape(
    groups=8, prompts_per_group=16, system_prompt_tokens=600, question_tokens=48,
    output_tokens=24, model="tiny",
)  # fmt: skip
# Four simulated engines of 18,432 KV tokens: 16 groups of 2,048 tokens (the Inference
# Extension benchmark's prompt length) and the chat tenants' 36k tokens of system prompts.
SIM_SHARED = shared_prefix.Shape(
    groups=16, prompts_per_group=16, system_prompt_tokens=2048, question_tokens=256,
    output_tokens=64, model="sim-8b",
)  # fmt: skip


def _chat(shape: workload.ChatShape) -> tuple[Schedule, Callable[[], dict[str, Any]]]:
    return (
        lambda rate, seconds, seed: workload.schedule(rate, seconds, seed, shape),
        lambda: workload.describe(shape),
    )


def _shared(shape: shared_prefix.Shape) -> tuple[Schedule, Callable[[], dict[str, Any]]]:
    return (
        lambda rate, seconds, seed: shared_prefix.schedule(rate, seconds, seed, shape),
        lambda: shared_prefix.describe(shape),
    )


SCENARIOS = [
    Scenario("llama", "chat", *_chat(workload.LLAMA_CHAT), (4.0, 8.0, 12.0, 16.0, 20.0), 8.0),
    Scenario("llama", "shared_prefix", *_shared(LLAMA_SHARED), (3.0, 6.0, 9.0, 12.0), 6.0),
    Scenario("sim", "chat", *_chat(workload.SIM_CHAT), (6.0, 10.0, 14.0, 17.0), 12.0),
    Scenario("sim", "shared_prefix", *_shared(SIM_SHARED), (4.0, 6.0, 8.0, 10.0), 6.0),
]


def for_engine(engine: str, names: list[str] | None = None) -> list[Scenario]:
    """The scenarios of one engine kind (only the workloads named, if any)."""
    return [s for s in SCENARIOS if s.engine == engine and (not names or s.workload in names)]
