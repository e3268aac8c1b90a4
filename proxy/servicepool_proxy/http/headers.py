"""Header rules for a reverse proxy: hop-by-hop removal and forwarding headers."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict, CIMultiDictProxy

from servicepool_api.contract import Networks

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
# Recomputed by the proxy from what is actually sent.
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "expect"}
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}
# What a client says about earlier hops is believed only from a trusted proxy. Forwarded
# (RFC 7239) and X-Real-IP are not written by the proxy: they pass only from a trusted peer.
_FORWARDING = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip"}
)
_UNTRUSTED_REQUEST_DROP = _REQUEST_DROP | _FORWARDING
# What a Connection header usually says: no other header named hop-by-hop.
_PLAIN_CONNECTION = frozenset({"keep-alive", "close"})
MEMBER_HEADER = "X-ServicePool-Member"
REQUEST_ID_HEADER = "X-Request-Id"


def _connection_tokens(values: Iterable[str]) -> set[str]:
    """Header names a sender listed in its Connection headers: those are hop-by-hop too."""
    tokens: set[str] = set()
    for value in values:
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def is_trusted(client_ip: str | None, networks: Networks) -> bool:
    """Whether the peer is one of the proxies whose X-Forwarded-* headers are believed."""
    if not networks or not client_ip:
        return False
    address = ipaddress.ip_address(client_ip)
    return any(address in network for network in networks)


class RequestIds:
    """Random 128-bit request ids (as random as uuid4), drawn from the OS 256 at a time: one
    getrandom() call per 256 requests instead of one per request."""

    __slots__ = ("_at", "_hex")

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._hex):
            self._hex = os.urandom(4096).hex()
            at = 0
        self._at = at + 32
        return self._hex[at : at + 32]

    def forget(self) -> None:
        """Drop the drawn ids (a forked child must not hand out its parent's)."""
        self._hex = ""


_request_ids = RequestIds()
os.register_at_fork(after_in_child=_request_ids.forget)


def upstream_request_headers(
    headers: CIMultiDictProxy[str], client_ip: str | None, scheme: str, host: str | None,
    trusted: bool = False,
) -> CIMultiDict[str]:  # fmt: skip
    """The client's headers as they go to a member.

    X-Forwarded-For/-Proto/-Host describe this connection; a `trusted` peer's own values
    are kept (its For list is extended with its address).
    """
    base = _REQUEST_DROP if trusted else _UNTRUSTED_REQUEST_DROP
    drop = (
        base | _connection_tokens(headers.getall("Connection")) if "Connection" in headers else base
    )
    out: CIMultiDict[str] = CIMultiDict(
        [pair for pair in headers.items() if pair[0].lower() not in drop]
    )
    if not trusted:  # the client's own forwarding headers were dropped: add ours
        if client_ip:
            out.add("X-Forwarded-For", client_ip)
        out.add("X-Forwarded-Proto", scheme)
        if host:
            out.add("X-Forwarded-Host", host)
    else:
        if client_ip:
            prior = ", ".join(out.popall("X-Forwarded-For", []))
            out.add("X-Forwarded-For", f"{prior}, {client_ip}" if prior else client_ip)
        if "X-Forwarded-Proto" not in out:
            out.add("X-Forwarded-Proto", scheme)
        if host and "X-Forwarded-Host" not in out:
            out.add("X-Forwarded-Host", host)
    if REQUEST_ID_HEADER not in out:
        out.add(REQUEST_ID_HEADER, _request_ids.next())
    return out


def downstream_response_headers(
    headers: Iterable[tuple[str, str]], keep_length: bool
) -> CIMultiDict[str]:
    """A member's response headers (name/value pairs) as they go to the client."""
    drop = HOP_BY_HOP if keep_length else _RESPONSE_DROP
    kept: list[tuple[str, str]] = []
    listed: list[str] = []
    for pair in headers:
        lowered = pair[0].lower()
        if lowered not in drop:
            kept.append(pair)
        elif lowered == "connection":
            listed.append(pair[1])
    if listed and not (len(listed) == 1 and listed[0].lower() in _PLAIN_CONNECTION):
        named = _connection_tokens(listed)
        if not named <= drop:  # usually just "keep-alive" or "close"
            kept = [pair for pair in kept if pair[0].lower() not in named]
    return CIMultiDict(kept)


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # the asctime form carries no zone; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_epoch)
