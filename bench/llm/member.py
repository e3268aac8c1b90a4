"""HTTP face of the simulated engines (bench/llm/engine.py): one aiohttp site per member.

python bench/llm/member.py --listen 127.0.0.1:8001 --listen 127.0.0.1:8002 ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.llm import tokenize_api
from bench.llm.engine import DEFAULT_MAX_TOKENS, MAX_MODEL_LEN, MODEL, Engine, Sequence
from bench.llm.text import prompt_tokens

STARTED = int(time.time())
SIMULATED_VLLM_VERSION = "0.11.0+servicepool.bench"
ENGINE = web.AppKey("engine", Engine)


def completion(seq: Sequence, engine: Engine, kind: str, choice: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-shaped completion document (or stream chunk) of `kind` with one choice."""
    return {
        "id": f"cmpl-{seq.id}",
        "object": kind,
        "created": int(time.time()),
        "model": MODEL,
        "system_fingerprint": engine.name,
        "choices": [choice],
    }


def chunk(seq: Sequence, engine: Engine, chat: bool, text: str, finish: str | None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {"role": "assistant", "content": text} if text else {}
    else:
        choice["text"] = text
    event = completion(seq, engine, "chat.completion.chunk" if chat else "text_completion", choice)
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def usage(seq: Sequence) -> dict[str, Any]:
    return {
        "prompt_tokens": len(seq.prompt),
        "completion_tokens": seq.made,
        "total_tokens": len(seq.prompt) + seq.made,
        "prompt_tokens_details": {"cached_tokens": seq.cached},
    }


async def stream(
    request: web.Request, engine: Engine, seq: Sequence, chat: bool, body: dict[str, Any]
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "x-member": engine.name,
        }
    )
    await response.prepare(request)
    try:
        while not (seq.done and seq.sent >= seq.made) and not seq.cancelled:
            await seq.ready.wait()
            seq.ready.clear()
            if seq.made > seq.sent:
                text = "".join(w + " " for w in seq.reply[seq.sent : seq.made])
                seq.sent = seq.made
                finish = "length" if seq.done else None
                await response.write(chunk(seq, engine, chat, text, finish))
        if seq.cancelled:
            return response
        if (body.get("stream_options") or {}).get("include_usage"):
            event = {
                "id": f"cmpl-{seq.id}",
                "object": "chat.completion.chunk",
                "model": MODEL,
                "system_fingerprint": engine.name,
                "choices": [],
                "usage": usage(seq),
            }
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        seq.cancelled = True
        engine.wake.set()
        raise
    return response


async def complete(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE]
    chat = request.path.endswith("/chat/completions")
    try:
        body = await request.json()
        max_tokens = int(
            body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        )
        seq = Sequence(prompt_tokens(body), max_tokens)
        engine.submit(seq)
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": {"message": str(exc)}}, status=400)
    if body.get("stream"):
        return await stream(request, engine, seq, chat, body)
    while not seq.done:
        await seq.ready.wait()
        seq.ready.clear()
    if seq.cancelled:
        return web.json_response({"error": {"message": "aborted"}}, status=503)
    text = " ".join(seq.reply[: seq.made])
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    document = completion(seq, engine, "chat.completion" if chat else "text_completion", choice)
    document["usage"] = usage(seq)
    return web.json_response(document, headers={"x-member": engine.name})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[ENGINE].metrics(), content_type="text/plain")


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].status())


async def models(request: web.Request) -> web.Response:
    """vLLM's model list: routers tell a vLLM server from an SGLang one by `owned_by`."""
    card = {
        "id": MODEL,
        "object": "model",
        "created": STARTED,
        "owned_by": "vllm",
        "root": MODEL,
        "parent": None,
        "max_model_len": MAX_MODEL_LEN,
        "permission": [],
    }
    return web.json_response({"object": "list", "data": [card]})


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": SIMULATED_VLLM_VERSION})


async def health(request: web.Request) -> web.Response:
    """vLLM answers its health checks with 200 and an empty body."""
    return web.Response()


async def reset(request: web.Request) -> web.Response:
    request.app[ENGINE].reset()
    return web.json_response(request.app[ENGINE].status())


def make_app(engine: Engine) -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    app[ENGINE] = engine
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/version", version)
    for path in ("/health", "/healthz", "/readiness", "/liveness", "/ping"):
        app.router.add_get(path, health)
    app.router.add_post("/ping", health)
    tokenize_api.add_routes(app)
    app.router.add_post("/control/reset", reset)
    return app


async def serve(listens: list[str]) -> None:
    runners = []
    for index, listen in enumerate(listens):
        host, port = listen.rsplit(":", 1)
        engine = Engine(f"m{index}")
        asyncio.get_running_loop().create_task(engine.loop())
        runner = web.AppRunner(make_app(engine), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, int(port), backlog=1024).start()
        runners.append(runner)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", action="append", required=True, help="HOST:PORT, repeatable")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
