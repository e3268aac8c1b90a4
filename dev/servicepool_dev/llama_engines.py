"""Real llama.cpp engines (`llama-server`) on loopback ports, for tests and benchmarks.

`start_engines(model, 3, EngineOptions(slots=2))` starts three llama-server processes on free
127.0.0.1 ports and returns once each answers `GET /health` with 200; `stop_engines` stops
them (SIGTERM, then SIGKILL). The binary is `$SERVICEPOOL_LLAMA_SERVER` or the one
`e2e/engines/build-llama-server.sh` builds and caches. docs/engines.md says what the engines
expose and how they pick slots.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "e2e" / "engines" / "build-llama-server.sh"
HOST = "127.0.0.1"


class EngineUnavailable(RuntimeError):
    """No llama-server binary: it is not built and could not be."""


@dataclass(frozen=True)
class EngineOptions:
    """The knobs of one llama-server; each becomes a command-line flag."""

    slots: int = 2  # -np: requests decoded at once; always explicit (the default is "auto")
    context: int = 2048  # -c: KV cells in all, split evenly over the slots
    cache_ram_mib: int = 0  # --cache-ram: host copies of idle slots' prompts (0: none)
    threads: int = 1  # -t and -tb
    extra: tuple[str, ...] = ()  # any other flags, appended as they are


@dataclass
class LlamaEngine:
    """One running llama-server process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def get_json(self, path: str) -> Any:
        """GET a JSON endpoint of the engine (`/props`, `/slots`, `/health`)."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.load(response)

    def get_text(self, path: str) -> str:
        """GET a text endpoint of the engine (`/metrics`)."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return str(response.read().decode())

    def stop(self, seconds: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `seconds`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(seconds)


def llama_server_binary(build_script: Path = BUILD_SCRIPT) -> Path:
    """`$SERVICEPOOL_LLAMA_SERVER`, else the build script's binary (built first if not cached)."""
    configured = os.environ.get("SERVICEPOOL_LLAMA_SERVER")
    if configured:
        return Path(configured)
    if not build_script.is_file():
        raise EngineUnavailable(f"{build_script} not found; set SERVICEPOOL_LLAMA_SERVER")
    built = subprocess.run([str(build_script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = built.stdout.strip().splitlines()
    if built.returncode != 0 or not lines:
        raise EngineUnavailable(f"{build_script} failed with exit status {built.returncode}")
    return Path(lines[-1])


def engine_command(binary: Path, model: Path, port: int, options: EngineOptions) -> list[str]:
    """The llama-server command line for one engine."""
    return [
        str(binary), "--model", str(model), "--host", HOST, "--port", str(port),
        "--parallel", str(options.slots), "--ctx-size", str(options.context),
        "--cache-ram", str(options.cache_ram_mib),
        "--threads", str(options.threads), "--threads-batch", str(options.threads),
        "--metrics", "--slots", "--no-webui", *options.extra,
    ]  # fmt: skip


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nobody listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def launch_engine(
    binary: Path, model: Path, name: str, port: int, options: EngineOptions, log_dir: Path
) -> LlamaEngine:
    """Start one llama-server (not yet waiting for it); its output goes to log_dir/NAME.log."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            engine_command(binary, model, port, options),
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return LlamaEngine(name, port, process, log)


def wait_until_healthy(engine: LlamaEngine, seconds: float = 60.0) -> None:
    """Block until `GET /health` answers 200 (503 while the model loads)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            tail = engine.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{engine.name} exited with {engine.process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(engine.url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{engine.name} not healthy after {seconds} s (log: {engine.log})")


def start_engines(
    model: Path,
    count: int,
    options: EngineOptions | None = None,
    *,
    binary: Path | None = None,
    log_dir: Path | None = None,
    prefix: str = "engine",
) -> list[LlamaEngine]:
    """Start `count` engines named PREFIX-0.. on free ports; return once all are healthy."""
    binary = binary or llama_server_binary()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="llama-engines-"))
    options = options or EngineOptions()
    engines: list[LlamaEngine] = []
    try:
        for index, port in enumerate(free_ports(count)):
            name = f"{prefix}-{index}"
            engines.append(launch_engine(binary, model, name, port, options, log_dir))
        for engine in engines:
            wait_until_healthy(engine)
    except BaseException:
        stop_engines(engines)
        raise
    return engines


def stop_engines(engines: list[LlamaEngine]) -> None:
    """Stop every engine (each gets SIGTERM at once, then is waited for)."""
    for engine in engines:
        if engine.process.poll() is None:
            engine.process.send_signal(signal.SIGTERM)
    for engine in engines:
        engine.stop()


@contextmanager
def running_engines(
    model: Path, count: int, options: EngineOptions | None = None, **keywords: Any
) -> Iterator[list[LlamaEngine]]:
    """`start_engines` for a `with` block; the engines are stopped when it ends."""
    engines = start_engines(model, count, options, **keywords)
    try:
        yield engines
    finally:
        stop_engines(engines)
