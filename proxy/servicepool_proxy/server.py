"""Wire one pool's proxy together: listener, admin port, prober, config watcher."""

from __future__ import annotations

import asyncio
import logging
import socket

from aiohttp import web

from servicepool_api.contract import ProxyOptions
from servicepool_api.spec import ServicePool
from servicepool_proxy.compiled import build_name
from servicepool_proxy.config.kubesource import ConfigMapSource, make_core_api
from servicepool_proxy.config.watcher import ConfigGate, PoolFileWatcher
from servicepool_proxy.forwarding.forwarder import Forwarder
from servicepool_proxy.health.prober import (
    MemberPoller,
    cache_size_poller,
    capacity_poller,
    health_poller,
    model_poller,
)
from servicepool_proxy.http.body import BufferBudget
from servicepool_proxy.http.listener import FrontServer
from servicepool_proxy.http.upstream import UpstreamPool
from servicepool_proxy.observe.admin import make_admin_app
from servicepool_proxy.observe.live import add_live_routes
from servicepool_proxy.observe.metrics import ProxyMetrics
from servicepool_proxy.observe.pool_gauges import PoolGaugeCollector
from servicepool_proxy.runtime import PoolRuntime
from servicepool_proxy.tasks import cancel_and_wait

log = logging.getLogger("servicepool.proxy")


def _bound_port(site: web.BaseSite) -> int:
    server = site._server  # aiohttp keeps the asyncio server here
    assert server is not None and server.sockets
    return int(server.sockets[0].getsockname()[1])


class ProxyServer:
    """One running proxy for one pool."""

    def __init__(
        self, pool: ServicePool, options: ProxyOptions, pool_text: str | None = None,
        sockets: tuple[socket.socket, socket.socket] | None = None,
    ) -> None:  # fmt: skip
        self.options = options
        self.sockets = sockets  # (listen, admin) bound by a supervisor (workers.py), if any
        self.gate = ConfigGate(self.apply, self._reload_failed, pool_text)
        self.runtime = PoolRuntime(pool, secrets_dir=options.secrets_dir)
        self.runtime.explain = options.explain
        self.metrics = ProxyMetrics(self.runtime.name, lambda: self.runtime.members)
        self.metrics.registry.register(PoolGaugeCollector(self.runtime))
        self.shutting_down = False
        self.port = 0
        self.admin_port = 0
        self._front: FrontServer | None = None
        self._admin_runner: web.AppRunner | None = None
        self._upstream = UpstreamPool()
        self._pollers: list[MemberPoller] = []
        self._watcher: PoolFileWatcher | None = None
        self._config_map: ConfigMapSource | None = None
        self._secrets_task: asyncio.Task[None] | None = None

    def apply(self, pool: ServicePool) -> None:
        """Adopt a new version of the pool without touching connections."""
        gone = self.runtime.apply(pool)
        staying = self.runtime.balancer.by_name
        self.metrics.forget_members(m.name for m in gone if m.name not in staying)
        self.metrics.reloads.labels(self.runtime.name, "applied").inc()

    def _reload_failed(self, _: str) -> None:
        self.metrics.reloads.labels(self.runtime.name, "invalid").inc()

    async def start(self) -> None:
        """Bind both ports and start background work."""
        options = self.options
        budget = BufferBudget(options.body_buffer_bytes)
        forwarder = Forwarder(
            self.runtime, self._upstream, self.metrics, budget,
            trusted_proxies=options.trusted_proxies,
        )  # fmt: skip
        self._front = FrontServer(
            forwarder,
            idle_timeout=options.idle_timeout,
            max_header_bytes=options.max_header_bytes,
            max_head_bytes=options.max_head_bytes,
            head_timeout=options.head_timeout,
            trailer_timeout=options.trailer_timeout,
            access_log=options.access_log,
        )
        listen, admin = self.sockets or (None, None)
        self.port = await self._front.start(
            options.listen_host, options.listen_port, options.reuse_port, listen
        )
        self.admin_port = await self._start_admin(admin)

        self._pollers = [
            capacity_poller(self.runtime), model_poller(self.runtime),
            cache_size_poller(self.runtime),
        ]  # fmt: skip
        if options.active_health:
            self._pollers.append(health_poller(self.runtime, self.metrics))
        for poller in self._pollers:
            poller.start()
        self._secrets_task = asyncio.create_task(self._refresh_secrets(), name="secrets")
        if options.config_map is not None:
            namespace, name = options.config_map
            api = make_core_api(options.kubeconfig)
            self._config_map = ConfigMapSource(api, namespace, name, self.gate.offer)
            self._config_map.start()
        if options.pool_path is not None:
            config_map = self._config_map
            self._watcher = PoolFileWatcher(
                options.pool_path,
                self.gate,
                options.watch_interval,
                # The API watch is fresher than the volume; the file is the fallback.
                enabled=lambda: config_map is None or not config_map.connected,
            )
            self._watcher.start()
        log.info(
            "pool %s: proxy listening on %s:%d, admin on %s:%d, %d member(s), strategy %s, "
            "%s build",
            self.runtime.name,
            options.listen_host,
            self.port,
            options.admin_host,
            self.admin_port,
            len(self.runtime.members),
            self.runtime.spec.strategy.value,
            build_name(),
        )

    async def _start_admin(self, sock: socket.socket | None) -> int:
        """Serve the admin port (on `sock` when a supervisor bound it); returns the port."""
        options = self.options
        admin_app = make_admin_app(self.runtime, self.metrics, lambda: self.shutting_down)
        add_live_routes(admin_app, self.runtime, lambda: self.shutting_down)
        self._admin_runner = web.AppRunner(admin_app, handle_signals=False, access_log=None)
        await self._admin_runner.setup()
        site: web.BaseSite = (
            web.TCPSite(self._admin_runner, options.admin_host, options.admin_port)
            if sock is None
            else web.SockSite(self._admin_runner, sock)
        )
        await site.start()
        return _bound_port(site)

    async def _refresh_secrets(self) -> None:
        while True:
            await asyncio.sleep(self.options.watch_interval)
            self.runtime.refresh_secrets()

    async def stop(self) -> None:
        """Fail readiness, keep serving for the drain delay (and on while connections still
        arrive, up to as long again), then stop accepting, let
        in-flight requests finish within the grace period, and close."""
        self.shutting_down = True
        if self._front is not None and self.options.drain_delay > 0:
            self._front.draining = True  # every answer from now on closes its connection
            log.info("not ready; still accepting for %.1fs, then while connections arrive",
                     self.options.drain_delay)  # fmt: skip
            await self._front.accept_until_quiet(self.options.drain_delay)
        await cancel_and_wait(self._secrets_task)
        if self._watcher is not None:
            await self._watcher.stop()
        if self._config_map is not None:
            await self._config_map.stop()
        if self._front is not None:
            await self._front.shutdown(self.options.grace_seconds)
        for poller in self._pollers:
            await poller.stop()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self._upstream.close()
        log.info("pool %s: proxy stopped", self.runtime.name)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and demos)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def run_until_signalled(proxy: ProxyServer) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await proxy.start()
    await stop.wait()
    log.info("signal received: draining for up to %.0fs", proxy.options.grace_seconds)
    await proxy.stop()
