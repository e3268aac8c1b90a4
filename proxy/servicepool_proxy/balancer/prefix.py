"""Prompt prefixes as chained block hashes, and each member's bounded memory of them.

The prompt text is cut into blocks of a fixed number of characters; block i's hash covers
blocks 0..i, so one hash names a whole prefix and two prompts share block i's hash exactly
when they share their first i+1 blocks. A member remembers the hashes of what was recently
sent to it, least recently sent forgotten first, like an inference server's KV cache.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence


def block_hashes(text: str, block_chars: int) -> tuple[int, ...]:
    """Chained 64-bit hashes of the text's full blocks (a text shorter than one block is one
    block, so every prompt has a first block)."""
    full = len(text) // block_chars
    if full == 0:
        return (_chain(b"", text),) if text else ()
    hashes = []
    previous = b""
    for index in range(full):
        digest = _digest(previous, text[index * block_chars : (index + 1) * block_chars])
        hashes.append(int.from_bytes(digest, "big"))
        previous = digest
    return tuple(hashes)


def _digest(previous: bytes, block: str) -> bytes:
    return hashlib.blake2b(
        previous + block.encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()


def _chain(previous: bytes, block: str) -> int:
    return int.from_bytes(_digest(previous, block), "big")


class PrefixBlocks:
    """One member's recently sent prefix blocks (bounded, LRU), its hot prefixes and its
    hit counters, predicted and realised.

    Sending touches a prompt's blocks deepest first, so a prefix's first blocks are always
    at least as recent as its later ones: if block i is remembered, so are blocks 0..i-1.
    That makes the longest match a binary search. A prompt's first block (its root) names
    its prefix family; a root sent recently and still remembered is a hot prefix.
    """

    __slots__ = (
        "_blocks",
        "_roots",
        "blocks_matched",
        "blocks_sent",
        "hits",
        "limit",
        "lookups",
        "realised_prompt_tokens",
        "realised_tokens",
    )

    def __init__(self, limit: int = 16384) -> None:
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self._roots: OrderedDict[int, float] = OrderedDict()  # root -> when last sent
        self.limit = limit  # most blocks remembered: what the member's cache is taken to hold
        self.lookups = 0  # requests with a prompt sent to the member
        self.hits = 0  # of those, how many found some prefix there
        self.blocks_sent = 0
        self.blocks_matched = 0
        self.realised_prompt_tokens = 0
        self.realised_tokens = 0  # cached prompt tokens the member reported

    def __len__(self) -> int:
        return len(self._blocks)

    def matched(self, prefix: Sequence[int]) -> int:
        """How many leading blocks of the prefix the member was recently sent."""
        low, high = 0, len(prefix)  # prefix[:low] is known remembered
        while low < high:
            middle = (low + high + 1) // 2
            if prefix[middle - 1] in self._blocks:
                low = middle
            else:
                high = middle - 1
        return low

    def record(self, prefix: Sequence[int], now: float = 0.0) -> int:
        """The prefix was sent to the member: count the match, remember its blocks, forget
        the least recent beyond the limit. Returns the blocks that matched."""
        matched = self.matched(prefix)
        self.lookups += 1
        self.hits += matched > 0
        self.blocks_sent += len(prefix)
        self.blocks_matched += matched
        blocks = self._blocks
        for block in reversed(prefix):
            blocks[block] = None
            blocks.move_to_end(block)
        if prefix:
            self._roots[prefix[0]] = now
            self._roots.move_to_end(prefix[0])
        self.trim()
        return matched

    def resize(self, limit: int) -> None:
        """Take a new limit (at least one block), forgetting the least recent beyond it."""
        self.limit = max(1, limit)
        self.trim()

    def trim(self) -> None:
        """Forget the least recently sent blocks beyond the limit."""
        blocks, roots = self._blocks, self._roots
        while len(blocks) > self.limit:
            block, _ = blocks.popitem(last=False)
            roots.pop(block, None)

    @property
    def families(self) -> int:
        """How many prefix families are remembered."""
        return len(self._roots)

    def roots(self) -> list[int]:
        """The first blocks of the prefix families remembered, most recently sent last."""
        return list(self._roots)

    def hot_roots(self, now: float, seconds: float) -> list[int]:
        """The first blocks of the prefix families sent within `seconds` and still
        remembered (hot), most recent first."""
        hot = []
        for root in reversed(self._roots):
            if now - self._roots[root] > seconds:
                break
            hot.append(root)
        return hot

    def hot(self, now: float, seconds: float) -> int:
        """How many prefix families are hot (hot_roots)."""
        return len(self.hot_roots(now, seconds))

    def record_realised(self, prompt_tokens: int, cached_tokens: int) -> None:
        """An answer reported how many of its prompt tokens the member had cached."""
        self.realised_prompt_tokens += prompt_tokens
        self.realised_tokens += cached_tokens

    @property
    def hit_rate(self) -> float | None:
        """Share of the prompt blocks sent here that were already here; None before any."""
        return round(self.blocks_matched / self.blocks_sent, 4) if self.blocks_sent else None

    @property
    def realised_hit_rate(self) -> float | None:
        """Share of prompt tokens the member reported cached; None before any report."""
        if not self.realised_prompt_tokens:
            return None
        return round(self.realised_tokens / self.realised_prompt_tokens, 4)

    def to_status(self) -> dict[str, float | int | None]:
        """Counters for /status: the estimated and the reported prefix-cache hit rates."""
        return {
            "lookups": self.lookups,
            "hits": self.hits,
            "blocksSent": self.blocks_sent,
            "blocksMatched": self.blocks_matched,
            "hitRate": self.hit_rate,
            "reportedHitRate": self.realised_hit_rate,
            "indexBlocks": len(self._blocks),
            "indexLimit": self.limit,
            "prefixes": self.families,
        }
