"""Several proxy processes on one port, as nginx's worker_processes.

Each worker is a whole proxy of its own (balancer, probes, config watcher: shared-nothing),
started from the same command line with a listening socket bound with SO_REUSEPORT, so the
kernel spreads connections across the workers, and a private admin socket. The supervisor
serves the one admin port (merging the workers' /metrics and /status), starts a worker again
when one dies, and passes SIGTERM on to every worker, whose drain then runs as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from servicepool_api.contract import ProxyOptions
from servicepool_proxy.observe.workers_admin import WorkersAdmin

log = logging.getLogger("servicepool.proxy")

# In a worker's environment: "LISTEN_FD,ADMIN_FD,SUPERVISOR_PID": the sockets its supervisor
# bound for it, and who that is.
WORKER_ENV = "SERVICEPOOL_WORKER_FDS"
WATCH_SECONDS = 0.2  # how often the supervisor looks for workers that died
RESTART_SECONDS = 1.0  # at most one restart of a worker this often
_PR_SET_PDEATHSIG = 1


def usable_cpus() -> int:
    """CPUs this process may run on, bounded by its cgroup's CPU quota (whole CPUs, >= 1)."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def worker_count(requested: int) -> int:
    """How many workers `--workers` asks for (0: auto)."""
    return requested or usable_cpus()


def bound_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to host:port, for a worker to listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_sockets() -> tuple[socket.socket, socket.socket] | None:
    """In a worker: the (listen, admin) sockets its supervisor bound for it; else None.

    A worker also asks for SIGTERM should its supervisor die, so it drains and exits.
    """
    given = os.environ.pop(WORKER_ENV, None)
    if not given:
        return None
    listen_fd, admin_fd, supervisor = (int(part) for part in given.split(","))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request above: nobody to serve
        raise SystemExit("servicepool-proxy: the supervisor of this worker is gone")
    return socket.socket(fileno=listen_fd), socket.socket(fileno=admin_fd)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    admin_port: int
    started: float


class Supervisor:
    """Starts `count` workers with the proxy's own arguments and watches over them."""

    def __init__(self, options: ProxyOptions, count: int, argv: list[str]) -> None:
        self.options = options
        self.count = count
        self.argv = argv
        self.port = options.listen_port  # the first worker's socket settles it when 0
        self.workers: list[Worker] = []
        self.stopping = False

    def spawn(self) -> Worker:
        """A new worker, with sockets bound here so the port is shared and known."""
        listen = bound_socket(self.options.listen_host, self.port, reuse_port=True)
        admin = bound_socket("127.0.0.1", 0, reuse_port=False)
        with listen, admin:
            self.port = listen.getsockname()[1]
            fds = (listen.fileno(), admin.fileno())
            process = subprocess.Popen(
                [sys.executable, "-m", "servicepool_proxy.cli", *self.argv],
                env={**os.environ, WORKER_ENV: ",".join(map(str, (*fds, os.getpid())))},
                pass_fds=fds,
            )
            return Worker(process, admin.getsockname()[1], time.monotonic())

    def worker_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{worker.admin_port}" for worker in self.workers]

    async def run(self) -> None:
        """Serve the admin port and keep the workers running until SIGTERM or SIGINT."""
        options = self.options
        self.workers = [self.spawn() for _ in range(self.count)]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        admin = web.AppRunner(WorkersAdmin(self.worker_urls, lambda: self.stopping).app(),
                              handle_signals=False, access_log=None)  # fmt: skip
        await admin.setup()
        await web.TCPSite(admin, options.admin_host, options.admin_port).start()
        log.info(
            "%d workers listening on %s:%d, admin on %s:%d",
            self.count, options.listen_host, self.port, options.admin_host, options.admin_port,
        )  # fmt: skip
        try:
            while not stop.is_set():
                self._restart_dead()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), WATCH_SECONDS)
            self.stopping = True
            log.info("signal received: draining %d workers", self.count)
            await self._stop_workers()
        finally:
            await admin.cleanup()

    def _restart_dead(self) -> None:
        for index, worker in enumerate(self.workers):
            code = worker.process.poll()
            if code is not None and time.monotonic() - worker.started >= RESTART_SECONDS:
                log.warning("worker %d (pid %d) exited with %s: starting it again",
                            index, worker.process.pid, code)  # fmt: skip
                self.workers[index] = self.spawn()

    async def _stop_workers(self) -> None:
        """SIGTERM to every worker; each drains; whatever outlasts the drain is killed."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.options.longest_shutdown + 5
        while time.monotonic() < deadline:
            if all(worker.process.poll() is not None for worker in self.workers):
                return
            await asyncio.sleep(WATCH_SECONDS / 2)
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
