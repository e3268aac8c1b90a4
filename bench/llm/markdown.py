"""report.md from the report document (bench/llm/report.py)."""

from __future__ import annotations

from typing import Any

from bench.llm.report import SLO_TTFT_P90_MS as SLO_MS


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value / 1e3:.2f} s" if value >= 1e4 else f"{value:.0f}")


def _row(r: dict[str, Any]) -> str:
    where = f"| {r['rate']:g} | {r['seed']} | {r['peer']} |"
    if "failed" in r or "refused" in r:
        why = f"failed: {r['failed']}" if "failed" in r else f"**refused**: {r['refused']}"
        return f"{where} {why} | | | | | | | | |"
    done = "yes" if r["completes"] else f"**no** ({r['measuredDone']}/{r['measured']})"
    share = " ".join(f"{v:.2f}" for v in r["promptShareByMember"].values())
    reuse = " ".join(f"{v:.2f}" for v in r["reuseByMember"].values())
    t, e = r["ttftMs"], r["e2eMs"]
    return (
        f"{where} {done} | {r['outputTokensPerSecond']:.0f} | {_ms(t['p50'])} | "
        f"{_ms(t['p90'])} | {_ms(t['p99'])} | {_ms(e['p50'])} / {_ms(e['p99'])} | "
        f"{r['reuse']:.2f} / {r['oracleReuse']:.2f} ({reuse}) | {share} | {_decisions(r)} |"
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


def summary_table(goal: dict[str, Any]) -> list[str]:
    lines = ["| target | value | goal | met | note |", "|---|---|---|---|---|"]
    for c in goal["checks"]:
        met = "yes" if c["met"] else "**no**"
        value = "-" if c["value"] is None else f"{c['value']:.2f}"
        lines.append(f"| {c['target']} | {value} | {c['goal']} | {met} | {c['note']} |")
    return lines


def fleet_line(fleet: dict[str, Any], sim: dict[str, Any]) -> str:
    if fleet.get("engine", "").startswith("llama.cpp"):
        return (
            f"{fleet['engines']} real engines, {fleet['engine']}: {fleet['slots']} slots of "
            f"{fleet['contextPerSlot']:,} tokens, {fleet['cacheRamMiB']} MiB of host prompt "
            f"cache, {fleet['threads']} thread each; {fleet['model']}."
        )
    return (
        f"{fleet.get('engines', '?')} simulated vLLM engines (bench/llm/engine.py: "
        f"{sim['PREFILL_TOKENS_PER_SECOND']:.0f} prefill tok/s, decode step "
        f"{sim['DECODE_STEP_SECONDS'] * 1e3:.0f} ms + "
        f"{sim['DECODE_SECONDS_PER_SEQUENCE'] * 1e3:g} ms per running sequence, "
        f"{sim['KV_BLOCKS'] * 16:,} KV tokens each)."
    )


def render(document: dict[str, Any], quick: bool) -> str:
    config, rows = document["config"], document["rows"]
    lines = [
        f"# LLM routing benchmark ({'quick' if quick else 'full'} run, {document['seconds']} s)",
        "",
        fleet_line(config.get("fleet", {}), document["simulatedEngine"]),
        f"Each peer in turn in front of the same engines, reset before every run; Poisson "
        f"arrivals for {config['seconds']:g} s per run after one warm-up request per prefix "
        f"family; seeds {', '.join(map(str, config['seeds']))}; 2 shared cores.",
        "",
        "**Completes**: every request of the run (warm-up included) got 200, all its tokens, "
        f"the usage chunk and [DONE] before the last arrival + {config['drain']:g} s. TTFT and "
        "latency count from the scheduled send time, over the completed measured requests. "
        "Output tok/s: completion tokens of those requests over the time from the first "
        "measured arrival to the last completion. **Reuse**: cached prompt tokens / prompt "
        "tokens, from the engines' own counters (llama.cpp `llamacpp:prompt_tokens_cached_total`"
        " and `prompt_tokens_total`; vLLM `prefix_cache_hits / queries`), in total and per "
        "engine; **oracle**: what an ideal spread of the same schedule reuses "
        "(bench/llm/oracle.py). Prompt share: each engine's share of the prompt tokens. "
        f"SLO: TTFT p90 <= {SLO_MS / 1e3:g} s with every request complete; a peer runs at "
        "higher rates only while it meets it. Peer's own decisions: what its decision counter "
        "counted during the run (bench/llm/PEERS.md).",
        "",
    ]
    for name, goal in document["targets"].items():
        mine = [r for r in rows if r["workload"] == name]
        shape = config.get("workloads", {}).get(name, {})
        lines += [
            f"## {name}",
            "",
            "Workload: " + ", ".join(f"{k} {v}" for k, v in shape.items() if k != "workload"),
            "",
            *summary_table(goal),
            "",
            "| req/s | seed | peer | completes | output tok/s | TTFT p50 ms | p90 | p99 |"
            " e2e p50 / p99 ms | reuse / oracle (per engine) | prompt share |"
            " peer's own decisions |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *(_row(r) for r in sorted(mine, key=lambda r: (r["rate"], r["seed"]))),
            "",
        ]
    if document.get("probes"):
        lines += ["## Prefix probe", "", *probe_lines(document["probes"]), ""]
    if document["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {name}: {why}" for name, why in document["skipped"].items()]
        lines.append("")
    lines += ["## Notes", "", *(f"- {n}" for n in document.get("notes", [])), ""]
    lines += ["Plots: llm-<workload>.png (TTFT p90, output tok/s and reuse against the rate).", ""]
    return "\n".join(lines)
