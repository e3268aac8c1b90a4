"""`servicepool-sample-member`: a real HTTP member for demos, tests and benchmarks.

It answers every path with a small JSON body naming itself, and can be told to be slow,
to fail, to fail its health check, or to stream server-sent events. With `--api-key` it
demands `Authorization: Bearer <key>` (401 otherwise) on every path but /healthz and
/control/*, as vLLM's `--api-key` leaves /health open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler


@dataclass
class Behaviour:
    """What the member does; tests change it directly, demos through /control/*."""

    name: str
    delay: float = 0.0
    fail_status: int = 0
    healthy: bool = True
    requests: int = 0
    in_flight: int = 0
    max_in_flight_seen: int = 0
    seen_request_ids: list[str] = field(default_factory=list)
    # Inference-server simulation: `workers` requests run at once, the rest queue.
    workers: int = 0
    service_time: float = 0.05
    prefill_time: float = 0.0  # a stream's headers and role event come first, tokens after
    models: list[str] = field(default_factory=list)
    # Listed as every model card's "capabilities" (as Ollama lists them) when set.
    capabilities: list[str] = field(default_factory=list)
    queued: int = 0
    running: int = 0
    max_queued_seen: int = 0
    rate_limited_until: float = 0.0
    models_served: dict[str, int] = field(default_factory=dict)
    api_key: str = ""  # when set, requests must carry "Authorization: Bearer <api_key>"
    refused: int = 0  # requests answered 401 for a missing or wrong key


def make_member_app(behaviour: Behaviour) -> web.Application:
    """The member's aiohttp application."""

    slots = asyncio.Semaphore(max(1, behaviour.workers))

    @web.middleware
    async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        open_path = request.path == "/healthz" or request.path.startswith("/control/")
        expected = f"Bearer {behaviour.api_key}"
        if behaviour.api_key and not open_path and request.headers.get("Authorization") != expected:
            behaviour.refused += 1
            return web.json_response({"error": f"{behaviour.name}: invalid API key"}, status=401)
        return await handler(request)

    async def status(_: web.Request) -> web.Response:
        return web.json_response({
            "queued": behaviour.queued,
            "dispatched": behaviour.running,
            "active_workers": behaviour.workers,
        })  # fmt: skip

    async def metrics(_: web.Request) -> web.Response:
        lines = [
            f'vllm:num_requests_waiting{{model_name="m"}} {behaviour.queued}',
            f'vllm:num_requests_running{{model_name="m"}} {behaviour.running}',
            f'vllm:gpu_cache_usage_perc{{model_name="m"}} '
            f"{behaviour.running / max(1, behaviour.workers):.3f}",
        ]
        return web.Response(text="\n".join(lines) + "\n")

    async def list_models(_: web.Request) -> web.Response:
        cards: list[dict[str, object]] = [
            {"id": m, "object": "model", "owned_by": behaviour.name} for m in behaviour.models
        ]
        if behaviour.capabilities:
            for card in cards:
                card["capabilities"] = behaviour.capabilities
        return web.json_response({"object": "list", "data": cards})

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model")
        loop = asyncio.get_running_loop()
        if behaviour.models and model is not None and model not in behaviour.models:
            return web.json_response({"error": f"model {model!r} not served"}, status=404)
        if loop.time() < behaviour.rate_limited_until:
            wait = behaviour.rate_limited_until - loop.time()
            return web.Response(status=429, headers={"Retry-After": str(max(1, round(wait)))})
        behaviour.requests += 1
        behaviour.models_served[str(model)] = behaviour.models_served.get(str(model), 0) + 1
        behaviour.queued += 1
        behaviour.max_queued_seen = max(behaviour.max_queued_seen, behaviour.queued)
        try:
            await slots.acquire()
        finally:
            behaviour.queued -= 1
        behaviour.running += 1
        try:
            tokens = int(body.get("max_tokens", 8))
            usage = {"prompt_tokens": 5, "completion_tokens": tokens,
                     "total_tokens": 5 + tokens}  # fmt: skip
            if not body.get("stream"):
                await asyncio.sleep(behaviour.prefill_time + behaviour.service_time)
                return web.json_response({
                    "id": "cmpl", "object": "chat.completion", "model": model,
                    "member": behaviour.name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                    "usage": usage,
                })  # fmt: skip
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)  # headers before the prefill, as vLLM sends them
            role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
            await response.write(f"data: {json.dumps(role)}\n\n".encode())
            await asyncio.sleep(behaviour.prefill_time)
            for index in range(tokens):
                await asyncio.sleep(behaviour.service_time / max(1, tokens))
                chunk = {"choices": [{"index": 0, "delta": {"content": f"t{index} "}}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            final = {"choices": [], "usage": usage}
            await response.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
            await response.write_eof()
            return response
        finally:
            behaviour.running -= 1
            slots.release()

    async def healthz(_: web.Request) -> web.Response:
        if behaviour.healthy:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="unhealthy\n")

    async def control(request: web.Request) -> web.Response:
        action = request.match_info["action"]
        query = request.query
        if action == "fail":
            behaviour.fail_status = int(query.get("status", "503"))
        elif action == "heal":
            behaviour.fail_status = 0
            behaviour.healthy = True
        elif action == "unhealthy":
            behaviour.healthy = False
        elif action == "delay":
            behaviour.delay = float(query.get("seconds", "0"))
        elif action == "apikey":
            behaviour.api_key = query.get("key", "")
        elif action == "ratelimit":
            seconds = float(query.get("seconds", "5"))
            behaviour.rate_limited_until = asyncio.get_running_loop().time() + seconds
        elif action != "stats":
            raise web.HTTPNotFound(text=f"unknown control action {action!r}\n")
        return web.json_response(
            {
                "name": behaviour.name,
                "requests": behaviour.requests,
                "delay": behaviour.delay,
                "failStatus": behaviour.fail_status,
                "healthy": behaviour.healthy,
                "refused": behaviour.refused,
            }
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        chunks = int(request.query.get("chunks", "20"))
        interval = float(request.query.get("interval", "0.05"))
        behaviour.requests += 1
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for index in range(chunks):
            await response.write(f"data: {behaviour.name} {index}\n\n".encode())
            await asyncio.sleep(interval)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def answer(request: web.Request) -> web.Response:
        behaviour.requests += 1
        behaviour.in_flight += 1
        behaviour.max_in_flight_seen = max(behaviour.max_in_flight_seen, behaviour.in_flight)
        request_id = request.headers.get("X-Request-Id")
        if request_id:
            behaviour.seen_request_ids.append(request_id)
        try:
            body = await request.read()
            delay = float(request.query.get("delay", behaviour.delay))
            if delay:
                await asyncio.sleep(delay)
            if behaviour.fail_status:
                return web.Response(
                    status=behaviour.fail_status, text=f"{behaviour.name} is failing on purpose\n"
                )
            size = int(request.query.get("size", "0"))
            payload = {
                "member": behaviour.name,
                "method": request.method,
                "path": request.path_qs,
                "bodyBytes": len(body),
                "forwardedFor": request.headers.get("X-Forwarded-For"),
                "forwarded": request.headers.get("Forwarded"),
                "realIp": request.headers.get("X-Real-IP"),
                "requestId": request_id,
            }
            if size:
                payload["padding"] = "x" * max(0, size - len(json.dumps(payload)) - 16)
            return web.json_response(payload)
        finally:
            behaviour.in_flight -= 1

    app = web.Application(client_max_size=64 << 20, middlewares=[require_key])
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/control/{action}", control)
    app.router.add_get("/control/{action}", control)
    app.router.add_get("/stream", stream)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="servicepool-sample-member", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="completions served at once; the rest queue (inference simulation)",
    )
    parser.add_argument(
        "--service-time", type=float, default=0.05, help="seconds one completion takes"
    )
    parser.add_argument(
        "--prefill-time", type=float, default=0.0,
        help="seconds between a stream's headers (and its role-only event) and its first token",
    )  # fmt: skip
    parser.add_argument("--models", default="", help="comma-separated models served")
    parser.add_argument(
        "--capabilities", default="",
        help="comma-separated words listed as each model's capabilities in /v1/models",
    )  # fmt: skip
    parser.add_argument(
        "--api-key", default="", help="demand 'Authorization: Bearer KEY' (not on /healthz)"
    )
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    behaviour = Behaviour(
        name=args.name, delay=args.delay, workers=args.workers, service_time=args.service_time,
        prefill_time=args.prefill_time, models=[m for m in args.models.split(",") if m],
        capabilities=[c for c in args.capabilities.split(",") if c], api_key=args.api_key,
    )  # fmt: skip
    app = make_member_app(behaviour)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
