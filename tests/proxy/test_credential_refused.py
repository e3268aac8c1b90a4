"""A member that refuses the pool's credential leaves rotation (AuthFailed); the client never
sees its 401.

Three member processes demand an API key; the pool's Secret (`spec.upstreamAuth`) holds the
key two of them accept. Before, a third of the client requests got member a's 401 relayed
as-is (the client could not tell it from a bad token of its own). Now a is AuthFailed after
its first refusal, that request is retried on b or c, a's key fixed is seen by the periodic
re-check, and only when every member refuses does the client get a 502 saying the pool's
credential was refused; a changed Secret ends AuthFailed at once. Without `upstreamAuth` the
client's own credential goes through and a 401 is the client's: relayed, no member ejected.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import MemberProcess, ProxyProcess, start_member_process, start_proxy_process

POOL_KEY = "pool-key"
REQUESTS = 90
CONCURRENCY = 6
RECHECK_SECONDS = 1.0


def write_secret(secrets: Path, value: str) -> None:
    path = secrets / "upstream" / "key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")


def start_members(keys: dict[str, str]) -> list[MemberProcess]:
    return [
        start_member_process(name, extra=["--api-key", key, "--service-time", "0.005"])
        for name, key in keys.items()
    ]


def start_pool(
    tmp_path: Path, members: list[MemberProcess], recheck: float, credential: bool = True
) -> ProxyProcess:
    spec: dict[str, Any] = {
        "members": [{"name": m.name, "url": m.url} for m in members],
        "strategy": "roundRobin",
        "healthCheck": {"intervalSeconds": 0.3, "timeoutSeconds": 0.25},
        "outlierDetection": {"authRecheckSeconds": recheck},
    }
    if credential:
        spec["upstreamAuth"] = {"secret": {"secretName": "upstream", "key": "key"}}
    return start_proxy_process(
        tmp_path, spec, "--secrets-dir", str(tmp_path / "secrets"), "--watch-interval", "0.2",
        console_script=True,
    )  # fmt: skip


async def send(
    client: aiohttp.ClientSession, url: str, count: int, token: str | None = None
) -> list[tuple[int, str, str]]:
    """POST `count` completions (not idempotent), CONCURRENCY at a time: (status, member,
    error) of each answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"model": "m", "max_tokens": 1}
    answers: list[tuple[int, str, str]] = []

    async def one() -> None:
        async with client.post(url + "/v1/completions", json=body, headers=headers) as response:
            text = await response.text()
            error = response.headers.get("X-ServicePool-Error", "")
            detail = json.loads(text).get("detail", "") if error else ""
            answers.append((response.status, response.headers.get("X-ServicePool-Member", ""),
                            error + (": " + detail if detail else "")))  # fmt: skip

    for start in range(0, count, CONCURRENCY):
        await asyncio.gather(*(one() for _ in range(min(CONCURRENCY, count - start))))
    return answers


async def member_states(client: aiohttp.ClientSession, admin: str) -> dict[str, str]:
    async with client.get(admin + "/status") as response:
        status = json.loads(await response.text())
    return {row["name"]: row["state"] for row in status["members"]}


async def refused(client: aiohttp.ClientSession, member: MemberProcess) -> int:
    async with client.get(member.url + "/control/stats") as response:
        return int(json.loads(await response.text())["refused"])


def share(answers: list[tuple[int, str, str]], status: int) -> float:
    return 100 * sum(1 for a in answers if a[0] == status) / len(answers)


async def test_member_refusing_the_pools_credential_leaves_rotation(tmp_path: Path) -> None:
    write_secret(tmp_path / "secrets", POOL_KEY)
    members = start_members({"a": "other-key", "b": POOL_KEY, "c": POOL_KEY})
    proxy = start_pool(tmp_path, members, RECHECK_SECONDS)
    url, admin = f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{proxy.admin_port}"
    try:
        async with aiohttp.ClientSession() as client:
            answers = await send(client, url, REQUESTS)
            got_401 = share(answers, 401)
            states = await member_states(client, admin)
            a_refused = await refused(client, members[0])
            assert got_401 == 0 and share(answers, 200) == 100, (
                f"{got_401:.0f}% of {REQUESTS} client requests got member a's 401 relayed as-is "
                f"(before this change: 33%); statuses "
                f"{sorted({(s, e) for s, _, e in answers})}"
            )
            assert states["a"] == "AuthFailed", f"a is {states['a']} after {a_refused} refusals"
            # a refuses the first request sent there, then re-checks once per interval at most.
            assert a_refused <= CONCURRENCY, (
                f"a refused {a_refused} of {REQUESTS} requests: it stayed in rotation"
            )
            async with client.get(admin + "/metrics") as response:
                metrics = await response.text()
            line = 'servicepool_member_state{member="a",pool="p",state="AuthFailed"} 1.0'
            assert line in metrics, "the AuthFailed state is not in the metrics"
            async with client.get(members[0].url + f"/control/apikey?key={POOL_KEY}"):
                pass
            fixed = time.monotonic()
            served_by_a = 0.0
            while time.monotonic() - fixed < RECHECK_SECONDS + 3:
                later = await send(client, url, CONCURRENCY)
                assert share(later, 200) == 100, later
                if any(m == "a" for _, m, _ in later):
                    served_by_a = time.monotonic() - fixed
                    break
                await asyncio.sleep(0.1)
            waited = RECHECK_SECONDS + 3
            assert served_by_a, f"a's key was fixed, yet it served nothing for {waited}s"
            states = await member_states(client, admin)
        assert states["a"] != "AuthFailed", states
        print(f"0 of {REQUESTS} client requests got a 401 (before: 33%); a refused {a_refused}; "
              f"a back {served_by_a:.2f}s after its key was fixed")  # fmt: skip
    finally:
        proxy.stop()
        for member in members:
            member.kill()


async def test_every_member_refusing_answers_502_until_the_credential_changes(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    write_secret(secrets, "wrong-key")
    members = start_members({"a": POOL_KEY, "b": POOL_KEY, "c": POOL_KEY})
    proxy = start_pool(tmp_path, members, recheck=600)  # only the credential change returns them
    url, admin = f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{proxy.admin_port}"
    try:
        async with aiohttp.ClientSession() as client:
            answers = await send(client, url, 30)
            states = await member_states(client, admin)
            assert share(answers, 502) == 100, (
                f"every member refuses the pool's credential: {share(answers, 401):.0f}% of 30 "
                f"requests got a member's 401 relayed (before: 100%), {share(answers, 502):.0f}% "
                f"got the proxy's 502; statuses {sorted({(s, e) for s, _, e in answers})}"
            )
            errors = {error for _, _, error in answers}
            assert all(e.startswith("credential-refused: ") for e in errors), errors
            assert all("upstreamAuth" in e for e in errors), errors
            assert set(states.values()) == {"AuthFailed"}, states
            async with client.get(admin + "/metrics") as response:
                metrics = await response.text()
            rejected = [line for line in metrics.splitlines() if "rejected_total{" in line]
            line = 'servicepool_rejected_total{pool="p",reason="credential-refused"} 30.0'
            assert line in rejected, f"the 502s are not counted as credential-refused: {rejected}"
            write_secret(secrets, POOL_KEY)
            changed = time.monotonic()
            while time.monotonic() - changed < 5:
                later = await send(client, url, 3)
                if share(later, 200) == 100:
                    break
                await asyncio.sleep(0.1)
            back = time.monotonic() - changed
            assert share(later, 200) == 100, f"the Secret changed 5 s ago; still {later}"
            states = await member_states(client, admin)
        assert "AuthFailed" not in states.values(), states
        print(f"every member refusing: 30 of 30 got the proxy's 502 (before: the member's 401); "
              f"served again {back:.2f}s after the Secret changed")  # fmt: skip
    finally:
        proxy.stop()
        for member in members:
            member.kill()


async def test_without_a_pool_credential_a_401_is_the_clients(tmp_path: Path) -> None:
    members = start_members({"a": POOL_KEY, "b": POOL_KEY, "c": POOL_KEY})
    proxy = start_pool(tmp_path, members, RECHECK_SECONDS, credential=False)
    url, admin = f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{proxy.admin_port}"
    try:
        async with aiohttp.ClientSession() as client:
            bad = await send(client, url, 12, token="not-the-key")
            good = await send(client, url, 12, token=POOL_KEY)
            states = await member_states(client, admin)
        assert share(bad, 401) == 100, f"a client's bad token must get the member's 401: {bad}"
        assert share(good, 200) == 100, f"after 12 bad tokens, good ones: {good}"
        assert {m for _, m, _ in good} == {"a", "b", "c"}, good
        assert "AuthFailed" not in states.values(), states
    finally:
        proxy.stop()
        for member in members:
            member.kill()
