"""Per-member request statistics: latency and time-to-first-byte percentiles, LLM tokens."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW = 1024  # most recent samples kept per series


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass(slots=True)
class Window:
    """The last WINDOW samples of one series."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def add(self, value: float) -> None:
        self.samples.append(value)

    def summary(self) -> dict[str, float] | None:
        """p50/p95/p99 in milliseconds, or None without samples."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return {
            "p50": round(percentile(ordered, 0.50) * 1e3, 3),
            "p95": round(percentile(ordered, 0.95) * 1e3, 3),
            "p99": round(percentile(ordered, 0.99) * 1e3, 3),
        }


@dataclass(slots=True)
class MemberStats:
    """What the proxy measured of a member's answers."""

    latency: Window = field(default_factory=Window)
    first_byte: Window = field(default_factory=Window)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_second: float | None = None

    def record_usage(self, usage: dict[str, Any], generation_seconds: float) -> None:
        """Count an OpenAI-style usage block; tokens/s is a moving average."""
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if isinstance(prompt, int):
            self.prompt_tokens += prompt
        if isinstance(completion, int):
            self.completion_tokens += completion
            if generation_seconds > 0 and completion > 0:
                rate = completion / generation_seconds
                previous = self.tokens_per_second
                self.tokens_per_second = (
                    rate if previous is None else previous + 0.3 * (rate - previous)
                )

    def to_status(self) -> dict[str, Any]:
        return {
            "latencyMs": self.latency.summary(),
            "firstByteMs": self.first_byte.summary(),
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "tokensPerSecond": (
                None if self.tokens_per_second is None else round(self.tokens_per_second, 2)
            ),
        }
