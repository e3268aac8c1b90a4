"""What an inference engine says its prompt cache can hold (pure parsing).

Two engine shapes are told apart:
- a shared block pool (vLLM, SGLang): any prefix can stay cached while the pool has blocks;
  vLLM's /metrics has `vllm:cache_config_info{num_gpu_blocks="N", block_size="B"}`;
- one cache per slot (llama.cpp, Ollama): a slot keeps the prompt it last served, so an
  engine keeps about as many prefixes as it has slots; llama.cpp's GET /props has
  `total_slots` and each slot's context in `default_generation_settings.n_ctx`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# The paths asked, in this order, until one answers with a size.
CACHE_SIZE_PATHS = ("/props", "/metrics")

_CACHE_CONFIG = re.compile(r"^vllm:cache_config_info\{(?P<labels>[^}]*)\}", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class CacheSize:
    """Prompt tokens an engine can keep cached at once; `slots` > 0 when the cache is per
    slot (a prefix lives in one slot, at most `tokens / slots` long)."""

    tokens: int
    slots: int = 0
    source: str = ""

    def to_status(self) -> dict[str, Any]:
        """For the admin port's /status."""
        return {"tokens": self.tokens, "slots": self.slots or None, "source": self.source}


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = int(float(value))
    except ValueError:
        return None
    return number if number > 0 else None


def parse_llama_props(body: bytes) -> CacheSize | None:
    """llama.cpp's GET /props: slots times each slot's context; None when it is not that."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    slots = _positive_int(document.get("total_slots"))
    settings = document.get("default_generation_settings")
    per_slot = _positive_int(settings.get("n_ctx")) if isinstance(settings, dict) else None
    if slots is None or per_slot is None:
        return None
    return CacheSize(tokens=slots * per_slot, slots=slots, source="props")


def parse_vllm_cache_info(text: str) -> CacheSize | None:
    """vLLM's `vllm:cache_config_info` labels: GPU blocks times block size; None without."""
    found = _CACHE_CONFIG.search(text)
    if found is None:
        return None
    labels = dict(_LABEL.findall(found.group("labels")))
    blocks = _positive_int(labels.get("num_gpu_blocks"))
    block_size = _positive_int(labels.get("block_size"))
    if blocks is None or block_size is None:
        return None
    return CacheSize(tokens=blocks * block_size, source="metrics")


def parse_cache_size(path: str, body: bytes) -> CacheSize | None:
    """The size an answer from one of CACHE_SIZE_PATHS tells, or None."""
    if path == "/props":
        return parse_llama_props(body)
    return parse_vllm_cache_info(body.decode("utf-8", "replace"))
