"""Settings of the LLM-shaped strategies: cacheAware, tokens, speed and adaptive."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import SpecModel


class CacheAware(SpecModel):
    """Prompt-prefix-aware routing: send a prompt where its prefix was recently sent."""

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
        "first); about the member's KV-cache size in tokens divided by blockChars/4. Each "
        "costs about 100 bytes of proxy memory.",
    )
    minMatchRatio: float = Field(
        0.25,
        ge=0,
        le=1,
        description="A member's cached prefix counts only when it covers at least this share "
        "of the prompt's blocks; shorter matches go by the prefix's home member instead.",
    )
    balanceAbsThreshold: float = Field(
        8,
        ge=0,
        le=100000,
        description="A member is overloaded (passed over) when its load exceeds the least "
        "loaded candidate's by more than this AND by more than balanceRelThreshold times. Load "
        "is queued + running as reported (with spec.capacity and a fresh report) or in-flight "
        "requests, per unit of weight.",
    )
    balanceRelThreshold: float = Field(
        1.5,
        ge=1,
        le=1000,
        description="The relative half of the overload test (see balanceAbsThreshold).",
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
    """Strategy speed: the best recent output tokens/s, with exploration."""

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
    """Strategy adaptive: the lowest weighted score of four terms, each about 1 for a
    typical member (see the README)."""

    latencyWeight: float = Field(
        1.0, ge=0, le=100, description="Weight of time to first byte (TTFT for streams)."
    )
    loadWeight: float = Field(
        1.0, ge=0, le=100, description="Weight of load (reported, or in-flight) per weight."
    )
    speedWeight: float = Field(
        0.5, ge=0, le=100, description="Weight of slowness (typical tokens/s over the member's)."
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
