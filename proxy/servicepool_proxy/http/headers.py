"""Header rules for a reverse proxy: hop-by-hop removal and forwarding headers."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

from servicepool_api.contract import Networks

HOP_BY_HOP: Final = frozenset(
    h.lower().encode()
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
_REQUEST_DROP: Final = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
_RESPONSE_DROP: Final = HOP_BY_HOP | {b"content-length"}
# What a client says about earlier hops is believed only from a trusted proxy. Forwarded
# (RFC 7239) and X-Real-IP are not written by the proxy: they pass only from a trusted peer.
_FORWARDING: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip"}
)
_UNTRUSTED_REQUEST_DROP: Final = _REQUEST_DROP | _FORWARDING
MEMBER_HEADER = "X-ServicePool-Member"
REQUEST_ID_HEADER = "X-Request-Id"
_SPELLINGS_KEPT: Final = 512
Fields = list[tuple[bytes, bytes]]  # header fields as llhttp hands them: raw name and value


class Names:
    """Lower-case header names, matched against names as spelled on the wire: a name whose
    length none of them has is told apart at once, the usual spellings (Content-Length,
    content-length) by comparison, and others are lowered once and remembered (a few
    hundred spellings of under 63 bytes at most)."""

    __slots__ = ("_seen", "_usual", "lengths", "names")

    def __init__(self, names: frozenset[bytes]) -> None:
        self.names = names
        self.lengths = length_mask(names)
        self._usual: list[list[tuple[bytes, bytes]]] = [[] for _ in range(63)]  # by length
        for name in sorted(names):
            if len(name) < 63:
                title = b"-".join(part.capitalize() for part in name.split(b"-"))
                self._usual[len(name)] += [(title, name), (name, name)]
        self._seen: dict[bytes, bytes] = {}  # spelling -> lowered, or b"" for none of these

    def match(self, name: bytes) -> bytes | None:
        """`name` lower-cased when it is one of these names, else None."""
        size = len(name)
        if size >= 63:
            lowered = name.lower()
            return lowered if lowered in self.names else None
        if not (self.lengths >> size) & 1:
            return None
        for spelling, lowered in self._usual[size]:
            if name == spelling:
                return lowered
        seen = self._seen.get(name)
        if seen is None:
            if len(self._seen) >= _SPELLINGS_KEPT:
                self._seen.clear()
            lowered = name.lower()
            seen = self._seen[name] = lowered if lowered in self.names else b""
        return seen or None

    def among(self, fields: Fields) -> bool:
        """Whether a field has one of these names."""
        return any(self.match(name) is not None for name, _ in fields)


def fields_view(fields: Fields) -> CIMultiDictProxy[str]:
    """Header fields as a case-insensitive view of str names and values (for the readers
    that want one; the forwarding path reads the fields)."""
    return CIMultiDictProxy(CIMultiDict([
        (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        for name, value in fields
    ]))  # fmt: skip


def length_mask(names: Iterable[bytes]) -> int:
    """Bit n set for each name n bytes long (names of 63 bytes or more are not marked:
    Names.match lowers every such name)."""
    mask = 0
    for name in names:
        if len(name) < 63:
            mask |= 1 << len(name)
    return mask


# What a Connection header usually says: no other header named hop-by-hop.
_PLAIN_CONNECTION: Final = Names(frozenset({b"keep-alive", b"close"}))


def _connection_tokens(values: Iterable[bytes]) -> set[bytes]:
    """Header names a sender listed in its Connection headers: those are hop-by-hop too."""
    tokens: set[bytes] = set()
    for raw in values:
        for token in raw.decode("utf-8", "surrogateescape").split(","):
            if token.strip():
                tokens.add(token.strip().lower().encode("utf-8", "surrogateescape"))
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
        self._hex = b""
        self._at = 0

    def next(self) -> bytes:
        at = self._at
        if at >= len(self._hex):
            self._hex = os.urandom(4096).hex().encode()
            at = 0
        self._at = at + 32
        return self._hex[at : at + 32]

    def forget(self) -> None:
        """Drop the drawn ids (a forked child must not hand out its parent's)."""
        self._hex = b""


_request_ids = RequestIds()
os.register_at_fork(after_in_child=_request_ids.forget)


_XFF: Final = b"X-Forwarded-For"
_XFP: Final = b"X-Forwarded-Proto"
_XFH: Final = b"X-Forwarded-Host"
_REQUEST_ID: Final = REQUEST_ID_HEADER.encode()
# Kept, but looked for: a trusted peer's forwarding headers, and a client's request id.
_REQUEST_NOTED: Final = frozenset({b"x-forwarded-for", b"x-forwarded-proto",
                                   b"x-forwarded-host", b"x-request-id"})  # fmt: skip
_RequestDrops = dict[frozenset[bytes], tuple[Names, frozenset[bytes]]]
_request_drops: Final[tuple[_RequestDrops, _RequestDrops]] = ({}, {})  # untrusted, trusted


def _request_drop(trusted: bool, extra: frozenset[bytes]) -> tuple[Names, frozenset[bytes]]:
    """The names a request field is dropped for (with `extra`, those the client listed in
    Connection and those the pool keeps from members), and them with the noted names."""
    drops = _request_drops[1 if trusted else 0]
    prepared = drops.get(extra)
    if prepared is None:
        if len(drops) >= 64:
            drops.clear()
        dropped = (_REQUEST_DROP if trusted else _UNTRUSTED_REQUEST_DROP) | extra
        prepared = drops[extra] = (Names(dropped | _REQUEST_NOTED), dropped)
    return prepared


def upstream_request_fields(
    fields: Fields, client_ip: str | None, scheme: str, host: bytes | None,
    trusted: bool = False, removed: frozenset[bytes] = frozenset(),
) -> Fields:  # fmt: skip
    """The client's header fields as they go to a member (`removed`: lower-case names the
    pool keeps from members, the client's and ours alike).

    X-Forwarded-For/-Proto/-Host describe this connection; a `trusted` peer's own values
    are kept (its For list is extended with its address).
    """
    extra = removed
    while True:
        names, dropped = _request_drop(trusted, extra)
        out: Fields = []
        listed: list[bytes] = []  # Connection values
        prior: list[bytes] = []  # a trusted peer's X-Forwarded-For values
        has_id = has_proto = has_host = False
        for pair in fields:
            lowered = names.match(pair[0])
            if lowered is not None:
                if lowered in dropped:
                    if lowered == b"connection":
                        listed.append(pair[1])
                    continue
                if lowered == b"x-request-id":
                    has_id = True
                elif lowered == b"x-forwarded-for" and client_ip:
                    prior.append(pair[1])  # (only a trusted peer's gets here)
                    continue
                elif lowered == b"x-forwarded-proto":
                    has_proto = True
                elif lowered == b"x-forwarded-host":
                    has_host = True
            out.append(pair)
        if not listed:
            break
        tokens = _connection_tokens(listed)
        if tokens <= dropped:
            break
        extra = extra | tokens  # names the client listed in Connection are hop-by-hop too
    theirs = len(out)
    if client_ip:
        ip = client_ip.encode()
        out.append((_XFF, b", ".join([*prior, ip]) if prior else ip))
    if not has_proto:
        out.append((_XFP, b"http" if scheme == "http" else scheme.encode()))
    if host and not has_host:
        out.append((_XFH, host))
    if not has_id:
        out.append((_REQUEST_ID, _request_ids.next()))
    if removed:  # ours too
        out[theirs:] = [pair for pair in out[theirs:] if pair[0].lower() not in removed]
    return out


_response_drops: Final[tuple[dict[frozenset[bytes], Names], ...]] = ({}, {})  # by keep_length


def field_line(name: bytes, value: bytes) -> bytes:
    """A header field as a line of a head."""
    return b"%b: %b\r\n" % (name, value)


def downstream_response_lines(
    fields: Fields, keep_length: bool, replaced: frozenset[bytes] = frozenset()
) -> list[bytes]:
    """A member's response header fields as they go to the client, as lines of the head
    (`replaced`: lower-case names the proxy writes itself)."""
    drops = _response_drops[1 if keep_length else 0]
    drop = drops.get(replaced)
    if drop is None:
        names = HOP_BY_HOP if keep_length else _RESPONSE_DROP
        drop = drops[replaced] = Names(names | replaced)
    return _response_lines(fields, drop)


def _response_lines(fields: Fields, drop: Names) -> list[bytes]:
    lines: list[bytes] = []
    listed: list[bytes] = []  # Connection values
    for name, value in fields:
        lowered = drop.match(name)
        if lowered is not None:
            if lowered == b"connection":
                listed.append(value)
            continue
        lines.append(field_line(name, value))
    if listed and not (len(listed) == 1 and _PLAIN_CONNECTION.match(listed[0]) is not None):
        named = _connection_tokens(listed)
        if not named <= drop.names:  # usually just "keep-alive" or "close"
            return _response_lines(fields, Names(drop.names | named))  # hop-by-hop too
    return lines


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
