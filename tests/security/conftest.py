"""The proxy suite's fixtures: real member servers and proxies on 127.0.0.1."""

from tests.proxy.conftest import client, handler_servers, members, proxy  # noqa: F401
