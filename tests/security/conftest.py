"""The proxy suite's fixtures: real member servers and proxies on 127.0.0.1."""

from tests.proxy.conftest import (  # noqa: F401
    client,
    handler_servers,
    members,
    proxy,
    raw_member,
    recorded,
)
