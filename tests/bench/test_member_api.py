"""The simulated member answers vLLM's endpoints in vLLM's shapes, with token ids that match
what its engine counts (bench/llm/member.py, bench/llm/tokenize_api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.llm import tokenizer
from bench.llm.engine import BLOCK_TOKENS, KV_BLOCKS, MAX_MODEL_LEN, MODEL, Engine
from bench.llm.member import make_app
from bench.llm.text import prompt_tokens
from servicepool_dev.tiny_gguf import WORDS

CHAT = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "tenant3 kalo vomi shidan"},
        {"role": "user", "content": "hello torex quo"},
    ],
}
PROMPT = {"model": MODEL, "prompt": "kalo vomi shidan tenant3"}


@pytest.fixture
async def member() -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(make_app(Engine("m0"))))
    await client.start_server()
    yield client
    await client.close()


async def call(member: TestClient, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    response = await member.request(method, path, json=body)
    text = await response.text()
    if response.content_type == "application/json":
        return response.status, await response.json()
    return response.status, text


# (method, path, body, status, what the answer must hold)
CASES: list[tuple[str, str, Any, int, dict[str, Any]]] = [
    ("GET", "/health", None, 200, {}),
    ("GET", "/ping", None, 200, {}),
    ("GET", "/version", None, 200, {"keys": {"version"}}),
    ("POST", "/tokenize", CHAT, 200, {"count": len(prompt_tokens(CHAT))}),
    ("POST", "/tokenize", PROMPT, 200, {"count": len(prompt_tokens(PROMPT))}),
    ("POST", "/tokenize", {"messages": CHAT["messages"], "add_generation_prompt": False}, 200,
     {"count": len(prompt_tokens(CHAT)) - 1}),
    ("POST", "/tokenize", {**CHAT, "model": "other"}, 404, {"error": "NotFoundError"}),
    ("POST", "/tokenize", {"model": MODEL}, 400, {"error": "BadRequestError"}),
    ("POST", "/detokenize", {"tokens": [2, 16, 17]}, 200,
     {"prompt": f"<|user|> {WORDS[0]} {WORDS[1]}"}),
    ("POST", "/detokenize", {"tokens": [-1]}, 400, {"error": "BadRequestError"}),
    ("POST", "/v1/chat/completions/render", {**CHAT, "max_tokens": 7}, 200,
     {"render": "chatcmpl-", "ids": prompt_tokens(CHAT), "max_tokens": 7}),
    ("POST", "/v1/completions/render", PROMPT, 200, {"render": "cmpl-", "ids": PROMPT["prompt"]}),
    ("POST", "/v1/completions/render", {"prompt": ["kalo vomi", "shidan"]}, 200, {"batch": 2}),
    ("POST", "/v1/chat/completions/render", {**CHAT, "model": "x"}, 404,
     {"error": "NotFoundError"}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "expect"), CASES)
async def test_the_member_answers_like_vllm(
    member: TestClient, method: str, path: str, body: Any, status: int, expect: dict[str, Any]
) -> None:
    got_status, got = await call(member, method, path, body)
    assert got_status == status
    if "keys" in expect:
        assert expect["keys"] <= set(got)
    if "count" in expect:
        assert got["count"] == len(got["tokens"]) == expect["count"]
        assert got["max_model_len"] == MAX_MODEL_LEN
    if "error" in expect:
        assert got["error"]["type"] == expect["error"] and got["error"]["code"] == status
    if "prompt" in expect:
        assert got == {"prompt": expect["prompt"]}
    if "render" in expect:
        rendered = got[0] if isinstance(got, list) else got
        ids = expect["ids"].split() if isinstance(expect["ids"], str) else expect["ids"]
        assert rendered["request_id"].startswith(expect["render"])
        assert rendered["token_ids"] == tokenizer.encode(ids)
        assert rendered["sampling_params"]["max_tokens"] == expect.get("max_tokens", 64)
    if "batch" in expect:
        assert [len(r["token_ids"]) for r in got] == [2, 1]


async def test_tokenize_render_and_the_engine_count_the_same_tokens(member: TestClient) -> None:
    _, tokenized = await call(member, "POST", "/tokenize", CHAT)
    _, rendered = await call(member, "POST", "/v1/chat/completions/render", CHAT)
    assert tokenized["tokens"] == rendered["token_ids"]
    assert len(rendered["token_ids"]) == len(prompt_tokens(CHAT))
    _, back = await call(member, "POST", "/detokenize", {"tokens": tokenized["tokens"]})
    assert back["prompt"].split() == prompt_tokens(CHAT)


async def test_models_says_vllm_and_metrics_carry_the_cache_config(member: TestClient) -> None:
    _, models = await call(member, "GET", "/v1/models")
    card = models["data"][0]
    assert (card["id"], card["owned_by"], card["max_model_len"]) == (MODEL, "vllm", MAX_MODEL_LEN)
    assert MAX_MODEL_LEN <= KV_BLOCKS * BLOCK_TOKENS
    _, metrics = await call(member, "GET", "/metrics")
    info = next(line for line in metrics.splitlines() if line.startswith("vllm:cache_config_info"))
    assert f'num_gpu_blocks="{KV_BLOCKS}"' in info and f'block_size="{BLOCK_TOKENS}"' in info
