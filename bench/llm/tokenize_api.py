"""vLLM's tokenizer endpoints on a simulated member, in vLLM's request and response shapes.

POST /tokenize and /detokenize (vllm/entrypoints/serve/tokenize/protocol.py) and the render
endpoints POST /v1/chat/completions/render (one GenerateRequest) and /v1/completions/render (a
list of them, one per prompt) that routers such as vllm-router call to learn a request's
token ids before they pick a worker. Ids come from bench/llm/tokenizer.py, so a prompt has as
many ids as the engine counts tokens. The simulated model adds no special tokens (no BOS), so
`add_special_tokens` changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from bench.llm import tokenizer
from bench.llm.engine import DEFAULT_MAX_TOKENS, MAX_MODEL_LEN, MODEL
from bench.llm.text import chat_tokens

Body = dict[str, Any]


def error(status: int, message: str, kind: str = "BadRequestError", param: str | None = None):
    """vLLM's ErrorResponse."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status)


def model_error(body: Body) -> web.Response | None:
    """404 for a model this member does not serve, as vLLM's model check answers."""
    model = body.get("model")
    if model in (None, "", MODEL):
        return None
    return error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")


def chat_ids(body: Body) -> list[int]:
    """The ids of a chat request's prompt, chat template applied as the engine applies it."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError("messages must be a list of message objects")
    if body.get("continue_final_message") and body.get("add_generation_prompt"):
        raise ValueError("Cannot set both `continue_final_message` and `add_generation_prompt`")
    generation = bool(body.get("add_generation_prompt", not body.get("continue_final_message")))
    return tokenizer.encode(chat_tokens(messages, generation))


def prompt_ids(prompt: Any) -> list[list[int]]:
    """One id list per prompt of a completion request (a string, strings, ids or id lists)."""
    if isinstance(prompt, str):
        return [tokenizer.encode(prompt.split())]
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    if isinstance(prompt, list) and prompt:
        return [p for item in prompt for p in prompt_ids(item)]
    raise ValueError("prompt must be a string, a list of strings or a list of token ids")


def sampling_params(body: Body, prompt_length: int) -> Body:
    """The request's sampling parameters as vLLM's SamplingParams dumps them (main fields)."""
    room = MAX_MODEL_LEN - prompt_length
    asked = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    stop = body.get("stop") or []
    return {
        "n": int(body.get("n") or 1),
        "presence_penalty": float(body.get("presence_penalty") or 0.0),
        "frequency_penalty": float(body.get("frequency_penalty") or 0.0),
        "repetition_penalty": float(body.get("repetition_penalty") or 1.0),
        "temperature": float(1.0 if body.get("temperature") is None else body["temperature"]),
        "top_p": float(body.get("top_p") or 1.0),
        "top_k": int(body.get("top_k") or 0),
        "min_p": float(body.get("min_p") or 0.0),
        "seed": body.get("seed"),
        "stop": [stop] if isinstance(stop, str) else list(stop),
        "stop_token_ids": list(body.get("stop_token_ids") or []),
        "ignore_eos": bool(body.get("ignore_eos", False)),
        "max_tokens": max(1, min(int(asked), room)),
        "min_tokens": int(body.get("min_tokens") or 0),
        "logprobs": body.get("top_logprobs") if body.get("logprobs") else None,
        "skip_special_tokens": bool(body.get("skip_special_tokens", True)),
    }


def generate_request(body: Body, ids: list[int], prefix: str) -> Body:
    """vLLM's GenerateRequest for one rendered prompt."""
    stream = bool(body.get("stream"))
    return {
        "request_id": f"{prefix}-{uuid.uuid4().hex}",
        "token_ids": ids,
        "features": None,
        "sampling_params": sampling_params(body, len(ids)),
        "model": body.get("model"),
        "stream": stream,
        "stream_options": body.get("stream_options") if stream else None,
        "cache_salt": body.get("cache_salt"),
        "priority": int(body.get("priority") or 0),
        "kv_transfer_params": None,
    }


async def json_body(request: web.Request) -> Body:
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


async def tokenize(request: web.Request) -> web.Response:
    try:
        body = await json_body(request)
        if wrong := model_error(body):
            return wrong
        if "messages" in body:
            ids = chat_ids(body)
        elif isinstance(body.get("prompt"), str):
            ids = tokenizer.encode(body["prompt"].split())
        else:
            raise ValueError("give `prompt` (a string) or `messages`")
    except (ValueError, TypeError) as exc:
        return error(400, str(exc))
    strs = tokenizer.decode(ids) if body.get("return_token_strs") else None
    return web.json_response(
        {"count": len(ids), "max_model_len": MAX_MODEL_LEN, "tokens": ids, "token_strs": strs}
    )


async def detokenize(request: web.Request) -> web.Response:
    try:
        body = await json_body(request)
        if wrong := model_error(body):
            return wrong
        ids = body["tokens"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and 0 <= i < 2**63 for i in ids):
            raise ValueError("tokens must be a list of non-negative integers")
    except (ValueError, TypeError, KeyError) as exc:
        return error(400, f"invalid tokens: {exc}")
    return web.json_response({"prompt": " ".join(tokenizer.decode(ids))})


async def render_chat(request: web.Request) -> web.Response:
    try:
        body = await json_body(request)
        if wrong := model_error(body):
            return wrong
        ids = chat_ids(body)
    except (ValueError, TypeError) as exc:
        return error(400, str(exc))
    return web.json_response(generate_request(body, ids, "chatcmpl"))


async def render_completion(request: web.Request) -> web.Response:
    try:
        body = await json_body(request)
        if wrong := model_error(body):
            return wrong
        prompts = prompt_ids(body.get("prompt"))
    except (ValueError, TypeError) as exc:
        return error(400, str(exc))
    return web.json_response([generate_request(body, ids, "cmpl") for ids in prompts])


def add_routes(app: web.Application) -> None:
    """Mount the tokenizer and render endpoints on a member's app."""
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_post("/v1/chat/completions/render", render_chat)
    app.router.add_post("/v1/completions/render", render_completion)
