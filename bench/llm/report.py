"""Figures per (peer, rate), the issue's targets, and report.md / report.json / plots."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from bench.llm import engine, workload
from bench.llm.client import Outcome

SINGLE = "servicepool"
NOTES = [
    "The peers from PyPI (vllm-router 0.1.17, sglang-router 0.3.2, smg 1.13.0) run from "
    "their own venvs with their authors' recommended flags (bench/llm/PEERS.md). The members "
    "answer vLLM's endpoints as vLLM does, tokenizer and render endpoints included "
    "(bench/llm/tokenize_api.py), so vllm-router's cache_aware gets token ids.",
    "A peer with a prefix policy is probed before its runs count (bench/llm/probe.py: 4 "
    "long prefixes, 1 cold and 3 warm rounds, judged on the members' and the peer's own "
    "counters); one that fails is refused, with the reason in its rows.",
    "The machine's 2 cores are shared by the client, the peer, the four simulated engines "
    "(one process) and other work; figures are comparable within one run only.",
]
BASELINE = "vllm-router cache_aware"
OWN_RR = "servicepool roundRobin"


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summarize(
    peer: Any,
    rate: float,
    result: dict[str, Any],
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
) -> dict[str, Any]:
    outcomes: list[Outcome] = result["outcomes"]
    measured = [o for o in outcomes if not o.request.warmup]
    done = [o for o in measured if o.complete]
    first = min(o.request.at for o in measured)
    last = max((o.finished_at or 0.0) for o in done) if done else first + 1
    tokens = sum(o.completion_tokens for o in done)
    queries = {m: after[m][0] - before[m][0] for m in after}
    hits = {m: after[m][1] - before[m][1] for m in after}
    ms = 1e3

    def pct(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * ms, 1)

    ttft = [o.ttft for o in done if o.ttft is not None]
    e2e = [o.e2e for o in done if o.e2e is not None]
    return {
        "peer": peer.name,
        "kind": peer.kind,
        "rate": rate,
        "requests": len(outcomes),
        "measured": len(measured),
        "measuredDone": len(done),
        "completes": all(o.complete for o in outcomes),
        "errors": dict(Counter(o.error for o in outcomes if not o.complete)),
        "ttftMs": {f"p{q}": pct(ttft, q) for q in (50, 90, 99)},
        "e2eMs": {f"p{q}": pct(e2e, q) for q in (50, 90, 99)},
        "outputTokensPerSecond": round(tokens / max(1e-9, last - first), 1),
        "hitRate": round(sum(hits.values()) / max(1.0, sum(queries.values())), 4),
        "hitRateByMember": {m: round(hits[m] / max(1.0, queries[m]), 3) for m in sorted(after)},
        "split": dict(
            sorted(
                Counter(
                    o.member or o.header_member for o in measured if o.member or o.header_member
                ).items()
            )
        ),
        "generatorLate": result["generatorLate"],
    }


def counted(row: dict[str, Any]) -> bool:
    """A row whose run took place and counts (not failed to start, not refused)."""
    return "failed" not in row and "refused" not in row


def best_rate(rows: list[dict[str, Any]], peer: str) -> float | None:
    """The highest rate at which `peer` completed (and every lower rate too)."""
    rate = None
    for row in sorted((r for r in rows if r["peer"] == peer), key=lambda r: r["rate"]):
        if not row.get("completes"):
            break
        rate = row["rate"]
    return rate


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets at the highest rate where servicepool roundRobin completes."""
    rate = best_rate(rows, OWN_RR)
    note = ""
    if rate is None:
        rate = min((r["rate"] for r in rows), default=0.0)
        note = f"{OWN_RR} completed at no rate; using the lowest rate"
    at = {r["peer"]: r for r in rows if r["rate"] == rate and counted(r)}
    singles = [
        r
        for n, r in at.items()
        if n.startswith(SINGLE) and not n.endswith("x2") and r["completes"] and n != OWN_RR
    ]
    if not singles or BASELINE not in at or OWN_RR not in at:
        return {"rate": rate, "note": note or "missing peers at that rate"}
    best = min(singles, key=lambda r: r["ttftMs"]["p90"] or 1e12)
    base, own = at[BASELINE], at[OWN_RR]
    p90 = best["ttftMs"]["p90"] or 0.0
    ratio_base = p90 / max(1e-9, base["ttftMs"]["p90"] or 0.0)
    if not base["completes"]:
        note += f"{'; ' if note else ''}{BASELINE} did not complete at that rate"
    out: dict[str, Any] = {"rate": rate, "note": note, "best": best["peer"], "checks": []}

    def check(what: str, value: float, goal: str, met: bool) -> None:
        out["checks"].append({"target": what, "value": round(value, 3), "goal": goal, "met": met})

    check(f"TTFT p90 {best['peer']} / {BASELINE}", ratio_base, "<= 0.8", ratio_base <= 0.8)
    tps = best["outputTokensPerSecond"] / max(1e-9, base["outputTokensPerSecond"])
    check(f"output tok/s {best['peer']} / {BASELINE}", tps, ">= 1.0", tps >= 1.0)
    gain = (own["ttftMs"]["p90"] or 0.0) / max(1e-9, p90)
    check(f"TTFT p90 {OWN_RR} / {best['peer']}", gain, ">= 3", gain >= 3.0)
    one, two = at.get("servicepool cacheAware"), at.get("servicepool cacheAware x2")
    if one and two:
        kept = two["hitRate"] / max(1e-9, one["hitRate"])
        check("hit rate cacheAware x2 / cacheAware", kept, ">= 0.9", kept >= 0.9)
    return out


def write_report(
    out: Path,
    rows: list[dict[str, Any]],
    skipped: dict[str, str],
    probes: dict[str, dict[str, Any]],
    config: dict[str, Any],
    elapsed: float,
    quick: bool,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    goal = targets(rows)
    constants = {k: getattr(engine, k) for k in dir(engine) if k.isupper()}
    document = {
        "config": config,
        "engine": constants,
        "workload": workload.describe(),
        "skipped": skipped,
        "probes": probes,
        "notes": NOTES,
        "targets": goal,
        "rows": rows,
        "seconds": round(elapsed),
    }
    (out / "report.json").write_text(json.dumps(document, indent=2))
    from bench.llm.markdown import render
    from bench.llm.plots import plot

    (out / "report.md").write_text(render(document, quick))
    plot(rows, out)
