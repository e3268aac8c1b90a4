"""Defaults through the `servicepool-proxy` console script with member processes: a 429 is
retried on another member (which is not picked again until its Retry-After passes), and a pool
whose members answer /v1/models routes by model and lists the union of their models, each
with its owner, with no `models` block in the spec."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from tests.support import (
    MemberProcess,
    ProxyProcess,
    eventually,
    start_member_process,
    start_proxy_process,
)


def start_member(started: list[Any], name: str, *extra: str) -> MemberProcess:
    process = start_member_process(name, extra=["--service-time", "0.001", *extra])
    started.append(process)
    return process


def start_proxy(started: list[Any], tmp_path: Path, members: list[MemberProcess]) -> ProxyProcess:
    """A proxy with the default spec: members by URL, nothing else."""
    spec = {"members": [{"name": m.name, "url": m.url} for m in members]}
    process = start_proxy_process(tmp_path, spec, console_script=True)
    started.append(process)
    return process


def chat(process: ProxyProcess, model: str = "m") -> requests.Response:
    body = {"model": model, "max_tokens": 1}
    return requests.post(f"http://127.0.0.1:{process.port}/v1/chat/completions", json=body,
                         timeout=10)  # fmt: skip


def member_status(process: ProxyProcess) -> dict[str, dict[str, Any]]:
    url = f"http://127.0.0.1:{process.admin_port}/status"
    return {m["name"]: m for m in requests.get(url, timeout=5).json()["members"]}


def test_a_429_is_retried_on_another_member_which_waits_out_its_retry_after(started, tmp_path):
    a, b = start_member(started, "a"), start_member(started, "b")
    process = start_proxy(started, tmp_path, [a, b])
    requests.post(f"{a.url}/control/ratelimit?seconds=3", timeout=5)  # Retry-After: 3
    limited_at = time.monotonic()
    answers = [chat(process) for _ in range(10)]
    codes = Counter(r.status_code for r in answers)
    assert codes == {200: 10}, f"{codes[429]} of 10 answers were the member's 429: {codes}"
    a_status = member_status(process)["a"]
    assert a_status["rateLimited"] == 1, f"a answered {a_status['rateLimited']} 429s"
    assert {r.headers["X-ServicePool-Member"] for r in answers} == {"b"}
    time.sleep(max(0.0, limited_at + 3.2 - time.monotonic()))
    after = Counter(chat(process).headers["X-ServicePool-Member"] for _ in range(6))
    assert after["a"] >= 2, f"after its Retry-After a got {after['a']} of 6: {after}"


def test_members_that_list_models_route_by_model_with_no_models_block(started, tmp_path):
    a = start_member(started, "a", "--models", "alpha")
    b = start_member(started, "b", "--models", "beta,gamma")
    process = start_proxy(started, tmp_path, [a, b])
    eventually(lambda: all(m["models"] for m in member_status(process).values()), 5)
    known = {name: m["models"] for name, m in member_status(process).items()}
    codes = Counter(chat(process, model).status_code for model in ["alpha"] * 10 + ["gamma"] * 10)
    assert codes == {200: 20}, (
        f"{20 - codes[200]} of 20 reached a member not serving the model (known: {known})"
    )
    url = f"http://127.0.0.1:{process.port}/v1/models"
    listings = [json.dumps(requests.get(url, timeout=5).json(), sort_keys=True) for _ in range(4)]
    assert len(set(listings)) == 1, f"/v1/models differs between calls: {set(listings)}"
    owners = {card["id"]: card["owned_by"] for card in json.loads(listings[0])["data"]}
    assert owners == {"alpha": "a", "beta": "b", "gamma": "b"}, f"/v1/models: {listings[0]}"
