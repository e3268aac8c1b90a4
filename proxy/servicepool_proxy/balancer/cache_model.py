"""What each member's prompt cache holds, told or learned: the size of cacheAware's index
of it, and the correction from the cached tokens its answers report (the closed loop).

The index starts at what the member's cache holds when that is known (the engine says so,
or spec.cacheAware.cacheTokens), else at maxBlocksPerMember. Each answer that reports its
cached prompt tokens (`usage.prompt_tokens_details.cached_tokens`: vLLM, SGLang, llama.cpp)
is compared with what the index predicted when the request was sent:
- the engine had far less than predicted: it evicts sooner than the index forgets, so the
  index shrinks by a fifth (down to twice this prompt);
- the engine had more than predicted while the index was full: it keeps more (a host
  prompt cache, another replica's requests), so the index grows by this prompt's blocks, up
  to maxBlocksPerMember.
Prompt characters per token are learned from the same answers, so blocks convert to tokens.
"""

from __future__ import annotations

import math
from typing import Any

from servicepool_api.engine_cache import CacheSize
from servicepool_api.llm_policies import CacheAware

from .member import MemberState

CHARS_PER_TOKEN = 4.0  # prompt text to tokens, roughly, until answers tell
_SHRINK = 0.8
_LEARNING_RATE = 0.05


class CharsPerToken:
    """Prompt characters per token, a moving average over answers' usage."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = CHARS_PER_TOKEN

    def add(self, chars: int, tokens: int) -> None:
        """One prompt of `chars` characters counted `tokens` tokens."""
        if chars > 0 and tokens > 0:
            sample = min(32.0, max(0.5, chars / tokens))
            self.value += _LEARNING_RATE * (sample - self.value)


def told_tokens(member: MemberState, policy: CacheAware) -> int | None:
    """Prompt tokens the member's cache holds, as the engine or the spec says."""
    if member.cache_size is not None:
        return member.cache_size.tokens
    return policy.cacheTokens


def initial_limit(member: MemberState, policy: CacheAware, tokens_per_block: float) -> int:
    """The index size to start from: what the member holds, in blocks, when told."""
    tokens = told_tokens(member, policy)
    if tokens is None:
        return policy.maxBlocksPerMember
    return max(1, min(policy.maxBlocksPerMember, math.ceil(tokens / tokens_per_block)))


def tell_size(
    member: MemberState, size: CacheSize, policy: CacheAware, tokens_per_block: float
) -> bool:
    """The engine said how much it holds; True when that is news (the index is resized)."""
    if member.cache_size == size:
        return False
    member.cache_size = size
    member.prefixes.resize(initial_limit(member, policy, tokens_per_block))
    return True


def cached_tokens(usage: dict[str, Any]) -> int | None:
    """`usage.prompt_tokens_details.cached_tokens`, when the answer reported it."""
    details = usage.get("prompt_tokens_details")
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def correct(
    member: MemberState,
    prompt_blocks: int,
    predicted_blocks: int,
    cached: int,
    tokens_per_block: float,
    policy: CacheAware,
) -> None:
    """Compare the cached tokens an answer reported with the blocks the index predicted,
    and resize the member's index (see the module docstring)."""
    index = member.prefixes
    realised_blocks = cached / tokens_per_block
    if predicted_blocks > 0 and realised_blocks < predicted_blocks / 2 - 1:
        index.resize(min(index.limit, max(2 * prompt_blocks, int(index.limit * _SHRINK))))
    elif realised_blocks > predicted_blocks + 1 and len(index) >= index.limit - prompt_blocks:
        index.resize(min(policy.maxBlocksPerMember, index.limit + prompt_blocks))
