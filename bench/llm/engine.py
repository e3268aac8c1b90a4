"""A simulated LLM inference engine (vLLM-like), several of them in one asyncio process.

    python bench/llm/member.py --listen 127.0.0.1:8001 --listen 127.0.0.1:8002 ...

Each --listen is one member: its own scheduler, KV cache and counters, named m0, m1, ... in
order. One process hosts them all to save CPU; the simulated GPU time is asyncio.sleep, so the
members do not compete for the CPU the way real GPUs would not.

What is simulated, per member (constants below, on the order of one GPU serving an 8B model
such as Llama-3-8B in bf16 on a 24 GB card):
- continuous batching: at most MAX_RUNNING sequences run; the rest wait FCFS. A sequence is
  admitted only when the KV cache can hold its prompt plus max_tokens;
- chunked prefill: every step spends at most STEP_TOKEN_BUDGET tokens, one per decoding
  sequence and the rest on prompts; step time = DECODE_STEP_SECONDS
  + DECODE_SECONDS_PER_SEQUENCE * decoding + prefill tokens / PREFILL_TOKENS_PER_SECOND. Only
  the uncached part of a prompt is prefilled, and a long prefill slows every decoding
  sequence's next token, as on a real GPU;
- a prefix cache of KV_BLOCKS blocks of 16 tokens, found by chained block hashes (vLLM's
  automatic prefix caching): prompt blocks are shared as soon as their prefill is done, the
  blocks of a finished sequence (prompt and reply) stay cached until evicted, least recently
  used first and, like vLLM, a sequence's tail before its head (so eviction shortens a cached
  prefix instead of breaking it). Like vLLM, at least the last prompt token is always computed;
- tokens are whitespace words (bench/llm/text.py); the reply is deterministic in the prompt;
- OpenAI /v1/chat/completions and /v1/completions, streamed (SSE, with a final usage chunk
  when stream_options.include_usage is set) or as one JSON body with usage. Every chunk and
  response names the member in `system_fingerprint` and the `x-member` header; usage carries
  prompt_tokens_details.cached_tokens (the engine-side prefix hit of that request);
- vLLM's metric names on /metrics (old and new spellings, and vllm:cache_config_info with
  num_gpu_blocks and block_size), /v1/status in the JSON shape of servicepool's capacity
  signal, vLLM's /v1/models, /version, /health and /ping, vLLM's tokenizer and render
  endpoints (bench/llm/tokenize_api.py: what routers call for token ids), and POST
  /control/reset (the bench empties queues and caches between runs).

SSE events carry up to TOKENS_PER_EVENT tokens to spare CPU; the first token is always sent
alone as soon as it exists, so time to first token is exact.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import OrderedDict
from typing import Any

from bench.llm.text import BLOCK_TOKENS, block_hashes, reply_tokens

MODEL = "sim-8b"
PREFILL_TOKENS_PER_SECOND = 9000.0  # 8B prefill on a 24 GB-class GPU (L4/A10G: 5-10k tok/s)
DECODE_STEP_SECONDS = 0.015  # one decode step at batch 1 (~65 tok/s for one stream)
DECODE_SECONDS_PER_SEQUENCE = 0.0004  # each running sequence adds this to a step
MAX_RUNNING = 32  # vLLM max_num_seqs on a small card
STEP_TOKEN_BUDGET = 2048  # max_num_batched_tokens: chunked prefill budget per step
KV_BLOCKS = 1152  # x16 = 18,432 tokens: ~2.3 GiB of KV at 128 KiB/token (Llama-3-8B, bf16)
MAX_MODEL_LEN = 16384  # vLLM refuses to start unless the KV cache holds one max-length sequence
TOKENS_PER_EVENT = 4  # tokens per SSE event after the first
DEFAULT_MAX_TOKENS = 64


def cache_config_info() -> list[str]:
    """vLLM's info gauge of its cache configuration (the labels routers read for capacity)."""
    labels = {
        "block_size": BLOCK_TOKENS,
        "cache_dtype": "auto",
        "enable_prefix_caching": "True",
        "engine": "0",
        "gpu_memory_utilization": "0.9",
        "num_cpu_blocks": "None",
        "num_gpu_blocks": KV_BLOCKS,
        "prefix_caching_hash_algo": "sha256",
    }
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return ["# TYPE vllm:cache_config_info gauge", f"vllm:cache_config_info{{{text}}} 1.0"]


class Sequence:
    """One request inside the engine."""

    ids = itertools.count()

    def __init__(self, prompt: list[str], max_tokens: int) -> None:
        self.id = next(self.ids)
        self.prompt = prompt
        self.hashes = block_hashes(prompt)
        self.max_tokens = max(1, max_tokens)
        self.reply = reply_tokens(prompt, self.max_tokens)
        self.prefill_left = len(prompt)
        self.cached = 0
        self.sent = 0  # reply tokens handed to the client
        self.made = 0  # reply tokens generated
        self.held: list[int] = []  # hashed blocks this sequence references
        self.private = 0  # blocks reserved but not (yet) hashed
        self.done = False
        self.cancelled = False
        self.ready = asyncio.Event()

    def blocks_needed(self) -> int:
        return math.ceil((len(self.prompt) + self.max_tokens) / BLOCK_TOKENS)

    def produce(self) -> None:
        self.made += 1
        if self.made >= self.max_tokens:
            self.done = True
        if self.done or self.made == 1 or self.made - self.sent >= TOKENS_PER_EVENT:
            self.ready.set()


class KVCache:
    """Blocks with a reference count; unreferenced hashed blocks are kept in LRU order."""

    def __init__(self, blocks: int) -> None:
        self.capacity = blocks
        self.refs: dict[int, int] = {}
        self.evictable: OrderedDict[int, None] = OrderedDict()
        self.private = 0

    def used(self) -> int:
        return len(self.refs) - len(self.evictable) + self.private

    def matched(self, hashes: list[int]) -> int:
        count = 0
        for value in hashes:
            if value not in self.refs:
                break
            count += 1
        return count

    def admit(self, seq: Sequence) -> bool:
        """Reference the cached prefix and reserve the rest; False when it does not fit."""
        hit = self.matched(seq.hashes)
        fresh = seq.blocks_needed() - hit
        free = self.capacity - len(self.refs) - self.private
        if fresh > free + len(self.evictable) - sum(
            1 for h in seq.hashes[:hit] if h in self.evictable
        ):
            return False
        for value in seq.hashes[:hit]:
            self.evictable.pop(value, None)
            self.refs[value] += 1
        while self.capacity - len(self.refs) - self.private < fresh:
            oldest, _ = self.evictable.popitem(last=False)
            del self.refs[oldest]
        seq.held = list(seq.hashes[:hit])
        seq.private, self.private = fresh, self.private + fresh
        seq.cached = min(hit * BLOCK_TOKENS, len(seq.prompt) - 1)
        return True

    def publish(self, seq: Sequence, hashes: list[int]) -> None:
        """Turn reserved blocks of a sequence into shared, hashed blocks."""
        for value in hashes:
            if seq.private == 0:
                return
            if value in self.refs:
                if value in self.evictable:
                    self.evictable.pop(value)
                self.refs[value] += 1
                seq.held.append(value)
                continue
            self.refs[value] = 1
            seq.held.append(value)
            seq.private -= 1
            self.private -= 1

    def release(self, seq: Sequence) -> None:
        if not seq.cancelled:
            held = set(seq.held)
            done = block_hashes(seq.prompt + seq.reply[: seq.made])
            self.publish(seq, [h for h in done if h not in held])
        for value in reversed(seq.held):  # like vLLM: a prefix's tail is evicted first
            self.refs[value] -= 1
            if self.refs[value] == 0:
                self.evictable[value] = None
        self.private -= seq.private
        seq.held, seq.private = [], 0

    def reset(self) -> None:
        self.refs.clear()
        self.evictable.clear()
        self.private = 0


class Engine:
    """One simulated GPU: a scheduler loop over running and waiting sequences."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kv = KVCache(KV_BLOCKS)
        self.running: list[Sequence] = []
        self.waiting: list[Sequence] = []
        self.wake = asyncio.Event()
        self.counters = {"prompt": 0, "generation": 0, "queries": 0, "hits": 0, "done": 0}

    def submit(self, seq: Sequence) -> None:
        if seq.blocks_needed() > self.kv.capacity:
            raise ValueError(f"prompt plus max_tokens exceeds the KV cache ({KV_BLOCKS} blocks)")
        self.waiting.append(seq)
        self.wake.set()

    def reset(self) -> None:
        for seq in self.running + self.waiting:
            seq.cancelled = seq.done = True
            seq.ready.set()
        self.running.clear()
        self.waiting.clear()
        self.kv.reset()

    def admit(self) -> None:
        self.waiting = [s for s in self.waiting if not s.cancelled]
        while self.waiting and len(self.running) < MAX_RUNNING:
            seq = self.waiting[0]
            if not self.kv.admit(seq):
                break
            self.waiting.pop(0)
            seq.prefill_left = len(seq.prompt) - seq.cached
            self.counters["queries"] += len(seq.prompt)
            self.counters["hits"] += seq.cached
            self.counters["prompt"] += len(seq.prompt)
            self.running.append(seq)

    def plan(self) -> tuple[list[Sequence], list[tuple[Sequence, int]], float]:
        """This step's decoding sequences, prefill chunks and duration."""
        decoding = [s for s in self.running if s.prefill_left == 0]
        budget = STEP_TOKEN_BUDGET - len(decoding)
        chunks: list[tuple[Sequence, int]] = []
        for seq in self.running:
            if seq.prefill_left and budget > 0:
                take = min(seq.prefill_left, budget)
                chunks.append((seq, take))
                budget -= take
        prefill = sum(take for _, take in chunks)
        seconds = (
            DECODE_STEP_SECONDS
            + DECODE_SECONDS_PER_SEQUENCE * len(decoding)
            + prefill / PREFILL_TOKENS_PER_SECOND
        )
        return decoding, chunks, seconds

    async def loop(self) -> None:
        clock = time.monotonic()
        while True:
            self.running = [s for s in self.running if not self._dropped(s)]
            self.admit()
            if not self.running:
                self.wake.clear()
                await self.wake.wait()
                clock = time.monotonic()
                continue
            decoding, chunks, seconds = self.plan()
            clock = max(clock, time.monotonic() - 0.05) + seconds
            await asyncio.sleep(max(0.0, clock - time.monotonic()))
            for seq in decoding:
                if not seq.done:
                    seq.produce()
                    self.counters["generation"] += 1
            for seq, take in chunks:
                seq.prefill_left -= take
                if seq.prefill_left == 0 and not seq.cancelled:
                    self.kv.publish(seq, seq.hashes[len(seq.held) :])
                    seq.produce()
                    self.counters["generation"] += 1

    def _dropped(self, seq: Sequence) -> bool:
        """Finished or abandoned sequences leave the batch and free their blocks."""
        if seq.done or seq.cancelled:
            self.kv.release(seq)
            self.counters["done"] += 0 if seq.cancelled else 1
            return True
        return False

    def metrics(self) -> str:
        c = self.counters
        labels = f'{{engine="0",model_name="{MODEL}"}}'
        usage = self.kv.used() / self.kv.capacity
        rows = [
            ("vllm:num_requests_running", "gauge", len(self.running)),
            ("vllm:num_requests_waiting", "gauge", len(self.waiting)),
            ("vllm:gpu_cache_usage_perc", "gauge", usage),
            ("vllm:kv_cache_usage_perc", "gauge", usage),
            ("vllm:gpu_prefix_cache_queries_total", "counter", c["queries"]),
            ("vllm:gpu_prefix_cache_hits_total", "counter", c["hits"]),
            ("vllm:prefix_cache_queries_total", "counter", c["queries"]),
            ("vllm:prefix_cache_hits_total", "counter", c["hits"]),
            ("vllm:prompt_tokens_total", "counter", c["prompt"]),
            ("vllm:generation_tokens_total", "counter", c["generation"]),
            ("vllm:request_success_total", "counter", c["done"]),
        ]
        lines = []
        for name, kind, value in rows:
            lines += [f"# TYPE {name.removesuffix('_total')} {kind}", f"{name}{labels} {value}"]
        return "\n".join([*lines, *cache_config_info()]) + "\n"

    def status(self) -> dict[str, Any]:
        return {
            "queued": len(self.waiting),
            "dispatched": len(self.running),
            "active_workers": MAX_RUNNING,
            "kv_cache_usage": self.kv.used() / KV_BLOCKS,
            "member": self.name,
        }
