"""Client tokens, the members' credential, and key rotation without restart."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict

from .conftest import pool_document, serve_handler


def write_secret(secrets: Path, name: str, key: str, value: str) -> None:
    folder = secrets / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}.tmp"
    tmp.write_text(value)
    os.replace(tmp, folder / key)  # atomic, like a Secret volume update


async def header_recorder() -> tuple[web.AppRunner, str, CIMultiDict[str]]:
    seen: CIMultiDict[str] = CIMultiDict()

    async def handler(request: web.Request) -> web.Response:
        seen.clear()
        seen.extend(request.headers)
        return web.Response(text="ok")

    runner, url = await serve_handler(handler)
    return runner, url, seen


async def test_bearer_tokens_upstream_credential_and_rotation(proxy, client, tmp_path, caplog):
    caplog.set_level("DEBUG")
    secrets = tmp_path / "secrets"
    write_secret(secrets, "clients", "tokens", "alpha-token\nbeta-token\n")
    write_secret(secrets, "upstream", "value", "member-secret")
    runner, url, seen = await header_recorder()
    try:
        doc = pool_document(
            [{"name": "m", "url": url}],
            healthCheck={"enabled": False},
            access={"tokens": {"secretName": "clients", "key": "tokens"}},
            upstreamAuth={"secret": {"secretName": "upstream", "key": "value"}},
            models={"discover": False},  # no GET /v1/models: the member sees clients only
        )
        running = await proxy(doc, secrets_dir=secrets, watch_interval=0.1)

        async with client.get(running.url) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="servicepool/test"'
            assert (await response.json())["error"] == "unauthorized"
        for bad in ("Bearer wrong", "Basic alpha-token", "alpha-token", "Bearer "):
            async with client.get(running.url, headers={"Authorization": bad}) as response:
                assert response.status == 401, bad
        assert not seen  # nothing reached the member

        async with client.get(running.url, headers={"Authorization": "Bearer beta-token"}) as r:
            assert r.status == 200
        assert seen["Authorization"] == "Bearer member-secret"  # client's token stripped
        assert "beta-token" not in str(dict(seen))

        write_secret(secrets, "clients", "tokens", "gamma-token\n")
        write_secret(secrets, "upstream", "value", "rotated-secret")
        await asyncio.sleep(0.4)
        async with client.get(running.url, headers={"Authorization": "Bearer beta-token"}) as r:
            assert r.status == 401
        async with client.get(running.url, headers={"Authorization": "Bearer gamma-token"}) as r:
            assert r.status == 200
        assert seen["Authorization"] == "Bearer rotated-secret"
        async with client.get(running.admin_url + "/metrics") as response:
            assert 'servicepool_rejected_total{pool="test",reason="unauthorized"} 6.0' in (
                await response.text()
            )
        async with client.get(running.admin_url + "/status") as response:
            status_text = await response.text()
        for secret in ("alpha-token", "beta-token", "gamma-token", "member-secret",
                       "rotated-secret"):  # fmt: skip
            assert secret not in caplog.text and secret not in status_text
    finally:
        await runner.cleanup()


async def test_api_key_header_is_checked_and_stripped(proxy, client, tmp_path):
    secrets = tmp_path / "secrets"
    write_secret(secrets, "keys", "list", "k-123\n")
    runner, url, seen = await header_recorder()
    try:
        doc = pool_document(
            [{"name": "m", "url": url}],
            healthCheck={"enabled": False},
            access={"tokens": {"secretName": "keys", "key": "list"}, "header": "X-API-Key",
                    "scheme": "None"},
        )  # fmt: skip
        running = await proxy(doc, secrets_dir=secrets)
        async with client.get(running.url, headers={"X-API-Key": "nope"}) as response:
            assert response.status == 401
            assert 'header="X-API-Key"' in response.headers["WWW-Authenticate"]
        async with client.get(running.url, headers={"X-API-Key": "k-123"}) as response:
            assert response.status == 200
        assert "X-API-Key" not in seen
    finally:
        await runner.cleanup()
