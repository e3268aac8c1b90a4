"""The proxy's front door: listens for clients and serves each one with a FrontConnection.

It sweeps every connection's idle, head and trailer deadlines, gives memory freed by closed
connections back to the system, and drains in-flight exchanges on shutdown.
"""

from __future__ import annotations

import asyncio
import socket

from servicepool_proxy.http.front import FrontConnection, Handler
from servicepool_proxy.http.heap import release_free_memory
from servicepool_proxy.tasks import cancel_and_wait

# A sweep after connections closed gives freed heap memory back, at most this often.
TRIM_SECONDS = 1.0
# While draining, the listener closes once no new connection arrived for this long.
QUIET_SECONDS = 1.0


class FrontServer:
    """Listens for clients and serves each request with `handler`."""

    def __init__(
        self, handler: Handler, *, idle_timeout: float, head_timeout: float,
        trailer_timeout: float, max_header_bytes: int, max_head_bytes: int,
        access_log: bool = False,
    ) -> None:  # fmt: skip
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.head_timeout = head_timeout
        self.trailer_timeout = trailer_timeout
        self.max_header_bytes = max_header_bytes
        self.max_head_bytes = max_head_bytes
        self.access_log = access_log
        self.connections: set[FrontConnection] = set()
        self.closed_since_trim = 0
        self.draining = False
        self.accepted = 0  # connections accepted since start
        # The serving tasks of the connections with a request in hand (in while busy).
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()  # built inside the proxy's running loop

    def _connection(self) -> FrontConnection:
        self.accepted += 1
        return FrontConnection(self)

    async def start(
        self, host: str, port: int, reuse_port: bool = False, sock: socket.socket | None = None
    ) -> int:
        """Listen (on `sock` when given: a socket bound for this process); returns the port."""
        loop = self.loop
        self._sweeper = loop.create_task(self._sweep_idle(), name="idle-sweep")
        if sock is not None:
            self._server = await loop.create_server(self._connection, sock=sock, backlog=1024)
        else:
            self._server = await loop.create_server(
                self._connection, host, port,
                reuse_port=reuse_port or None, backlog=1024, reuse_address=True,
            )  # fmt: skip
        # getattr: uvloop's `sockets` is a list where the stubs say tuple (the compiled build
        # would check that it is a tuple).
        sockets = getattr(self._server, "sockets")  # noqa: B009
        return int(sockets[0].getsockname()[1])

    async def _sweep_idle(self) -> None:
        """Close connections idle, or slow to send a head or trailers, past their deadline,
        and give memory freed by many closed connections back to the system.

        One sweep a quarter of the shortest timeout: cheaper than a timer per request, and
        a deadline is overrun by at most a quarter of that timeout.
        """
        period = max(0.05, min(self.idle_timeout, self.head_timeout, self.trailer_timeout) / 4)
        trimmed = 0.0
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for connection in list(self.connections):
                connection.check_time(now)
            if self.closed_since_trim and now - trimmed >= TRIM_SECONDS:
                self.closed_since_trim = 0
                trimmed = now
                release_free_memory()

    async def accept_until_quiet(self, delay: float) -> None:
        """Go on accepting for `delay` seconds, then on while new connections still arrive
        (one in the last QUIET_SECONDS), up to `delay` more: a load balancer slow to drop
        this listener from its rules still finds it open."""
        await asyncio.sleep(delay)
        give_up = self.loop.time() + delay
        seen = self.accepted
        while self.loop.time() < give_up:
            await asyncio.sleep(min(QUIET_SECONDS, max(0.0, give_up - self.loop.time())))
            if self.accepted == seen:
                return
            seen = self.accepted

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop accepting, let exchanges in progress finish within the grace period."""
        self.draining = True
        await cancel_and_wait(self._sweeper)
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.idle:
                connection.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_seconds)
        for connection in list(self.connections):
            connection.close()
        for task in list(self.tasks):
            task.cancel()
