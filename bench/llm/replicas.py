"""cacheAware with several proxy replicas and no shared state: how much reuse they keep
against one proxy, and what killing one replica mid-run costs.

    python bench/llm/replicas.py [--engine llama|sim] [--rate 8] [--seconds 90] [--seeds 1,2]

On the same engines and the same schedule (the chat workload), for each seed: one proxy;
three proxies behind nginx round-robin (what a Service in front of the proxy Pods does); the
same three, one of them killed with SIGKILL in the middle of the run. Reuse is counted from
the cached tokens each answer reports (`usage.prompt_tokens_details.cached_tokens`), over
30-second windows by send time: the window before the kill and the one after, for the run
with the kill and for the three replicas left alone. Writes replicas.md and replicas.json to
bench/results/llm-<engine>/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.llm import fleet as fleetlib  # noqa: E402
from bench.llm import peers as peerlib  # noqa: E402
from bench.llm.client import Outcome, drive  # noqa: E402
from bench.llm.scenarios import for_engine  # noqa: E402

WINDOW = 30.0  # seconds of sends before and after the kill
DRAIN = 6.0


def reuse(outcomes: list[Outcome], start: float, end: float) -> float | None:
    """Cached prompt tokens / prompt tokens of the measured answers sent in [start, end)."""
    chosen = [
        o for o in outcomes
        if not o.request.warmup and start <= o.request.at < end and o.cached_tokens is not None
    ]  # fmt: skip
    prompt = sum(o.prompt_tokens for o in chosen)
    return round(sum(o.cached_tokens or 0 for o in chosen) / prompt, 4) if prompt else None


async def _drive_and_kill(
    url: str, requests: list[Any], process: Any | None, kill_at: float
) -> dict[str, Any]:
    async def kill() -> None:
        await asyncio.sleep(kill_at)
        process.send_signal(signal.SIGKILL)

    killer = asyncio.create_task(kill()) if process is not None else None
    result = await drive(url, requests, DRAIN)
    if killer is not None:
        await killer
    return result


def run(
    fleet: fleetlib.Fleet, replicas: int, requests: list[Any], kill_at: float | None, tmp: Path
) -> dict[str, Any]:
    """One run through `replicas` cacheAware proxies; with kill_at, the first is killed then
    (seconds after the schedule's origin)."""
    fleet.reset()
    peer = peerlib.Peer(
        f"cacheAware x{replicas}", "servicepool", "cacheAware", replicas,
        {"capacity": fleet.capacity},
    )  # fmt: skip
    running = peerlib.start(peer, fleet.urls, tmp)
    try:
        victim = running.processes[0] if kill_at is not None else None
        url = f"http://127.0.0.1:{running.port}/v1/chat/completions"
        result = asyncio.run(_drive_and_kill(url, requests, victim, kill_at or 0.0))
    finally:
        running.stop()
    outcomes: list[Outcome] = result["outcomes"]
    measured = [o for o in outcomes if not o.request.warmup]
    return {
        "replicas": replicas,
        "killedAt": kill_at,
        "requests": len(measured),
        "errors": sum(not o.complete for o in measured),
        "reuse": reuse(outcomes, 0.0, float("inf")),
        "outcomes": outcomes,
    }


def windows(row: dict[str, Any], kill_at: float) -> dict[str, float | None]:
    outcomes = row["outcomes"]
    return {
        "before": reuse(outcomes, kill_at - WINDOW, kill_at),
        "after": reuse(outcomes, kill_at, kill_at + WINDOW),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=["llama", "sim"], default="llama")
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scenario = for_engine(args.engine, ["chat"])[0]
    out = args.out or ROOT / "bench/results" / f"llm-{args.engine}"
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="servicepool-bench-replicas-") as tmp:
        fleet = fleetlib.start(args.engine, Path(tmp))
        try:
            for seed in (int(s) for s in args.seeds.split(",")):
                requests = scenario.schedule(args.rate, args.seconds, seed)
                first = next(r.at for r in requests if not r.warmup)
                kill_at = first + args.seconds / 2
                one = run(fleet, 1, requests, None, Path(tmp))
                three = run(fleet, 3, requests, None, Path(tmp))
                killed = run(fleet, 3, requests, kill_at, Path(tmp))
                row = {
                    "seed": seed,
                    "rate": args.rate,
                    "reuse": {"one": one["reuse"], "three": three["reuse"]},
                    "threeOverOne": round(three["reuse"] / one["reuse"], 3),
                    "errors": {"one": one["errors"], "three": three["errors"],
                               "killed": killed["errors"]},
                    "requests": one["requests"],
                    "killedAt": round(kill_at, 1),
                    "windowsLeftAlone": windows(three, kill_at),
                    "windowsKilled": windows(killed, kill_at),
                }  # fmt: skip
                alone, cut = row["windowsLeftAlone"]["after"], row["windowsKilled"]["after"]
                row["afterKillPoints"] = round(100 * ((cut or 0.0) - (alone or 0.0)), 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
            described = fleet.describe()
        finally:
            fleet.stop()
    out.mkdir(parents=True, exist_ok=True)
    document = {"engines": described, "workload": scenario.describe(), "rows": rows,
                "seconds": round(time.monotonic() - started)}  # fmt: skip
    (out / "replicas.json").write_text(json.dumps(document, indent=1) + "\n")
    (out / "replicas.md").write_text(markdown(document, args.seconds))
    print((out / "replicas.md").read_text())
    return 0


def markdown(document: dict[str, Any], seconds: float) -> str:
    lines = [
        f"# cacheAware with three proxy replicas ({document['seconds']} s)",
        "",
        ", ".join(f"{k} {v}" for k, v in document["engines"].items()),
        "",
        "Chat workload ("
        + ", ".join(f"{k} {v}" for k, v in document["workload"].items())
        + f"), {seconds:.0f}-s schedules. One proxy; three "
        "proxies behind nginx round-robin; the same three with one killed (SIGKILL) halfway. "
        f"Reuse: cached / prompt tokens the answers report; windows of {WINDOW:.0f} s of sends "
        "before and after the kill. Errors: measured requests not complete (those in flight "
        "on the killed replica fail).",
        "",
        "| seed | req/s | reuse, one proxy | three | three / one | three, before / after "
        "(left alone) | three, before / after (one killed) | after the kill, points | errors "
        "(one, three, killed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in document["rows"]:
        alone, killed = r["windowsLeftAlone"], r["windowsKilled"]
        lines.append(
            f"| {r['seed']} | {r['rate']:g} | {r['reuse']['one']:.3f} | {r['reuse']['three']:.3f}"
            f" | {r['threeOverOne']:.3f} | {alone['before']:.3f} / {alone['after']:.3f}"
            f" | {killed['before']:.3f} / {killed['after']:.3f} | {r['afterKillPoints']:+.1f}"
            f" | {r['errors']['one']}, {r['errors']['three']}, {r['errors']['killed']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
