"""Helpers shared by the test suites: real member processes and polling."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servicepool_proxy.server import free_port


@dataclass
class MemberProcess:
    """A member server in its own process, so it can be killed for real."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)


def wait_for_port(host: str, port: int, seconds: float, process: subprocess.Popen[bytes]) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode}") from None
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {seconds}s")


def start_member_process(
    name: str,
    port: int | None = None,
    delay: float = 0.0,
    host: str = "127.0.0.1",
    extra: list[str] | None = None,
) -> MemberProcess:
    """Start `servicepool-sample-member` and wait until it accepts connections."""
    port = port or free_port(host)
    process = subprocess.Popen(
        [sys.executable, "-m", "servicepool_dev.samplemember", "--name", name,
         "--host", host, "--port", str(port), "--delay", str(delay), *(extra or [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(host, port, 15, process)
    except RuntimeError:
        process.kill()
        raise
    return MemberProcess(name, port, process, host)


def eventually(predicate: Callable[[], object], seconds: float, step: float = 0.1) -> object:
    """Poll a condition (synchronously) until it is truthy; return its last value."""
    deadline = time.monotonic() + seconds
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = predicate()
    return value


@dataclass
class ProxyProcess:
    """`servicepool-proxy` in its own process (uvloop, as deployed), so its memory can be read."""

    port: int
    admin_port: int
    process: subprocess.Popen[bytes]

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match is not None
        return int(match.group(1)) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def proxy_command(console_script: bool = False) -> list[str]:
    """How to run the proxy: `python -m servicepool_proxy.cli`, or the installed console script
    `servicepool-proxy` (the command users and the operator's Deployments run)."""
    if not console_script:
        return [sys.executable, "-m", "servicepool_proxy.cli"]
    script = shutil.which("servicepool-proxy", path=os.path.dirname(sys.executable))
    assert script is not None, "servicepool-proxy is not installed beside this Python"
    return [script]


def start_proxy_process(
    pool_dir: Path, spec: dict[str, Any], *flags: str, console_script: bool = False
) -> ProxyProcess:
    """Write a pool file with `spec` and start a proxy on it; waits until it listens."""
    pool = pool_dir / "pool.yaml"
    pool.write_text(yaml.safe_dump({"apiVersion": "servicepool.dev/v1alpha1",
                                    "kind": "ServicePool", "metadata": {"name": "p"},
                                    "spec": spec}))  # fmt: skip
    port, admin = free_port(), free_port()
    process = subprocess.Popen(
        [*proxy_command(console_script), "--pool", str(pool),
         "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
         "--log-level", "ERROR", *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 20, process)
    except RuntimeError:
        process.kill()
        raise
    return ProxyProcess(port, admin, process)
