"""Real llama.cpp engines for the engine tier: the tiny model and three llama-servers.

The engines live for the whole session; each test puts its own proxy in front of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servicepool_dev.llama_engines import (
    EngineOptions,
    EngineUnavailable,
    LlamaEngine,
    llama_server_binary,
    running_engines,
)
from servicepool_dev.tiny_gguf import write_tiny_gguf
from tests.support import ProxyProcess, start_proxy_process

# 2 slots of 1,024 KV cells each; 4 MiB of host prompt cache holds about 500 tokens of this
# model's KV (8 KiB a token), so an engine keeps a prompt or two it had to evict, not more.
# The alias is the model id the engines list in /v1/models (the proxy discovers it and routes
# requests naming it) and the tests ask for.
ENGINE_OPTIONS = EngineOptions(slots=2, context=2048, cache_ram_mib=4, extra=("--alias", "tiny"))
ENGINES = 3


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """The llama-server binary (built and cached by e2e/engines/build-llama-server.sh)."""
    try:
        return llama_server_binary()
    except EngineUnavailable as error:
        pytest.skip(f"no llama-server ({error}): build it with e2e/engines/build-llama-server.sh")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight GGUF (servicepool_dev.tiny_gguf), written once a session."""
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf")


@pytest.fixture(scope="session")
def engines(
    llama_server: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LlamaEngine]]:
    """Three healthy llama-servers on loopback ports, stopped after the session."""
    logs = tmp_path_factory.mktemp("engine-logs")
    with running_engines(
        tiny_model, ENGINES, ENGINE_OPTIONS, binary=llama_server, log_dir=logs
    ) as started:
        yield started


@pytest.fixture
def engine_pool(
    engines: list[LlamaEngine], tmp_path: Path
) -> Iterator[Callable[..., ProxyProcess]]:
    """Factory: `engine_pool("cacheAware")` runs the `servicepool-proxy` console script on a
    pool of the engines with that strategy; stopped after the test."""
    started: list[ProxyProcess] = []

    def start(strategy: str, **spec: Any) -> ProxyProcess:
        members = [{"name": engine.name, "url": engine.url} for engine in engines]
        health = {"path": "/health", "intervalSeconds": 0.5, "timeoutSeconds": 0.4}
        document = {"members": members, "strategy": strategy, "healthCheck": health, **spec}
        proxy = start_proxy_process(tmp_path, document, console_script=True)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
