"""How the peer routers from PyPI are started and read: their command lines, the flags of each
policy (the reasons are in bench/llm/PEERS.md) and the counters in which they report their own
routing decisions (what bench/llm/probe.py checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.llm.peer_install import bin_dir

# The authors' recommended cache-aware settings, written out (they are also the defaults).
CACHE_AWARE_VLLM_ROUTER = (
    *("--cache-threshold", "0.3", "--balance-abs-threshold", "64"),
    *("--balance-rel-threshold", "1.5", "--eviction-interval-secs", "120"),
    *("--max-tree-size", str(2**25)),
)
CACHE_AWARE_SGLANG = (
    *("--cache-threshold", "0.3", "--balance-abs-threshold", "64"),
    *("--balance-rel-threshold", "1.5", "--eviction-interval-secs", "60"),
    *("--max-tree-size", str(2**26)),
)
PREFIX_HASH_SMG = (
    *("--prefix-token-count", "256", "--prefix-hash-load-factor", "1.25"),
    *("--prefix-hash-balance-abs-threshold", "10"),
)


@dataclass(frozen=True)
class DecisionCounter:
    """A router's counter of its routing decisions, by the value of one label: `hits` are the
    decisions that followed a known prefix; `never` must not grow at all (the router could not
    see the prompt); on warm prefixes every other value counts as a miss."""

    metric: str
    label: str | None  # None: the metric counts hits only, summed over every sample
    hits: frozenset[str] = frozenset()
    never: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RouterSpec:
    command: tuple[str, ...]  # the program (in the peer's venv bin/) and its subcommand
    log_flags: tuple[str, ...]
    policies: dict[str, tuple[str, ...]]  # policy -> its flags
    counters: dict[str, DecisionCounter] = field(default_factory=dict)  # policy -> counter
    extra: tuple[str, ...] = ()


ROUTERS: dict[str, RouterSpec] = {
    "vllm-router": RouterSpec(
        command=("vllm-router",),
        log_flags=("--log-level", "warning"),
        policies={"round_robin": (), "power_of_two": (), "cache_aware": CACHE_AWARE_VLLM_ROUTER},
        counters={
            "cache_aware": DecisionCounter(
                "vllm_router_prefix_routing_decisions_total",
                "outcome",
                frozenset({"prefix_hit"}),
                frozenset({"missing_tokens"}),
            )
        },
    ),
    "sglang-router": RouterSpec(
        command=("python", "-m", "sglang_router.launch_router"),
        log_flags=("--log-level", "warn"),
        policies={"cache_aware": CACHE_AWARE_SGLANG},
    ),
    "smg": RouterSpec(
        command=("smg", "launch"),
        log_flags=("--log-level", "warn"),
        policies={"cache_aware": CACHE_AWARE_SGLANG, "prefix_hash": PREFIX_HASH_SMG},
        counters={
            "cache_aware": DecisionCounter(
                "smg_cache_aware_policy_branch_total", "branch", frozenset({"tree_match"})
            ),
            "prefix_hash": DecisionCounter(
                "smg_prefix_hash_policy_branch_total", "branch", frozenset({"ring_hit"})
            ),
        },
        extra=("--disable-tokenizer-autoload",),
    ),
}


def argv(kind: str, policy: str, port: int, metrics_port: int, members: list[str]) -> list[str]:
    """The command line of a peer router on 127.0.0.1:port in front of `members`."""
    spec = ROUTERS[kind]
    program = [str(bin_dir(kind) / spec.command[0]), *spec.command[1:]]
    return [
        *program,
        *("--host", "127.0.0.1", "--port", str(port), "--worker-urls", *members),
        *("--policy", policy, *spec.policies[policy]),
        *("--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port)),
        *spec.log_flags,
        *spec.extra,
    ]


def program(kind: str) -> Path:
    """The peer's program in its venv."""
    return bin_dir(kind) / ROUTERS[kind].command[0]
