"""Open-loop driver: sends a schedule through a peer and measures every streamed request.

Times count from each request's scheduled send time, so a stalled peer cannot hide queueing.
TTFT is the time to the first SSE event with non-empty content. A request is complete when it
got 200, its final usage chunk and [DONE] before the drain deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.llm.workload import Request


@dataclass
class Outcome:
    request: Request
    status: int = 0
    error: str = ""
    ttft: float | None = None
    e2e: float | None = None
    finished_at: float | None = None  # seconds after the run's start
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int | None = None
    member: str = ""
    header_member: str = ""

    @property
    def complete(self) -> bool:
        return self.status == 200 and not self.error and self.e2e is not None


def _first_content(line: bytes) -> tuple[bool, str]:
    """(has content, member) of one SSE data line."""
    try:
        event = json.loads(line[5:])
    except ValueError:
        return False, ""
    choices = event.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    text = delta.get("content") or choices[0].get("text") or ""
    return bool(text), str(event.get("system_fingerprint") or "")


async def _read_stream(response: aiohttp.ClientResponse, out: Outcome, scheduled: float) -> None:
    done = False
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        if line == b"data: [DONE]":
            done = True
        elif out.ttft is None:
            has_text, member = _first_content(line)
            if has_text:
                out.ttft = time.monotonic() - scheduled
                out.member = member
        elif b'"usage"' in line:
            usage = json.loads(line[5:]).get("usage") or {}
            out.completion_tokens = int(usage.get("completion_tokens", 0))
            out.prompt_tokens = int(usage.get("prompt_tokens", 0))
            details = usage.get("prompt_tokens_details") or {}
            out.cached_tokens = details.get("cached_tokens")
    if not done or not out.completion_tokens:
        out.error = "stream ended without usage and [DONE]"


async def _one(
    session: aiohttp.ClientSession, url: str, request: Request, origin: float, out: Outcome
) -> None:
    scheduled = origin + request.at
    try:
        async with session.post(url, json=request.body) as response:
            out.status = response.status
            out.header_member = response.headers.get("X-ServicePool-Member", "")
            if response.status != 200:
                detail = (await response.read())[:300].decode("utf-8", "replace")
                out.error = f"HTTP {response.status}: {detail}"
                return
            await _read_stream(response, out, scheduled)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        out.error = type(exc).__name__
        return
    if not out.error:
        out.e2e = time.monotonic() - scheduled
        out.finished_at = time.monotonic() - origin


async def drive(
    url: str | Callable[[Request], str],
    requests: list[Request],
    drain_seconds: float,
    at_measured: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Send every request on schedule; whatever is unfinished at the last arrival plus
    `drain_seconds` is cancelled and counted as incomplete. `url` is where every request
    goes, or says where each one goes. `at_measured` runs (in a thread) just before the first
    measured request is sent."""
    where = url if callable(url) else (lambda _request: url)
    outcomes = [Outcome(r) for r in requests]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    late = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        origin = time.monotonic() + 0.05
        tasks = []
        for request, out in zip(requests, outcomes, strict=True):
            if at_measured is not None and not request.warmup:
                await asyncio.to_thread(at_measured)
                at_measured = None
            delay = origin + request.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.02:
                late += 1
            tasks.append(asyncio.create_task(_one(session, where(request), request, origin, out)))
        deadline = origin + requests[-1].at + drain_seconds
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for task, out in zip(tasks, outcomes, strict=True):
        if task in pending and not out.error:
            out.error = "unfinished at the drain deadline"
    return {
        "outcomes": outcomes,
        "generatorLate": late,
        "windowSeconds": requests[-1].at - next(r.at for r in requests if not r.warmup),
    }
