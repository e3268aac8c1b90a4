"""The members a benchmark runs in front of: real llama.cpp engines or simulated vLLM engines.

A fleet starts its members once, empties their caches before each run (`reset`), reads their
own prompt-cache counters (`counters`: prompt tokens and the cached ones among them, per
member) and stops them. Real engines are `llama-server` processes with the tiny model
(servicepool_dev.llama_engines; docs/engines.md); reset restarts them, so each run starts
with empty slots and an empty host prompt cache.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from servicepool_api.signals import parse_prometheus_values
from servicepool_dev import llama_engines
from servicepool_dev.tiny_gguf import write_tiny_gguf

ROOT = Path(__file__).resolve().parents[2]

# Three engines of two slots each, 1,024 KV cells a slot, a host prompt cache of 12 MiB (the
# tiny model's KV is 8 KiB a token: about 1,500 tokens, two of the workloads' prompts), one
# thread each: the 2 cores also run the client and the router.
# The alias is the model id the engines list in /v1/models and the workloads ask for.
LLAMA_MODEL = "tiny"
LLAMA_OPTIONS = llama_engines.EngineOptions(
    slots=2, context=2048, cache_ram_mib=12, extra=("--alias", LLAMA_MODEL)
)
LLAMA_ENGINES = 3
SIM_MEMBERS = 4
# servicepool's capacity signal for each engine kind: its own Prometheus page.
LLAMA_CAPACITY = {
    "source": "metrics", "intervalSeconds": 0.2, "staleAfterSeconds": 2,
    "metrics": {"queued": "llamacpp:requests_deferred",
                "running": "llamacpp:requests_processing", "cacheUsage": None},
}  # fmt: skip
SIM_CAPACITY = {"source": "metrics", "intervalSeconds": 0.2, "staleAfterSeconds": 2}


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return parse_prometheus_values(response.read().decode())


class Fleet(Protocol):
    """Members of one engine kind, and what a benchmark must know about them."""

    kind: str
    urls: list[str]
    model: str  # the model id the engines serve
    capacity: dict[str, Any]  # servicepool's `capacity` block for these engines
    probe_words: int  # words of a probe prefix: a few must fit in the fleet's caches
    replies_match_schedule: bool  # the schedule's next turns carry the engine's own replies

    def reset(self) -> None: ...
    def counters(self) -> dict[str, tuple[float, float]]: ...
    def describe(self) -> dict[str, object]: ...
    def stop(self) -> None: ...


class LlamaFleet:
    """llama-server engines with the tiny random-weight model."""

    kind = "llama.cpp"
    model = LLAMA_MODEL
    capacity = LLAMA_CAPACITY
    probe_words = 400  # 4 prefixes in 6 slots of 1,024 tokens
    replies_match_schedule = False  # a real model writes its own replies

    def __init__(self, tmp: Path, count: int = LLAMA_ENGINES,
                 options: llama_engines.EngineOptions = LLAMA_OPTIONS) -> None:  # fmt: skip
        self.tmp, self.count, self.options = tmp, count, options
        self.model_path = tmp / "tiny.gguf"
        write_tiny_gguf(self.model_path)
        self.binary = llama_engines.llama_server_binary()
        self.engines = self._start()
        self.urls = [e.url for e in self.engines]

    def _start(self, ports: list[int] | None = None) -> list[llama_engines.LlamaEngine]:
        engines = []
        for index in range(self.count):
            port = ports[index] if ports else llama_engines.free_ports(1)[0]
            engines.append(llama_engines.launch_engine(
                self.binary, self.model_path, f"engine-{index}", port, self.options, self.tmp
            ))  # fmt: skip
        for engine in engines:
            llama_engines.wait_until_healthy(engine)
        return engines

    def reset(self) -> None:
        """Restart every engine on its port: empty slots, empty host prompt cache."""
        ports = [e.port for e in self.engines]
        llama_engines.stop_engines(self.engines)
        self.engines = self._start(ports)

    def counters(self) -> dict[str, tuple[float, float]]:
        """(prompt tokens, cached prompt tokens) per engine, from its own /metrics."""
        out = {}
        for engine in self.engines:
            values = _metrics(engine.url)
            cached = values.get("llamacpp:prompt_tokens_cached_total", 0.0)
            computed = values.get("llamacpp:prompt_tokens_total", 0.0)
            out[engine.name] = (computed + cached, cached)
        return out

    def describe(self) -> dict[str, object]:
        props = self.engines[0].get_json("/props")
        return {
            "engine": f"llama.cpp llama-server {props.get('build_info', '?')}",
            "engines": self.count,
            "slots": self.options.slots,
            "contextPerSlot": self.options.context // self.options.slots,
            "cacheRamMiB": self.options.cache_ram_mib,
            "threads": self.options.threads,
            "model": "tiny random-weight llama GGUF (servicepool_dev.tiny_gguf)",
        }

    def stop(self) -> None:
        llama_engines.stop_engines(self.engines)


class SimFleet:
    """Simulated vLLM engines (bench/llm/engine.py) in one process."""

    kind = "simulated vLLM"
    model = "sim-8b"
    capacity = SIM_CAPACITY
    probe_words = 1200
    replies_match_schedule = True

    def __init__(self, tmp: Path, count: int = SIM_MEMBERS) -> None:
        ports = llama_engines.free_ports(count)
        argv = [sys.executable, str(ROOT / "bench/llm/member.py")]
        for port in ports:
            argv += ["--listen", f"127.0.0.1:{port}"]
        log = open(tmp / "members.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        from bench.llm.peers import wait_for_port

        for port in ports:
            wait_for_port(port, self.process)
        self.urls = [f"http://127.0.0.1:{p}" for p in ports]

    def reset(self) -> None:
        for url in self.urls:
            request = urllib.request.Request(f"{url}/control/reset", data=b"", method="POST")
            urllib.request.urlopen(request, timeout=5).read()

    def counters(self) -> dict[str, tuple[float, float]]:
        """(prompt tokens queried, hit) per member, from the simulated vLLM /metrics."""
        out = {}
        for index, url in enumerate(self.urls):
            values = _metrics(url)
            out[f"m{index}"] = (
                values.get("vllm:prefix_cache_queries_total", 0.0),
                values.get("vllm:prefix_cache_hits_total", 0.0),
            )
        return out

    def describe(self) -> dict[str, object]:
        return {"engine": "simulated vLLM (bench/llm/engine.py)", "engines": len(self.urls)}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start(kind: str, tmp: Path) -> Fleet:
    """A fleet of the kind named: llama or sim."""
    if kind == "llama":
        return LlamaFleet(tmp)
    if kind == "sim":
        return SimFleet(tmp)
    raise ValueError(f"unknown engine kind {kind!r}: llama or sim")
