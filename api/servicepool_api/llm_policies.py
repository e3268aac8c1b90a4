"""Settings of the LLM-shaped strategies: cacheAware, tokens, speed and adaptive."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import SpecModel


class CacheAware(SpecModel):
    """Prompt-prefix-aware routing: send a prompt where it would get its first token soonest,
    counting the prefill work queued on each member and the part of the prompt not yet sent
    there (see docs/routing.md)."""

    blockChars: int = Field(
        128,
        ge=16,
        le=65536,
        description="The prompt text is hashed in blocks of this many characters (about a "
        "quarter as many tokens); block i's hash covers blocks 0..i.",
    )
    maxBlocksPerMember: int = Field(
        16384,
        ge=1,
        le=1_000_000,
        description="Most block hashes remembered per member (least recently sent evicted "
        "first). The index is sized to what the member's cache holds when that is known "
        "(cacheTokens, or what the engine says: llama.cpp's /props, vLLM's "
        "vllm:cache_config_info) and corrected by the cached tokens its answers report; this "
        "bounds it. Each costs about 100 bytes of proxy memory.",
    )
    cacheTokens: int | None = Field(
        None,
        ge=1,
        le=1 << 32,
        description="Prompt tokens each member's cache holds, for engines that do not say "
        "(llama.cpp's /props and vLLM's vllm:cache_config_info are read every 60 s and win).",
    )
    loadFactor: float = Field(
        1.0,
        ge=1,
        le=10,
        description="Where new prefixes go: a lone proxy puts a prefix no member holds on the "
        "first member in its rendezvous order holding fewer than loadFactor times its share of "
        "the pool's hot prefixes; with several replicas or workers, the hot families, in the "
        "order of their first block's hash, each go to the first member of their rendezvous "
        "order within that bound, which every replica computes alike. Shares follow what each "
        "cache holds (as the engines or cacheTokens tell, else learned). 1 fills the members "
        "evenly, which per-slot engines need (on llama.cpp, 1.25 let one engine take three "
        "tenants for two slots); more keeps prefixes nearer their rendezvous home.",
    )
    hotSeconds: float = Field(
        60,
        gt=0,
        le=3600,
        description="A prefix sent to a member within this many seconds counts as hot there.",
    )
    movePenalty: float = Field(
        1.0,
        ge=0,
        le=100,
        description="A prompt's uncached tokens count 1 + movePenalty times on a member where "
        "it does not belong: for a lone proxy, not a member holding its longest cached prefix "
        "(or, for a new prefix, its place); with replicas, not its family's place nor a "
        "member holding more of it. Computing a prompt away from its place also delays what "
        "queues behind it there, evicts other prefixes, and splits it from where other proxy "
        "replicas send it; so a prefix moves only when the work queued at its place outweighs "
        "that.",
    )
    requestCostTokens: float = Field(
        64,
        ge=0,
        le=1_000_000,
        description="Each request in flight on a member counts as this many prompt tokens of "
        "prefill there when estimating a new prompt's time to first token: decoding sequences "
        "slow every step and hold the member's batch slots and KV cache.",
    )
    queuedCostTokens: float = Field(
        0,
        ge=0,
        le=1_000_000,
        description="With spec.capacity and a fresh report: each request the member says is "
        "waiting counts as this many prompt tokens of prefill there (it sees the requests other "
        "proxy replicas sent too).",
    )
    maxBodyBytes: int = Field(
        4 << 20, ge=1024, le=64 << 20, description="Largest request body read to find a prompt."
    )


class TokenWindow(SpecModel):
    """Strategy tokens: the fewest tokens (prompt + completion, from usage) in a window."""

    windowSeconds: float = Field(
        60, ge=1, le=600, description="Sliding window over which each member's tokens count."
    )


class Speed(SpecModel):
    """Strategy speed: the best recent decode tokens/s (after the first token), with
    exploration."""

    explorationRatio: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of requests sent to a random member, so every member's speed stays "
        "measured.",
    )
    staleAfterSeconds: float = Field(
        30,
        gt=0,
        le=3600,
        description="A speed measured longer ago than this no longer counts: the member is "
        "measured again (one request at a time).",
    )


class Adaptive(SpecModel):
    """Strategy adaptive: the lowest weighted score of four terms (see docs/routing.md): load
    spreads requests; answer time, slowness and errors only push away from members worse
    than typical."""

    latencyWeight: float = Field(
        0.25,
        ge=0,
        le=100,
        description="Weight of answer time above typical (time to the first body chunk with "
        "content: a stream's first token).",
    )
    loadWeight: float = Field(
        1.0, ge=0, le=100, description="Weight of load (reported, or in-flight) per weight."
    )
    speedWeight: float = Field(
        0.25,
        ge=0,
        le=100,
        description="Weight of slowness (typical decode tokens/s over the member's, above 1).",
    )
    errorWeight: float = Field(
        4.0, ge=0, le=100, description="Weight of the recent error rate (0-1, decaying)."
    )

    @model_validator(mode="after")
    def _some_weight(self) -> Adaptive:
        if not (self.latencyWeight or self.loadWeight or self.speedWeight or self.errorWeight):
            raise ValueError(
                "latencyWeight: at least one of latencyWeight, loadWeight, speedWeight and "
                "errorWeight must be above 0"
            )
        return self
