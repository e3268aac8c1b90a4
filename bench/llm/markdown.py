"""report.md from the report document (bench/llm/report.py)."""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value / 1e3:.2f} s" if value >= 1e4 else f"{value:.0f}")


def _row(r: dict[str, Any]) -> str:
    if "failed" in r or "refused" in r:
        why = f"failed: {r['failed']}" if "failed" in r else f"**refused**: {r['refused']}"
        return f"| {r['rate']:g} | {r['peer']} | {why} | | | | | | | | |"
    done = "yes" if r["completes"] else f"**no** ({r['measuredDone']}/{r['measured']})"
    split = " ".join(f"{v}" for v in r["split"].values())
    hits = " ".join(f"{v:.2f}" for v in r["hitRateByMember"].values())
    t, e = r["ttftMs"], r["e2eMs"]
    return (
        f"| {r['rate']:g} | {r['peer']} | {done} | {r['outputTokensPerSecond']:.0f} | "
        f"{_ms(t['p50'])} | {_ms(t['p90'])} | {_ms(t['p99'])} | {_ms(e['p50'])} / "
        f"{_ms(e['p99'])} | {r['hitRate']:.2f} ({hits}) | {split} | {_decisions(r)} |"
    )


def _decisions(r: dict[str, Any]) -> str:
    """The peer's own decision counts during the run, if it exports them."""
    found = r.get("peerDecisions")
    if found is None:
        return "-"
    return " ".join(f"{k or 'hits'} {v:g}" for k, v in sorted(found.items())) or "0"


def probe_lines(probes: dict[str, dict[str, Any]]) -> list[str]:
    """One line per probed peer: passed or not, placement and counters (bench/llm/probe.py)."""
    lines = []
    for name, v in probes.items():
        verdict = "passed" if v["passed"] else "**failed**: " + "; ".join(v["reasons"])
        placement = ", ".join(
            f"{prefix} " + " ".join(f"{m or 'error'}x{n}" for m, n in where.items())
            for prefix, where in v["placement"].items()
        )
        counter = v["peerCounter"]
        if isinstance(counter, dict):
            counter = f"`{counter['metric']}` probe {counter['probe']}, warm {counter['warm']}"
        lines.append(
            f"- {name}: {verdict}. Affinity {v['affinity']:.2f}, members' warm hit rate "
            f"{v['warmHitRate']:.2f}, {v['membersUsed']} members used ({placement}); "
            f"peer's counter: {counter}."
        )
    return lines


def summary_table(document: dict[str, Any]) -> list[str]:
    goal = document["targets"]
    lines = [
        f"At {goal.get('rate', 0):g} requests/s, the highest rate where servicepool "
        f"roundRobin still completes{'; ' + goal['note'] if goal.get('note') else ''}. "
        f"servicepool's best single-proxy strategy there: **{goal.get('best', '-')}**.",
        "",
        "| target | value | goal | met |",
        "|---|---|---|---|",
    ]
    for c in goal.get("checks", []):
        met = "yes" if c["met"] else "**no**"
        lines.append(f"| {c['target']} | {c['value']:.2f} | {c['goal']} | {met} |")
    return lines


def render(document: dict[str, Any], quick: bool) -> str:
    config, rows = document["config"], document["rows"]
    e, w = document["engine"], document["workload"]
    lines = [
        f"# LLM routing benchmark ({'quick' if quick else 'full'} run, {document['seconds']} s)",
        "",
        f"{len(rows[0]['hitRateByMember']) if rows else 0} simulated engines "
        f"(bench/llm/engine.py: {e['PREFILL_TOKENS_PER_SECOND']:.0f} prefill tok/s, decode "
        f"step {e['DECODE_STEP_SECONDS'] * 1e3:.0f} ms + {e['DECODE_SECONDS_PER_SEQUENCE'] * 1e3:g}"
        f" ms per running sequence, {e['MAX_RUNNING']} sequences at most, "
        f"{e['KV_BLOCKS'] * 16:,} KV tokens each) behind each peer in turn, on 2 shared cores. "
        f"{w['tenants']} tenants with {w['tenantPromptTokens'][0]}-{w['tenantPromptTokens'][1]}"
        f"-token system prompts, conversations of up to {w['maxTurns']} turns, "
        f"{w['maxTokens'][0]}-{w['maxTokens'][1]} output tokens; Poisson arrivals for "
        f"{config['seconds']:g} s per run after one warm-up request per tenant.",
        "",
        "**Completes**: every request of the run (warm-up included) got 200, all its tokens, "
        "the usage chunk and [DONE] before the last arrival + "
        f"{config['drain']:g} s: the backlog built during the {config['seconds']:g}-s window "
        f"drains within {config['drain']:g} s, which admits offered loads up to about "
        f"{1 + config['drain'] / config['seconds']:.1f}x what the pool sustains. "
        "TTFT and latency count from the scheduled send time, over "
        "the completed measured requests. Output tok/s: completion tokens of those requests "
        "over the time from the first measured arrival to the last completion. Hit rate: "
        "prefix-cache hit tokens / prompt tokens from the engines' own /metrics "
        "(vllm:prefix_cache_hits / queries), in total and per member m0..m3. Peer's own "
        "decisions: what its decision counter counted during the run (vllm-router's outcomes, "
        "smg's branches, servicepool's prefix hits; bench/llm/PEERS.md).",
        "",
        "Quick run: servicepool roundRobin at rising rates until a run does not complete, "
        "then every other peer once at the highest rate where it did. Full run: every peer at "
        "every rate, peers alternating at each rate."
        if quick
        else "Every peer at every rate, peers alternating at each rate (one run each).",
        "",
        "## Targets",
        "",
        *summary_table(document),
        "",
        "## Every run",
        "",
        "| req/s | peer | completes | output tok/s | TTFT p50 ms | p90 | p99 | e2e p50 / p99 ms"
        " | hit rate (per member) | split m0..m3 | peer's own decisions |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(r) for r in rows),
        "",
    ]
    if document.get("probes"):
        lines += ["## Prefix probe", "", *probe_lines(document["probes"]), ""]
    if document["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {name}: {why}" for name, why in document["skipped"].items()]
        lines.append("")
    lines += ["## Notes", "", *(f"- {n}" for n in document.get("notes", [])), ""]
    lines += ["Plots: llm.png (TTFT p90, output tok/s and hit rate against the request rate).", ""]
    return "\n".join(lines)
