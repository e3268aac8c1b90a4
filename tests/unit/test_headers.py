"""Header rules: hop-by-hop removal, forwarding headers, request ids, Retry-After."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from email.utils import format_datetime, parsedate_to_datetime

import pytest
from multidict import CIMultiDictProxy

from servicepool_proxy.http.headers import (
    HOP_BY_HOP,
    REQUEST_ID_HEADER,
    Fields,
    downstream_response_lines,
    fields_view,
    is_trusted,
    parse_retry_after,
    upstream_request_fields,
)


def headers(*pairs: tuple[str, str]) -> Fields:
    return [(name.encode(), value.encode()) for name, value in pairs]


def upstream_request_headers(
    fields: Fields, client: str | None, scheme: str, host: str | None, trusted: bool = False,
    removed: frozenset[bytes] = frozenset(),
) -> CIMultiDictProxy[str]:  # fmt: skip
    encoded = host.encode() if host is not None else None
    return fields_view(upstream_request_fields(fields, client, scheme, encoded, trusted, removed))


def upstream(
    *pairs: tuple[str, str], client: str | None = "192.0.2.7", host: str | None = None,
    trusted: bool = False,
):  # fmt: skip
    return upstream_request_headers(headers(*pairs), client, "http", host, trusted)


# --- request headers ------------------------------------------------------------------


def test_hop_by_hop_request_headers_removed() -> None:
    out = upstream(
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "Expires"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("Host", "shop.example"),
        ("Content-Length", "12"),
        ("Expect", "100-continue"),
        ("Accept", "text/plain"),
        ("Authorization", "Bearer t"),
    )
    for name in [*(n.decode() for n in HOP_BY_HOP), "host", "content-length", "expect"]:
        assert name not in out, name
    assert out["Accept"] == "text/plain"
    assert out["Authorization"] == "Bearer t"


def test_headers_named_in_connection_removed() -> None:
    out = upstream(
        ("Connection", "close, X-Secret-Hop"),
        ("Connection", " x-other ,"),
        ("X-Secret-Hop", "1"),
        ("x-Other", "2"),
        ("X-Kept", "3"),
    )
    assert "X-Secret-Hop" not in out
    assert "X-Other" not in out
    assert out["X-Kept"] == "3"


def test_header_names_are_not_removed_without_connection() -> None:
    out = upstream(("X-Secret-Hop", "1"))
    assert out["X-Secret-Hop"] == "1"


def test_repeated_headers_are_kept_in_order() -> None:
    out = upstream(("Accept", "a"), ("Cookie", "x=1"), ("Accept", "b"))
    assert out.getall("Accept") == ["a", "b"]
    assert out["Cookie"] == "x=1"


def test_x_forwarded_for_added() -> None:
    out = upstream(client="192.0.2.7")
    assert out["X-Forwarded-For"] == "192.0.2.7"


def test_x_forwarded_for_appended_for_a_trusted_proxy() -> None:
    out = upstream(
        ("X-Forwarded-For", "203.0.113.1, 198.51.100.2"), client="192.0.2.7", trusted=True
    )
    assert out.getall("X-Forwarded-For") == ["203.0.113.1, 198.51.100.2, 192.0.2.7"]


def test_x_forwarded_for_from_an_untrusted_client_is_replaced() -> None:
    out = upstream(("X-Forwarded-For", "203.0.113.1, 198.51.100.2"), client="192.0.2.7")
    assert out.getall("X-Forwarded-For") == ["192.0.2.7"]


def test_x_forwarded_for_without_client_ip() -> None:
    assert "X-Forwarded-For" not in upstream(client=None)
    assert "X-Forwarded-For" not in upstream(("X-Forwarded-For", "203.0.113.1"), client=None)
    out = upstream(("X-Forwarded-For", "203.0.113.1"), client=None, trusted=True)
    assert out["X-Forwarded-For"] == "203.0.113.1"


def test_x_forwarded_for_keeps_every_line() -> None:
    out = upstream(
        ("X-Forwarded-For", "203.0.113.1"),
        ("X-Forwarded-For", "198.51.100.2"),
        client="192.0.2.7",
        trusted=True,
    )
    assert ", ".join(out.getall("X-Forwarded-For")) == "203.0.113.1, 198.51.100.2, 192.0.2.7"


def test_x_forwarded_proto_and_host_added_if_missing() -> None:
    out = upstream_request_headers(headers(), "192.0.2.7", "https", "shop.example:8443")
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "shop.example:8443"


def test_x_forwarded_proto_and_host_kept_from_a_trusted_proxy() -> None:
    out = upstream_request_headers(
        headers(("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.example")),
        "192.0.2.7",
        "http",
        "internal:80",
        trusted=True,
    )
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "public.example"


def test_x_forwarded_proto_and_host_from_an_untrusted_client_are_replaced() -> None:
    out = upstream_request_headers(
        headers(("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "public.example")),
        "192.0.2.7",
        "http",
        "internal:80",
    )
    assert out.getall("X-Forwarded-Proto") == ["http"]
    assert out.getall("X-Forwarded-Host") == ["internal:80"]


def test_trust_is_decided_by_the_peer_address() -> None:
    networks = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert is_trusted("10.1.2.3", networks) and is_trusted("fd00::1", networks)
    assert not is_trusted("192.0.2.7", networks)
    assert not is_trusted(None, networks) and not is_trusted("10.1.2.3", ())


def test_no_x_forwarded_host_without_host() -> None:
    out = upstream_request_headers(headers(), "192.0.2.7", "http", None)
    assert "X-Forwarded-Host" not in out


def test_request_id_added_when_missing() -> None:
    first = upstream()[REQUEST_ID_HEADER]
    second = upstream()[REQUEST_ID_HEADER]
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != second


def test_request_id_kept_when_present() -> None:
    out = upstream(("x-request-id", "abc-123"))
    assert out.getall(REQUEST_ID_HEADER) == ["abc-123"]


def test_input_not_modified() -> None:
    original = headers(("Connection", "close"), ("X-Forwarded-For", "203.0.113.1"))
    snapshot = list(original)
    upstream_request_headers(original, "192.0.2.7", "http", "h")
    assert original == snapshot


def test_names_the_pool_keeps_from_members_are_removed_the_client_s_and_ours() -> None:
    out = upstream_request_headers(
        headers(("Authorization", "Bearer client"), ("X-Request-Id", "abc"), ("X-Kept", "1")),
        "192.0.2.7", "http", "h", removed=frozenset({b"authorization", b"x-forwarded-for"}),
    )  # fmt: skip
    assert "Authorization" not in out and "X-Forwarded-For" not in out
    assert out["X-Kept"] == "1" and out["X-Request-Id"] == "abc"


def test_a_trusted_proxy_s_headers_named_in_connection_are_hop_by_hop() -> None:
    out = upstream(
        ("Connection", "X-Forwarded-Proto"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", "203.0.113.1"),
        trusted=True,
    )
    assert out.getall("X-Forwarded-Proto") == ["http"]
    assert out.getall("X-Forwarded-For") == ["203.0.113.1, 192.0.2.7"]


# --- response headers -----------------------------------------------------------------


def test_response_hop_by_hop_removed_and_length_dropped_by_default() -> None:
    out = downstream_response_lines(
        [
            (b"Connection", b"keep-alive, X-Upstream-Hop"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"X-Upstream-Hop", b"1"),
            (b"Content-Length", b"42"),
            (b"Content-Type", b"text/plain"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
        ],
        keep_length=False,
    )
    assert out == [b"Content-Type: text/plain\r\n", b"Set-Cookie: a=1\r\n", b"Set-Cookie: b=2\r\n"]


def test_response_content_length_kept_when_asked() -> None:
    out = downstream_response_lines(
        [(b"Content-Length", b"42"), (b"Transfer-Encoding", b"chunked")], keep_length=True
    )
    assert out == [b"Content-Length: 42\r\n"]


def test_response_headers_the_proxy_writes_itself_are_dropped() -> None:
    out = downstream_response_lines(
        [(b"x-servicepool-member", b"forged"), (b"X-Kept", b"1")],
        keep_length=False,
        replaced=frozenset({b"x-servicepool-member"}),
    )
    assert out == [b"X-Kept: 1\r\n"]


# --- Retry-After ----------------------------------------------------------------------

NOW = parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:29:00 GMT", 60.0),
        ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),  # RFC 850 form
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: no wait
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    result = parse_retry_after(value, NOW)
    if seconds is None:
        assert result is None
    else:
        assert result == pytest.approx(seconds)


def test_parse_retry_after_round_trips_formatted_date() -> None:
    when = parsedate_to_datetime("Wed, 21 Oct 2015 08:00:00 GMT")
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(1920.0)


@pytest.fixture
def new_york_time() -> Iterator[None]:
    """Run with a local time zone far from UTC."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        yield
    finally:
        mp.undo()
        time.tzset()


@pytest.mark.usefixtures("new_york_time")
def test_parse_retry_after_gmt_date_ignores_local_zone() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", NOW) == pytest.approx(60.0)


@pytest.mark.usefixtures("new_york_time")
def test_parse_retry_after_asctime_date_is_gmt() -> None:
    assert parse_retry_after("Wed Oct 21 07:29:00 2015", NOW) == pytest.approx(60.0)


def test_parse_retry_after_odd_digits_do_not_raise() -> None:
    assert parse_retry_after("²", NOW) is None
