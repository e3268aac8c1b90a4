"""Explainable routing: X-ServicePool-Decision names the candidates, every skipped member
with its reason, the scores and the pick; the same decisions reach /status."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .conftest import pool_document, wait_for

ASK = {"X-ServicePool-Explain": "1"}
NO_PROBES = {"enabled": False}


async def decision_of(client, url: str, json: dict | None = None) -> tuple[int, str]:
    """Send one explained request; its status and X-ServicePool-Decision."""
    method = client.post if json is not None else client.get
    async with method(url, headers=ASK, json=json) as response:
        await response.read()
        return response.status, response.headers.get("X-ServicePool-Decision", "")


def fields(header: str) -> dict[str, str]:
    """The key=value parts of a decision (the first try's, when there were retries)."""
    first = header.split(" | ")[0]
    return dict(part.split("=", 1) for part in first.split("; "))


async def test_without_explain_or_without_asking_there_is_no_decision_header(
    members, proxy, client
):
    a = await members("a")
    doc = pool_document([{"name": "a", "url": a.url}], healthCheck=NO_PROBES)
    quiet, loud = await proxy(doc), await proxy(doc, explain=True)
    assert (await decision_of(client, quiet.url + "/"))[1] == ""
    async with client.get(loud.url + "/") as response:
        assert "X-ServicePool-Decision" not in response.headers
    status, header = await decision_of(client, loud.url + "/")
    assert status == 200 and fields(header)["pick"] == "a"


async def test_an_ejected_member_is_skipped_as_ejected(members, proxy, client):
    a, b = await members("a"), await members("b")
    a.behaviour.fail_status = 500
    doc = pool_document(
        [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}], strategy="roundRobin",
        healthCheck=NO_PROBES, outlierDetection={"consecutiveFailures": 1},
    )  # fmt: skip
    running = await proxy(doc, explain=True)
    for _ in range(2):
        async with client.get(running.url + "/") as response:
            await response.read()
    assert running.server.runtime.balancer.by_name["a"].ejections == 1
    status, header = await decision_of(client, running.url + "/")
    assert status == 200
    got = fields(header)
    assert got["skipped"] == "a:ejected" and got["candidates"] == "b" and got["pick"] == "b"
    assert got["strategy"] == "roundRobin" and "scores" not in got  # round-robin scores nothing


async def test_an_unhealthy_member_is_skipped_as_unhealthy(members, proxy, client):
    a, b = await members("a"), await members("b")
    a.behaviour.healthy = False
    doc = pool_document([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}],
                        healthCheck={"intervalSeconds": 0.2, "timeoutSeconds": 0.2,
                                     "unhealthyThreshold": 1})  # fmt: skip
    running = await proxy(doc, explain=True)
    member = running.server.runtime.balancer.by_name["a"]
    assert await wait_for(lambda: member.state_label(time.monotonic()) == "Unhealthy", 3)
    got = fields((await decision_of(client, running.url + "/"))[1])
    assert got["skipped"] == "a:unhealthy" and got["pick"] == "b"


async def test_a_member_without_the_model_is_skipped_as_no_such_model(members, proxy, client):
    a, b = await members("a", workers=2), await members("b", workers=2)
    doc = pool_document(
        [{"name": "a", "url": a.url, "models": ["small"]},
         {"name": "b", "url": b.url, "models": ["large"]}], healthCheck=NO_PROBES,
    )  # fmt: skip
    running = await proxy(doc, explain=True)
    url = running.url + "/v1/chat/completions"
    status, header = await decision_of(client, url, {"model": "large", "max_tokens": 1})
    got = fields(header)
    assert status == 200 and got["skipped"] == "a:no-such-model" and got["pick"] == "b"
    assert got["model"] == "large"
    status, header = await decision_of(client, url, {"model": "gpt-9", "max_tokens": 1})
    got = fields(header)
    assert status == 404 and got["pick"] == "-"
    assert got["skipped"] == "a:no-such-model,b:no-such-model"


async def test_a_busy_member_is_skipped_as_at_max_in_flight_with_scores(members, proxy, client):
    slow, b = await members("slow", delay=3.0), await members("b")
    doc = pool_document(
        [{"name": "slow", "url": slow.url, "maxInFlight": 1}, {"name": "b", "url": b.url}],
        strategy="leastInFlight", healthCheck=NO_PROBES,
    )  # fmt: skip
    running = await proxy(doc, explain=True)
    member = running.server.runtime.balancer.by_name["slow"]
    busy = asyncio.create_task(decision_of(client, running.url + "/"))
    await wait_for(lambda: member.in_flight == 1, 2)
    got = fields((await decision_of(client, running.url + "/"))[1])
    assert got["skipped"] == "slow:at-maxInFlight" and got["pick"] == "b"
    assert got["scores"] == "b:0"  # leastInFlight: in-flight per weight
    first = fields((await busy)[1])
    assert first["pick"] == "slow" and first["scores"] == "slow:0,b:0"


async def test_a_member_that_answered_429_is_skipped_while_cooling_down(
    members, proxy, client, handler_servers
):
    async def rate_limited(_: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "30"})

    limited = await handler_servers(rate_limited)
    b = await members("b")
    doc = pool_document(
        [{"name": "limited", "url": limited, "priority": 0}, {"name": "b", "url": b.url,
          "priority": 1}], healthCheck=NO_PROBES, retries={"attempts": 0},
    )  # fmt: skip
    running = await proxy(doc, explain=True)
    status, header = await decision_of(client, running.url + "/")
    assert status == 429 and fields(header)["pick"] == "limited"
    got = fields((await decision_of(client, running.url + "/"))[1])
    assert got["skipped"] == "limited:cooling-down-after-429" and got["pick"] == "b"


async def test_a_retry_is_a_second_decision_that_skips_the_member_already_tried(
    members, proxy, client
):
    a, b = await members("a"), await members("b")
    a.behaviour.fail_status = 503
    doc = pool_document(
        [{"name": "a", "url": a.url, "priority": 0}, {"name": "b", "url": b.url, "priority": 1}],
        healthCheck=NO_PROBES, outlierDetection={"consecutiveFailures": 100},
    )  # fmt: skip
    running = await proxy(doc, explain=True)
    status, header = await decision_of(client, running.url + "/")
    first, second = header.split(" | ")
    assert status == 200
    assert fields(first)["pick"] == "a" and fields(first)["skipped"] == "b:lower-priority-tier"
    assert fields(second)["pick"] == "b" and fields(second)["skipped"] == "a:already-tried"
    async with client.get(running.admin_url + "/status") as response:
        decisions = (await response.json())["decisions"]
    assert [d["pick"] for d in decisions[-2:]] == ["a", "b"]
    assert decisions[-1]["skipped"] == [{"member": "a", "reason": "already-tried"}]
