"""Figures per (peer, rate), the issue's targets, and report.md / report.json / plots."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from bench.llm import engine
from bench.llm.client import Outcome
from bench.llm.peers import IDEAL

NOTES = [
    "The peers from PyPI (vllm-router 0.1.17, sglang-router 0.3.2, smg 1.13.0) run from "
    "their own venvs with their authors' recommended flags (bench/llm/PEERS.md). The "
    "simulated members answer vLLM's endpoints as vLLM does, tokenizer and render endpoints "
    "included (bench/llm/tokenize_api.py); llama-server answers what it answers.",
    "A peer with a prefix policy is probed before its runs count (bench/llm/probe.py: 4 "
    "long prefixes, 1 cold and 3 warm rounds, judged on the engines' and the peer's own "
    "counters); one that fails is refused, with the reason in its rows.",
    "The machine's 2 cores are shared by the client, the peer, the engines and other work; "
    "figures are comparable within one run only.",
]
OWN = "servicepool cacheAware"
OWN_X2 = "servicepool cacheAware x2"
PEER_ROUTERS = {"vllm-router", "sglang-router", "smg"}  # the routers cacheAware is judged by
SLO_TTFT_P90_MS = 1000.0


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
    """One run's figures; `before`/`after`: the engines' (prompt tokens, cached prompt tokens)
    counters at the start of the measured window and at the end."""
    outcomes: list[Outcome] = result["outcomes"]
    measured = [o for o in outcomes if not o.request.warmup]
    done = [o for o in measured if o.complete]
    first = min(o.request.at for o in measured)
    last = max((o.finished_at or 0.0) for o in done) if done else first + 1
    tokens = sum(o.completion_tokens for o in done)
    prompt = {m: after[m][0] - before[m][0] for m in after}
    cached = {m: after[m][1] - before[m][1] for m in after}
    ms = 1e3

    def pct(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * ms, 1)

    ttft = [o.ttft for o in done if o.ttft is not None]
    e2e = [o.e2e for o in done if o.e2e is not None]
    total = max(1.0, sum(prompt.values()))
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
        "reuse": round(sum(cached.values()) / total, 4),
        "reuseByMember": {m: round(cached[m] / max(1.0, prompt[m]), 3) for m in sorted(after)},
        "promptShareByMember": {m: round(prompt[m] / total, 3) for m in sorted(after)},
        "generatorLate": result["generatorLate"],
    }


def counted(row: dict[str, Any]) -> bool:
    """A row whose run took place and counts (not failed to start, not refused)."""
    return "failed" not in row and "refused" not in row


def meets_slo(row: dict[str, Any]) -> bool:
    """The run counts, every request completed and TTFT p90 <= the SLO."""
    p90 = row.get("ttftMs", {}).get("p90")
    return (
        counted(row) and bool(row.get("completes")) and p90 is not None and p90 <= SLO_TTFT_P90_MS
    )


def capacity_at_slo(rows: list[dict[str, Any]], peer: str) -> tuple[float, bool]:
    """The highest rate at which every run of `peer` (every seed, every lower rate too) met the
    SLO (0 if none), and whether it met it at every rate it ran (the capacity is then a lower
    bound: the sweep stopped before the peer did)."""
    capacity = 0.0
    for rate in sorted({r["rate"] for r in rows if r["peer"] == peer}):
        if not all(meets_slo(r) for r in rows if r["peer"] == peer and r["rate"] == rate):
            return capacity, False
        capacity = rate
    return capacity, True


def _mean(rows: list[dict[str, Any]], peer: str, rate: float, value: Any) -> float | None:
    values = [value(r) for r in rows if r["peer"] == peer and r["rate"] == rate and counted(r)]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets over one workload's rows (one engine kind)."""
    checks: list[dict[str, Any]] = []

    def check(what: str, value: float | None, goal: str, met: bool, note: str = "") -> None:
        shown = None if value is None else round(value, 3)
        checks.append({"target": what, "value": shown, "goal": goal, "met": met, "note": note})

    own_cap, own_bound = capacity_at_slo(rows, OWN)
    ideal = {(r["rate"], r["seed"]): r["reuse"] for r in rows if r["peer"] == IDEAL and counted(r)}
    for row in rows:
        if row["peer"] != OWN or not counted(row) or row["rate"] > max(own_cap, min_rate(rows)):
            continue
        spread = ideal.get((row["rate"], row["seed"]))
        if spread:
            ratio = row["reuse"] / spread
            check(f"reuse / ideal spread's, {OWN}, {row['rate']:g} req/s, seed {row['seed']}",
                  ratio, ">= 0.9", ratio >= 0.9 and not row["errors"],
                  f"{row['reuse']:.2f} / {spread:.2f}")  # fmt: skip
    peers = {r["peer"] for r in rows if r.get("kind") in PEER_ROUTERS and counted(r)}
    caps = {p: capacity_at_slo(rows, p) for p in peers}
    if caps:
        best = max(caps, key=lambda p: caps[p][0])
        best_cap, best_bound = caps[best]
        ratio = own_cap / best_cap if best_cap else (float("inf") if own_cap else None)
        note = "lower bound: met the SLO at every rate run" if own_bound else ""
        if best_bound:
            note += ("; " if note else "") + f"{best} met the SLO at every rate run"
        met = ratio is not None and ratio >= 1.25
        check(f"capacity at SLO {OWN} ({own_cap:g}) / best peer {best} ({best_cap:g})",
              None if ratio in (None, float("inf")) else ratio, ">= 1.25", met, note)  # fmt: skip
        for rate in sorted({r["rate"] for r in rows if r["rate"] < best_cap}):
            p90 = lambda r: r["ttftMs"]["p90"]  # noqa: E731
            tps = lambda r: r["outputTokensPerSecond"]  # noqa: E731
            mine_p90, mine_tps = _mean(rows, OWN, rate, p90), _mean(rows, OWN, rate, tps)
            theirs = {p: _mean(rows, p, rate, p90) for p in peers}
            theirs = {p: v for p, v in theirs.items() if v is not None}
            if mine_p90 is None or not theirs:
                continue
            fastest = min(theirs, key=lambda p: theirs[p])
            ratio = mine_p90 / max(1e-9, theirs[fastest])
            check(f"TTFT p90 {OWN} / {fastest}, {rate:g} req/s", ratio, "<= 1.1", ratio <= 1.1)
            their_tps = max(_mean(rows, p, rate, tps) or 0.0 for p in peers)
            ratio = (mine_tps or 0.0) / max(1e-9, their_tps)
            check(
                f"output tok/s {OWN} / best peer, {rate:g} req/s", ratio, ">= 0.95", ratio >= 0.95
            )
    for rate in sorted({r["rate"] for r in rows if r["peer"] == OWN_X2 and counted(r)}):
        one = _mean(rows, OWN, rate, lambda r: r["reuse"])
        two = _mean(rows, OWN_X2, rate, lambda r: r["reuse"])
        if one and two is not None:
            check(
                f"reuse {OWN_X2} / {OWN}, {rate:g} req/s", two / one, ">= 0.95", two / one >= 0.95
            )
    return {"checks": checks}


def min_rate(rows: list[dict[str, Any]]) -> float:
    return min((r["rate"] for r in rows), default=0.0)


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
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    goal = {w: targets([r for r in rows if r["workload"] == w]) for w in workloads}
    document = {
        "config": config,
        "simulatedEngine": {k: getattr(engine, k) for k in dir(engine) if k.isupper()},
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
