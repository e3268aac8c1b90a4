"""The two HTTP looks at a member that both the proxy and the operator take."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from .health import AUTH_FAILED_NOTE
from .signals import SignalError


async def probe_once(
    session: aiohttp.ClientSession, base_url: str, path: str, limit_seconds: float,
    headers: Mapping[str, str] | None = None,
) -> tuple[bool, str]:  # fmt: skip
    """GET the member's health path (with `headers`, e.g. the pool's credential); 2xx/3xx is
    healthy. Returns (ok, message)."""
    try:
        async with session.get(
            base_url + path,
            timeout=aiohttp.ClientTimeout(total=limit_seconds),
            allow_redirects=False,
            headers=headers,
        ) as response:
            await response.read()
            if response.status in (401, 403):
                return False, f"probe {path} returned HTTP {response.status}{AUTH_FAILED_NOTE}"
            if 200 <= response.status < 400:
                return True, ""
            return False, f"probe {path} returned HTTP {response.status}"
    except TimeoutError:
        return False, f"probe {path} timed out after {limit_seconds:g}s"
    except aiohttp.ClientError as exc:
        return False, f"probe {path} failed: {exc}"


async def fetch(session: aiohttp.ClientSession, url: str, limit_seconds: float) -> bytes:
    """GET a URL and return the body; raises SignalError on any failure."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=limit_seconds), allow_redirects=False
        ) as response:
            body = await response.read()
            if response.status != 200:
                raise SignalError(f"GET {url} returned HTTP {response.status}")
            return body
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise SignalError(f"GET {url} failed: {exc or type(exc).__name__}") from None
