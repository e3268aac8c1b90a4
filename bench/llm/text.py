"""What the simulated engine and the workload generator must agree on: tokens, the chat
template, and the (deterministic) text the engine generates.

A token is a whitespace-separated word (the workload writes the tiny model's four-letter
words, one token each there too, about 5 characters per token with the space, and it is what
the simulated engine counts in `usage`). The engine's reply is a pure function of the prompt,
so the workload can build turn k+1 of a conversation (which contains reply k) before
anything is sent, and every peer gets exactly the same requests (a real engine's reply is
its own: the next turn then shares the previous prompt, not its reply).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from servicepool_dev.tiny_gguf import WORDS

BLOCK_TOKENS = 16


def words(rng: random.Random, count: int) -> list[str]:
    """`count` words of the tiny model's vocabulary: one token each for the simulated engine
    and for llama-server with the tiny model (servicepool_dev.tiny_gguf)."""
    return [rng.choice(WORDS) for _ in range(count)]


def chat_tokens(messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> list[str]:
    """The chat template: a role token before each message's words, then (to have the model
    answer) the assistant's role token."""
    out: list[str] = []
    for message in messages:
        out.append(f"<|{message.get('role', 'user')}|>")
        out.extend(str(message.get("content", "")).split())
    if add_generation_prompt:
        out.append("<|assistant|>")
    return out


def prompt_tokens(body: dict[str, Any]) -> list[str]:
    """The tokens an OpenAI-shaped request puts in front of the model (chat template applied)."""
    if "messages" in body:
        return chat_tokens(body["messages"])
    prompt = body.get("prompt", "")
    return (prompt if isinstance(prompt, str) else " ".join(map(str, prompt))).split()


def reply_tokens(prompt: list[str], count: int) -> list[str]:
    """The engine's answer to a prompt: `count` words seeded by the prompt's last 64 tokens."""
    seed = hashlib.blake2b(" ".join(prompt[-64:]).encode(), digest_size=8).digest()
    return words(random.Random(seed), count)


def block_hashes(tokens: list[str]) -> list[int]:
    """Chained hashes of the full 16-token blocks: block i's hash covers tokens[0:16(i+1)]."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, len(tokens) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        previous = hash((previous, tuple(tokens[start : start + BLOCK_TOKENS])))
        hashes.append(previous)
    return hashes
