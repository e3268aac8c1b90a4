"""A pool of three real llama.cpp engines behind the `servicepool-proxy` console script,
driven by the official `openai` client with streamed chat completions.

The tiny model's vocabulary makes token counts exact (servicepool_dev.tiny_gguf): a prompt of
N words is N + 1 tokens (BOS). So the tests know each prompt's length and how much of it an
engine could have kept: a second turn of a conversation repeats the first turn's whole
prompt, and `usage.prompt_tokens_details.cached_tokens` says how much of it the engine found
in its KV cache. The engines are llama-server built by e2e/engines/build-llama-server.sh.
"""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from servicepool_dev.llama_engines import LlamaEngine
from servicepool_dev.tiny_gguf import words_text
from tests.support import ProxyProcess, eventually

from .conftest import ENGINE_OPTIONS

# A cold build of llama-server in the session fixture takes about 8 minutes on 2 cores.
pytestmark = pytest.mark.timeout(1200)

SYSTEM_WORDS = 200
QUESTION_WORDS = 20
ANSWER_TOKENS = 8


@dataclass
class Streamed:
    """What one streamed chat completion delivered."""

    text: str
    usage: Any


def stream_chat(client: openai.OpenAI, messages: list[dict[str, str]]) -> Streamed:
    """One streamed chat completion with usage in its last chunk."""
    stream = client.chat.completions.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=ANSWER_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    return Streamed(text, usage)


def first_turn(conversation: int) -> list[dict[str, str]]:
    """A conversation's opening: its own 200-word system prompt and a 20-word question."""
    start = 1000 * conversation
    return [
        {"role": "system", "content": words_text(SYSTEM_WORDS, start)},
        {"role": "user", "content": words_text(QUESTION_WORDS, start + SYSTEM_WORDS)},
    ]


def second_turn(conversation: int, answer: str) -> list[dict[str, str]]:
    """The same conversation one turn on: the first turn, its answer, a new question."""
    start = 1000 * conversation + SYSTEM_WORDS + QUESTION_WORDS
    return [
        *first_turn(conversation),
        {"role": "assistant", "content": answer},
        {"role": "user", "content": words_text(QUESTION_WORDS, start)},
    ]


def openai_client(proxy: ProxyProcess) -> openai.OpenAI:
    """The official client pointed at the proxy; no retries, so every error shows."""
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{proxy.port}/v1", api_key="none", max_retries=0, timeout=60
    )


def admin_status(proxy: ProxyProcess) -> dict[str, Any]:
    """The proxy's GET /status on its admin port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/status", timeout=5) as r:
        return dict(json.load(r))


def wait_until_members_healthy(proxy: ProxyProcess, engines: list[LlamaEngine]) -> None:
    """Block until /status lists every engine as a healthy member."""

    def healthy() -> bool:
        members = admin_status(proxy)["members"]
        return sorted(m["name"] for m in members if m["state"] == "Healthy") == sorted(
            engine.name for engine in engines
        )

    assert eventually(healthy, 20), admin_status(proxy)


def run_conversations(
    client: openai.OpenAI, conversations: range, parallel: int
) -> tuple[list[Streamed], list[Streamed]]:
    """Every conversation's first turn, then every second turn; `parallel` streams at once."""
    with ThreadPoolExecutor(parallel) as pool:
        firsts = list(pool.map(lambda c: stream_chat(client, first_turn(c)), conversations))
        seconds = list(
            pool.map(
                lambda c, first: stream_chat(client, second_turn(c, first.text)),
                conversations,
                firsts,
            )
        )
    return firsts, seconds


def engines_counter(engines: list[LlamaEngine], metric: str) -> float:
    """A llama.cpp counter from /metrics (e.g. `llamacpp:prompt_tokens_cached_total`),
    summed over the engines."""
    total = 0.0
    for engine in engines:
        for line in engine.get_text("/metrics").splitlines():
            name, _, value = line.partition(" ")
            if name == metric:
                total += float(value)
    return total


FIRST_PROMPT_TOKENS = 1 + SYSTEM_WORDS + QUESTION_WORDS
CACHED_METRIC = "llamacpp:prompt_tokens_cached_total"


def test_cache_aware_pool_keeps_each_conversation_where_its_prefix_is_cached(
    engines: list[LlamaEngine], engine_pool: Any
) -> None:
    proxy = engine_pool("cacheAware")
    wait_until_members_healthy(proxy, engines)
    client = openai_client(proxy)
    cached_before = engines_counter(engines, CACHED_METRIC)
    firsts, seconds = run_conversations(client, range(4), parallel=3)

    assert all(streamed.usage is not None for streamed in firsts + seconds)
    assert [first.usage.prompt_tokens for first in firsts] == [FIRST_PROMPT_TOKENS] * 4
    assert all(first.usage.completion_tokens > 0 for first in firsts)
    cached = [second.usage.prompt_tokens_details.cached_tokens for second in seconds]
    # The whole first turn is a prefix of the second: all of it was still in the engine's KV.
    assert all(tokens >= FIRST_PROMPT_TOKENS for tokens in cached), cached
    assert engines_counter(engines, CACHED_METRIC) - cached_before >= sum(cached)
    members = admin_status(proxy)["members"]
    assert sorted(member["name"] for member in members) == sorted(e.name for e in engines)
    assert sum(member["requests"] for member in members) == 8
    assert sum(member["failures"] for member in members) == 0
    assert sum(member["prefixCache"]["hits"] for member in members) == 4
    # The proxy asked each engine what its cache holds (GET /props: 2 slots of 1,024 cells)
    # and heard back from the answers what was really cached.
    for member in members:
        assert member["prefixCache"]["cacheSize"] == {"tokens": 2048, "slots": 2,
                                                      "source": "props"}  # fmt: skip
    reported = [m["prefixCache"]["reportedHitRate"] for m in members if m["requests"]]
    assert all(rate is not None and rate > 0 for rate in reported), reported


def test_round_robin_sends_each_second_turn_where_nothing_of_it_is_cached(
    engines: list[LlamaEngine], engine_pool: Any
) -> None:
    proxy = engine_pool("roundRobin")
    wait_until_members_healthy(proxy, engines)
    client = openai_client(proxy)
    # One at a time, so the rotation is exact: 4 conversations on 3 members put every
    # second turn on the member after the one that served its first.
    firsts, seconds = run_conversations(client, range(10, 14), parallel=1)

    assert all(streamed.usage is not None for streamed in firsts + seconds)
    cached = [second.usage.prompt_tokens_details.cached_tokens for second in seconds]
    # At most BOS: that member only ever saw other conversations.
    assert all(tokens <= 1 for tokens in cached), cached


def post_json(engine: LlamaEngine, path: str, body: dict[str, Any]) -> Any:
    """POST a JSON body to an engine and return its JSON answer."""
    request = urllib.request.Request(
        engine.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.mark.parametrize("count", [1, 7, 300])
def test_a_text_of_n_words_is_n_tokens_on_the_engine(
    engines: list[LlamaEngine], count: int
) -> None:
    text = words_text(count, start=count)
    plain = post_json(engines[0], "/tokenize", {"content": text})["tokens"]
    special = post_json(engines[0], "/tokenize", {"content": text, "add_special": True})["tokens"]
    assert len(plain) == count
    assert special == [1, *plain]  # BOS


def test_engines_report_their_slots_and_per_slot_context(engines: list[LlamaEngine]) -> None:
    props = engines[0].get_json("/props")
    slots = engines[0].get_json("/slots")
    per_slot = ENGINE_OPTIONS.context // ENGINE_OPTIONS.slots
    assert props["total_slots"] == ENGINE_OPTIONS.slots
    assert props["default_generation_settings"]["n_ctx"] == per_slot
    assert [slot["n_ctx"] for slot in slots] == [per_slot] * ENGINE_OPTIONS.slots
