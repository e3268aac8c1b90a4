"""Time to first token and decode tokens/s through the `servicepool-proxy` console script,
with member processes that send a stream's headers (and a role-only event) before the prefill
and the tokens after it, as vLLM does: what /status, /metrics, the live page and the `speed`
and `adaptive` strategies see is the client's own TTFT and decode rate."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp

from tests.support import MemberProcess, ProxyProcess, start_member_process, start_proxy_process

TOKENS = 20


def start_member(started: list[Any], name: str, prefill: float, decode: float) -> MemberProcess:
    """A sample member whose streams take `prefill` s to their first token, then `decode` s
    for TOKENS tokens."""
    process = start_member_process(name, extra=["--prefill-time", str(prefill),
                                                "--service-time", str(decode)])  # fmt: skip
    started.append(process)
    return process


def start_proxy(started: list[Any], tmp_path: Path, members: list[MemberProcess],
          **spec: Any) -> ProxyProcess:  # fmt: skip
    spec = {"members": [{"name": m.name, "url": m.url} for m in members],
            "healthCheck": {"enabled": False}, **spec}  # fmt: skip
    process = start_proxy_process(tmp_path, spec, console_script=True)
    started.append(process)
    return process


def carries_token(line: bytes) -> bool:
    """A `data:` event with a token (not the role-only event, the usage or [DONE])."""
    if not line.startswith(b"data: {"):
        return False
    return any(c.get("delta", {}).get("content") for c in json.loads(line[6:])["choices"])


async def stream(session: aiohttp.ClientSession, url: str) -> tuple[str, float, float]:
    """One streamed completion: (member, the client's TTFT, its decode tokens/s)."""
    sent = time.monotonic()
    body = {"model": "m", "max_tokens": TOKENS, "stream": True}
    first = 0.0
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200
        async for line in response.content:
            if not first and carries_token(line):
                first = time.monotonic()
        ended = time.monotonic()
        name = response.headers["X-ServicePool-Member"]
    return name, first - sent, (TOKENS - 1) / (ended - first)


async def admin(session: aiohttp.ClientSession, process: ProxyProcess, path: str) -> str:
    async with session.get(f"http://127.0.0.1:{process.admin_port}{path}") as response:
        return await response.text()


async def live_row(session: aiohttp.ClientSession, process: ProxyProcess) -> dict[str, Any]:
    """The first member's row in the live page's first event."""
    url = f"http://127.0.0.1:{process.admin_port}/events"
    async with session.get(url) as response:
        async for line in response.content:
            if line.startswith(b"data:"):
                return json.loads(line[5:])["members"][0]  # type: ignore[no-any-return]
    raise AssertionError("no event from /events")


def histogram_median(metrics: str, member: str) -> float:
    """The upper bound of the bucket holding the median of servicepool_member_ttft_seconds."""
    series = rf'servicepool_member_ttft_seconds_bucket{{le="([^"]+)",member="{member}"'
    pattern = series + r"[^}]*} (\S+)"
    buckets = [(float(le), float(n)) for le, n in re.findall(pattern, metrics)]
    assert buckets, "no servicepool_member_ttft_seconds histogram in /metrics"
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= total / 2)


async def test_ttft_and_decode_rate_are_the_clients_own(started, tmp_path):
    """300 ms prefill after the headers, then 20 tokens in 200 ms (about 95 tokens/s)."""
    llm = start_member(started, "llm", prefill=0.3, decode=0.2)
    process = start_proxy(started, tmp_path, [llm])
    url = f"http://127.0.0.1:{process.port}"
    async with aiohttp.ClientSession() as session:
        seen = [await stream(session, url) for _ in range(8)]
        real_ttft = median(s[1] for s in seen) * 1e3
        real_rate = median(s[2] for s in seen)
        status = json.loads(await admin(session, process, "/status"))["members"][0]
        metrics = await admin(session, process, "/metrics")
        row = await live_row(session, process)
    ttft = status["ttftMs"]
    reported = f"reported TTFT p50 {ttft['p50']:.2f} ms, real {real_ttft:.1f} ms"
    assert abs(ttft["p50"] - real_ttft) < 0.15 * real_ttft, reported
    assert row["ttftMs"]["p50"] == ttft["p50"], f"live page {row['ttftMs']}; {reported}"
    upper = histogram_median(metrics, "llm") * 1e3
    assert real_ttft <= upper <= 2 * real_ttft, f"histogram median bucket ≤ {upper} ms; {reported}"
    rate = status["tokensPerSecond"]
    assert abs(rate - real_rate) < 0.25 * real_rate, (
        f"reported {rate} tokens/s against a real decode rate of {real_rate:.1f}"
    )


async def test_speed_follows_the_decode_rate_not_the_prefill(started, tmp_path):
    """`quick` starts in 50 ms and decodes at 50 tokens/s; `deep` starts in 600 ms and decodes
    at 200 tokens/s: per answer, tokens/s with the prefill would rank `quick` first."""
    quick = start_member(started, "quick", prefill=0.05, decode=0.4)
    deep = start_member(started, "deep", prefill=0.6, decode=0.1)
    process = start_proxy(started, tmp_path, [quick, deep], strategy="speed",
                    speed={"explorationRatio": 0.0})  # fmt: skip
    url = f"http://127.0.0.1:{process.port}"
    async with aiohttp.ClientSession() as session:
        seen = Counter([(await stream(session, url))[0] for _ in range(8)])
        status = json.loads(await admin(session, process, "/status"))["members"]
    rates = {m["name"]: m["tokensPerSecond"] for m in status}
    assert seen["deep"] >= 6, f"{seen}; reported tokens/s {rates}"
    assert rates["deep"] > 2 * rates["quick"], f"reported tokens/s {rates}"


async def test_adaptive_sees_the_prefill_behind_an_early_role_event(started, tmp_path):
    """Both members send their headers and a role-only event at once; `slow` takes 500 ms to
    its first token, `fast` 50 ms."""
    fast = start_member(started, "fast", prefill=0.05, decode=0.05)
    slow = start_member(started, "slow", prefill=0.5, decode=0.05)
    process = start_proxy(started, tmp_path, [fast, slow], strategy="adaptive",
                    adaptive={"latencyWeight": 1.0})  # fmt: skip
    url = f"http://127.0.0.1:{process.port}"
    async with aiohttp.ClientSession() as session:
        seen = Counter([(await stream(session, url))[0] for _ in range(12)])
        status = json.loads(await admin(session, process, "/status"))["members"]
    ttfts = {m["name"]: m["ttftMs"]["p50"] for m in status}
    assert seen["slow"] <= 2, f"{seen}; reported TTFT p50 ms {ttfts}"
