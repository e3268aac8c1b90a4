"""What the proxy writes on a member connection: the address it dials and the request head."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from servicepool_proxy.http.member_connection import Address
from servicepool_proxy.http.upstream import encode_head


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://10.0.0.7:8000", ("http", "10.0.0.7", 8000, "10.0.0.7:8000", "")),
        ("http://svc.ns.svc", ("http", "svc.ns.svc", 80, "svc.ns.svc", "")),
        ("https://api.example/v1/", ("https", "api.example", 443, "api.example", "/v1")),
        ("https://api.example:8443", ("https", "api.example", 8443, "api.example:8443", "")),
        ("http://[::1]:9000/base", ("http", "::1", 9000, "[::1]:9000", "/base")),
    ],
)
def test_address_from_a_member_url(url: str, expected: tuple[str, str, int, str, str]) -> None:
    address = Address.parse(url)
    assert (address.scheme, address.host, address.port, address.host_header,
            address.path_prefix) == expected  # fmt: skip


def head_lines(head: bytes) -> list[str]:
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].decode().split("\r\n")


ADDRESS = Address.parse("http://10.0.0.7:8000/base")


def test_request_line_host_and_prefix() -> None:
    head, chunked = encode_head("GET", ADDRESS, "/x?q=1", [(b"Accept", b"*/*")], None)
    assert head_lines(head) == ["GET /base/x?q=1 HTTP/1.1", "Host: 10.0.0.7:8000", "Accept: */*"]
    assert not chunked


def test_a_buffered_body_is_sized() -> None:
    head, chunked = encode_head("POST", ADDRESS, "/", [], b"hello")
    assert "Content-Length: 5" in head_lines(head) and not chunked


@pytest.mark.parametrize(("method", "sized"), [("POST", True), ("PUT", True), ("GET", False)])
def test_an_empty_body_is_sized_only_where_a_body_is_expected(method: str, sized: bool) -> None:
    for body in (None, b""):
        head, _ = encode_head(method, ADDRESS, "/", [], body)
        assert ("Content-Length: 0" in head_lines(head)) is sized


async def _stream() -> AsyncIterator[bytes]:
    yield b"part"


def test_a_stream_of_unknown_length_goes_chunked() -> None:
    head, chunked = encode_head("POST", ADDRESS, "/", [], _stream())
    assert "Transfer-Encoding: chunked" in head_lines(head) and chunked


def test_a_stream_of_known_length_keeps_its_length() -> None:
    head, chunked = encode_head("POST", ADDRESS, "/", [(b"Content-Length", b"4")], _stream())
    lines = head_lines(head)
    assert "Content-Length: 4" in lines and "Transfer-Encoding: chunked" not in lines
    assert not chunked


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb"])
def test_a_header_value_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_head("GET", ADDRESS, "/", [(b"X-Token", value.encode())], None)


def test_non_ascii_values_pass_through_byte_for_byte() -> None:
    head, _ = encode_head("GET", ADDRESS, "/", [(b"X-Name", b"caf\xc3\xa9\xff")], None)
    assert b"X-Name: caf\xc3\xa9\xff\r\n" in head
