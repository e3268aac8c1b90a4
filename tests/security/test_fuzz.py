"""A bounded fuzz of the HTTP front door: random request lines, headers and bodies, sent raw
to a proxy process; it must answer or close, never crash, and keep serving."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import start_member_process, start_proxy_process


@pytest.fixture(scope="module")
def proxy_port(tmp_path_factory) -> Iterator[int]:
    member = start_member_process("fuzz")
    spec = {"members": [{"name": "m", "url": member.url}],
            "healthCheck": {"enabled": False}, "timeouts": {"requestSeconds": 2}}  # fmt: skip
    proxy = start_proxy_process(tmp_path_factory.mktemp("fuzz"), spec, "--idle-timeout", "2")
    yield proxy.port
    assert proxy.process.poll() is None, "the proxy died during the fuzz run"
    proxy.stop()
    member.kill()


token = st.text(st.sampled_from("abcdefGHIJ-_./%?=&:;, \t\x00\x7f\xff"), max_size=20)
request_line = st.one_of(
    st.builds(lambda m, p, v: f"{m} {p} {v}".encode("latin-1"),
              st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "G\x00T", ""]),
              token.map(lambda t: "/" + t), st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/9"])),
    st.binary(max_size=60),
)  # fmt: skip
header = st.tuples(
    st.one_of(st.sampled_from(["Content-Length", "Transfer-Encoding", "Host", "Connection",
                               "Expect", "X-Request-Id", "Cookie"]), token),
    st.one_of(st.sampled_from(["chunked", "0", "5", "-1", "99999999999", "close", "100-continue"]),
              token),
)  # fmt: skip


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request_line, st.lists(header, max_size=6), st.binary(max_size=200))
def test_front_door_survives_random_requests(
    proxy_port: int, line: bytes, headers: list[tuple[str, str]], body: bytes
):
    raw = line + b"\r\n" + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
    raw += b"\r\n" + body
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        try:
            answer = sock.recv(64)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1."), answer
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy_port}/ok", timeout=5) as response:
        assert response.status == 200
