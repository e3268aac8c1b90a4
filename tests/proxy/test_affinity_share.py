"""Affinity keys spread evenly: four equal members each own 25 ± 2% of the keys.

The hash ring (64 virtual nodes per member) gave four equal members 29.4/26.1/23.9/20.6% of
4,000 keys; weighted rendezvous hashing gives each its share within 2 points.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp

from tests.support import start_member_process, start_proxy_process

KEYS = 4000
CLIENTS = 8


async def test_four_equal_members_each_own_a_quarter_of_the_keys(tmp_path: Path) -> None:
    members = [start_member_process(name) for name in "abcd"]
    spec = {
        "members": [{"name": m.name, "url": m.url} for m in members],
        # A high loadFactor: the share measured is the keys' placement, never a spill.
        "affinity": {"source": "header", "name": "X-Session", "loadFactor": 10},
        "healthCheck": {"enabled": False},
    }
    proxy = start_proxy_process(tmp_path, spec, console_script=True)
    owners: Counter[str] = Counter()
    keys = iter(range(KEYS))

    async def client_loop(client: aiohttp.ClientSession) -> None:
        for key in keys:
            headers = {"X-Session": f"user-{key}"}
            async with client.get(f"http://127.0.0.1:{proxy.port}/x", headers=headers) as answer:
                await answer.read()
                assert answer.status == 200
                owners[answer.headers["X-ServicePool-Member"]] += 1

    try:
        async with aiohttp.ClientSession() as client:
            await asyncio.gather(*(client_loop(client) for _ in range(CLIENTS)))
    finally:
        proxy.stop()
        for member in members:
            member.kill()
    shares = {name: 100 * owners[name] / KEYS for name in sorted(m.name for m in members)}
    said = "/".join(f"{share:.1f}" for share in shares.values())
    assert all(abs(share - 25) <= 2 for share in shares.values()), (
        f"shares of {KEYS} keys: {said}% (want 25 ± 2% each; the 64-virtual-node ring gave "
        "29.4/26.1/23.9/20.6%)"
    )
    print(f"shares of {KEYS} keys: {said}%")
