"""Where an answer's first token is, and the decode rate counted from it (pure)."""

from __future__ import annotations

import json

import pytest

from servicepool_api.signals import FirstToken, sse_event_has_token
from servicepool_proxy.balancer.stats import MemberStats
from servicepool_proxy.observe.metrics import LATENCY_BUCKETS, Buckets


def event(choice: dict) -> bytes:
    return json.dumps({"choices": [choice]}).encode()


@pytest.mark.parametrize(
    ("data", "token"),
    [
        (event({"index": 0, "delta": {"role": "assistant", "content": ""}}), False),
        (event({"index": 0, "delta": {"content": "Hello"}}), True),
        (event({"index": 0, "delta": {"reasoning_content": "Let me"}}), True),
        (event({"index": 0, "delta": {"tool_calls": [{"index": 0}]}}), True),
        (event({"index": 0, "text": "Once"}), True),  # /v1/completions
        (event({"index": 0, "text": ""}), False),
        (json.dumps({"choices": [], "usage": {"completion_tokens": 3}}).encode(), False),
        (b"[DONE]", False),
        (b"  ", False),
        (b"member-a 0", True),  # not JSON: any data is content
        (json.dumps({"type": "delta", "text": "x"}).encode(), True),  # no choices
    ],
)
def test_an_event_carries_a_token_when_a_choice_has_content(data: bytes, token: bool) -> None:
    assert sse_event_has_token(data) is token


@pytest.mark.parametrize(
    ("chunks", "found_at"),
    [
        # the role-only event with the headers, the token after the prefill
        (
            [
                b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n',
                b": keep-alive\n\n",
                b'data: {"choices":[{"delta":{"content":"t0"}}]}\n\n',
            ],
            2,
        ),
        # an event split over chunks counts once its line is complete
        ([b'data: {"choices":[{"delta":{"con', b'tent":"t0"}}]}', b"\n\n"], 2),
        ([b'data: {"choices":[{"delta":{"content":"t0"}}]}\r\n\r\n'], 0),
        ([b"data: [DONE]\n\n"], None),
    ],
)
def test_the_first_token_of_an_event_stream(chunks: list[bytes], found_at: int | None) -> None:
    watch = FirstToken(event_stream=True)
    found = [i for i, chunk in enumerate(chunks) if watch.found_in(chunk)]
    assert (found[0] if found else None) == found_at


def test_any_byte_of_another_body_is_its_first_token() -> None:
    watch = FirstToken(event_stream=False)
    assert not watch.found_in(b"") and watch.found_in(b"{")


def test_an_endless_unfinished_event_line_counts_as_content() -> None:
    watch = FirstToken(event_stream=True)
    assert not watch.found_in(b"data: " + b"x" * 60_000)
    assert watch.found_in(b"x" * 10_000)


@pytest.mark.parametrize(
    ("completion", "seconds", "after_first", "rate"),
    [
        (20, 0.19, True, 100.0),  # a stream: 19 tokens after the first in 0.19 s
        (20, 0.5, False, 40.0),  # a whole answer: all 20 over its whole time
        (1, 0.1, True, None),  # one token: no decode to measure
        (5, 0.0, True, None),
    ],
)
def test_tokens_per_second_is_the_decode_rate(
    completion: int, seconds: float, after_first: bool, rate: float | None
) -> None:
    stats = MemberStats()
    stats.record_usage({"completion_tokens": completion}, seconds, 1.0, after_first)
    assert stats.tokens_per_second == (None if rate is None else pytest.approx(rate))


def test_a_ttft_feeds_the_window_and_the_moving_average() -> None:
    stats = MemberStats()
    stats.record_ttft(0.3, 10.0)
    stats.record_ttft(0.4, 11.0)
    assert stats.first_token == pytest.approx(0.33) and stats.first_token_at == 11.0
    assert stats.to_status()["ttftMs"] == {"p50": 300.0, "p95": 400.0, "p99": 400.0}


def test_histogram_buckets_are_cumulative_with_the_sum() -> None:
    buckets = Buckets()
    for seconds in (0.3, 0.3, 400.0):
        buckets.observe(seconds)
    pairs = dict(buckets.cumulative())
    assert len(pairs) == len(LATENCY_BUCKETS) + 1
    assert (pairs["0.25"], pairs["0.5"], pairs["300.0"], pairs["+Inf"]) == (0, 2, 2, 3)
    assert buckets.seconds == pytest.approx(400.6)
