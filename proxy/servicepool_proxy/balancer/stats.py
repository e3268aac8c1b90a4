"""Per-member request statistics: latency and time-to-first-token percentiles, LLM tokens."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW = 1024  # most recent samples kept per series
MAX_TOKEN_WINDOW_SECONDS = 600  # the longest window strategy tokens may ask for
ERROR_HALF_LIFE_SECONDS = 30.0  # the recent error rate halves in this long without news
ERROR_SMOOTHING = 0.1  # each outcome's share of the recent error rate


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
class TokenWindow:
    """Tokens and requests per whole second of the last MAX_TOKEN_WINDOW_SECONDS."""

    buckets: deque[list[int]] = field(default_factory=deque)  # [second, tokens, requests]

    def add(self, now: float, tokens: int) -> None:
        second = int(now)
        if self.buckets and self.buckets[-1][0] == second:
            self.buckets[-1][1] += tokens
            self.buckets[-1][2] += 1
        else:
            self.buckets.append([second, tokens, 1])
        while self.buckets[0][0] <= second - MAX_TOKEN_WINDOW_SECONDS:
            self.buckets.popleft()

    def totals(self, now: float, seconds: float) -> tuple[int, int]:
        """(tokens, requests) counted in the last `seconds` (to whole-second precision)."""
        oldest = int(now) - seconds
        tokens = requests = 0
        for second, bucket_tokens, bucket_requests in reversed(self.buckets):
            if second <= oldest:
                break
            tokens += bucket_tokens
            requests += bucket_requests
        return tokens, requests


@dataclass(slots=True)
class MemberStats:
    """What the proxy measured of a member's answers."""

    latency: Window = field(default_factory=Window)
    ttft: Window = field(default_factory=Window)  # time to the first body chunk with content
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_second: float | None = None  # moving average of the decode rate
    speed_at: float = 0.0  # when tokens_per_second was last measured
    token_window: TokenWindow = field(default_factory=TokenWindow)
    error_rate: float = 0.0  # recent share of failed requests, as of error_at
    error_at: float = 0.0
    first_token: float | None = None  # moving average of the time to first token
    first_token_at: float = 0.0

    def record_ttft(self, seconds: float, now: float) -> None:
        """An answer's first token (its first body chunk with content; for a stream, after
        the prefill, not at the headers) came `seconds` after the request was sent."""
        self.ttft.add(seconds)
        previous = self.first_token
        self.first_token = seconds if previous is None else previous + 0.3 * (seconds - previous)
        self.first_token_at = now

    def record_usage(
        self, usage: dict[str, Any], generation_seconds: float, now: float, after_first: bool
    ) -> None:
        """Count an OpenAI-style usage block; tokens/s is a moving average of the decode rate:
        with `after_first`, the completion tokens after the first over `generation_seconds`
        since the first (a stream); otherwise all of them over the whole answer (a whole
        answer shows no first token)."""
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        counted = 0
        if isinstance(prompt, int) and not isinstance(prompt, bool):
            self.prompt_tokens += prompt
            counted += prompt
        if isinstance(completion, int) and not isinstance(completion, bool):
            self.completion_tokens += completion
            counted += completion
            decoded = completion - 1 if after_first else completion
            if generation_seconds > 0 and decoded > 0:
                rate = decoded / generation_seconds
                previous = self.tokens_per_second
                self.tokens_per_second = (
                    rate if previous is None else previous + 0.3 * (rate - previous)
                )
                self.speed_at = now
        self.token_window.add(now, counted)

    def recent_error_rate(self, now: float) -> float:
        """The share of recent requests that failed, decaying while nothing is heard."""
        age = max(0.0, now - self.error_at)
        return self.error_rate * 0.5 ** (age / ERROR_HALF_LIFE_SECONDS)

    def record_outcome(self, failed: bool, now: float, replaces_success: bool = False) -> None:
        """One request's end: a success or a failure counts toward the recent error rate.
        `replaces_success`: the request was counted a success at its first byte and failed
        after it; the one sample becomes a failure (a second sample would halve it)."""
        rate = self.recent_error_rate(now)
        if replaces_success:
            self.error_rate = min(1.0, rate + ERROR_SMOOTHING)
        else:
            self.error_rate = rate + ERROR_SMOOTHING * ((1.0 if failed else 0.0) - rate)
        self.error_at = now

    def to_status(self) -> dict[str, Any]:
        return {
            "latencyMs": self.latency.summary(),
            "ttftMs": self.ttft.summary(),
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "tokensPerSecond": (
                None if self.tokens_per_second is None else round(self.tokens_per_second, 2)
            ),
        }
