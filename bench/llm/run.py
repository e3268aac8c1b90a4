"""LLM routing benchmark: servicepool's strategies and the strongest LLM routers that install
here, one at a time in front of the same engines: real llama.cpp engines by default
(bench/llm/fleet.py), simulated vLLM engines with --engine sim.

    python bench/llm/run.py [--engine llama|sim] [--quick] [--workloads chat,shared_prefix]
        [--rates 4,8] [--seconds 30] [--seeds 1,2] [--peers substring,...] [--probe-only]

For each workload (bench/llm/scenarios.py), each rate (rising) and each seed, every peer in
turn: the engines are reset (empty caches), the peer is started, the same schedule is sent
(bench/llm/client.py), the engines' own prompt-cache counters are read and the peer is
stopped. A peer stops climbing a workload's rates after a rate where one of its runs missed
the SLO (TTFT p90 <= 1 s, every request complete): its capacity at the SLO is known.

A peer with a prefix policy is probed before its first run (bench/llm/probe.py); one that fails
is refused: none of its runs count, and the report says why. --probe-only probes them and
writes nothing else. Writes report.md, report.json and plots to bench/results/llm-<engine>/
(llm-quick/ with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.llm import fleet as fleetlib  # noqa: E402
from bench.llm import oracle  # noqa: E402
from bench.llm import peers as peerlib  # noqa: E402
from bench.llm.client import drive  # noqa: E402
from bench.llm.probe import decision_counter, probe, read_counter  # noqa: E402
from bench.llm.report import meets_slo, summarize, write_report  # noqa: E402
from bench.llm.scenarios import Scenario, for_engine  # noqa: E402
from bench.llm.workload import Request  # noqa: E402

FULL = {"seconds": 20.0, "drain": 6.0, "seeds": [1, 2]}
QUICK = {"seconds": 12.0, "drain": 5.0, "seeds": [1]}
FULL_PEERS = [
    "ideal spread", "servicepool cacheAware", "servicepool cacheAware x2",
    "servicepool leastInFlight", "sglang-router cache_aware", "smg cache_aware",
    "vllm-router cache_aware",
]  # fmt: skip
QUICK_PEERS = [
    "ideal spread", "servicepool cacheAware", "servicepool roundRobin", "sglang-router cache_aware",
    "smg cache_aware", "vllm-router cache_aware",
]  # fmt: skip


def refused(peer: peerlib.Peer, verdict: dict[str, Any]) -> str:
    return "failed the prefix probe: " + "; ".join(verdict["reasons"])


class Sweep:
    """Runs peers in front of one fleet and keeps the rows and the probes' verdicts."""

    def __init__(self, fleet: fleetlib.Fleet, config: dict[str, Any], tmp: Path) -> None:
        self.fleet, self.config, self.tmp = fleet, config, tmp
        self.rows: list[dict[str, Any]] = []
        self.verdicts: dict[str, dict[str, Any]] = {}  # peer name -> its prefix probe

    def probe(self, peer: peerlib.Peer) -> dict[str, Any]:
        """The peer's probe verdict (probed once, on freshly reset engines)."""
        if peer.name not in self.verdicts:
            self.fleet.reset()
            running = peerlib.start(peer, self.fleet.urls, self.tmp)
            try:
                verdict = probe(running.port, self.fleet, running.metrics_urls, peer.kind,
                                peer.option)  # fmt: skip
            finally:
                running.stop()
            self.verdicts[peer.name] = verdict
            print(json.dumps({"peer": peer.name, "probe": verdict}), flush=True)
        return self.verdicts[peer.name]

    def run(
        self, peer: peerlib.Peer, scenario: Scenario, rate: float, seed: int,
        requests: list[Request], ideal: float,
    ) -> dict[str, Any]:  # fmt: skip
        """One run of the schedule through the peer, or the reason it does not count
        (`ideal`: what the oracle spread reuses of this schedule)."""
        where = {"engine": scenario.engine, "workload": scenario.workload, "seed": seed,
                 "oracleReuse": ideal}  # fmt: skip
        row: dict[str, Any] = {"peer": peer.name, "rate": rate, **where}
        try:
            if peer.follows_prefixes and not self.probe(peer)["passed"]:
                row["refused"] = refused(peer, self.verdicts[peer.name])
            else:
                row = {**self.measure(peer, rate, requests), **where}
        except RuntimeError as exc:
            row["failed"] = str(exc)
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row

    def measure(self, peer: peerlib.Peer, rate: float, requests: list[Request]) -> dict[str, Any]:
        self.fleet.reset()
        if peer.kind == "ideal":
            return self.measure_ideal(peer, rate, requests)
        began = time.monotonic()
        running = peerlib.start(peer, self.fleet.urls, self.tmp)
        started = time.monotonic()
        before: dict[str, tuple[float, float]] = {}
        counter = decision_counter(peer.kind, peer.option)

        def decisions() -> Counter[str]:
            return read_counter(running.metrics_urls, counter) if counter else Counter()

        try:
            at_start = decisions()
            url = f"http://127.0.0.1:{running.port}/v1/chat/completions"
            drain = self.config["drain"]
            mark = lambda: before.update(self.fleet.counters())  # noqa: E731
            result = asyncio.run(drive(url, requests, drain, mark))
            after = self.fleet.counters()
            made = decisions() - at_start
        finally:
            running.stop()
        row = summarize(peer, rate, result, before, after)
        if counter:
            row["peerDecisions"] = dict(made)
        ran = time.monotonic() - started
        row["seconds"] = {"start": round(started - began, 1), "run": round(ran, 1)}
        return row

    def measure_ideal(
        self, peer: peerlib.Peer, rate: float, requests: list[Request]
    ) -> dict[str, Any]:
        """Each prefix family straight to its engine of the ideal spread (no router)."""
        urls = [f"{u}/v1/chat/completions" for u in self.fleet.urls]
        home = oracle.spread(requests, len(urls))
        before: dict[str, tuple[float, float]] = {}
        mark = lambda: before.update(self.fleet.counters())  # noqa: E731
        where = lambda request: urls[home[request.tenant]]  # noqa: E731
        result = asyncio.run(drive(where, requests, self.config["drain"], mark))
        return summarize(peer, rate, result, before, self.fleet.counters())

    def scenario(self, scenario: Scenario, peers: list[peerlib.Peer], rates: list[float]) -> None:
        """Every peer at every rate and seed, rising; a peer that missed the SLO at a rate
        (in any seed) does not run at higher ones (the ideal spread, the reference, does)."""
        climbing = list(peers)
        for rate in rates:
            for seed in self.config["seeds"]:
                requests = scenario.schedule(rate, self.config["seconds"], seed)
                ideal = round(oracle.reuse(requests, self.fleet.replies_match_schedule), 4)
                for peer in climbing:
                    self.run(peer, scenario, rate, seed, requests, ideal)
            ran = [r for r in self.rows if r["workload"] == scenario.workload and r["rate"] == rate]
            climbing = [
                p for p in climbing if all(meets_slo(r) for r in ran if r["peer"] == p.name)
            ]

    def probe_only(self, peers: list[peerlib.Peer]) -> None:
        for peer in peers:
            if peer.follows_prefixes:
                self.probe(peer)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=["llama", "sim"], default="llama")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workloads", help="comma-separated: chat, shared_prefix")
    parser.add_argument("--rates", help="comma-separated requests/s (every workload)")
    parser.add_argument("--seconds", type=float, help="measured window per run")
    parser.add_argument("--seeds", help="comma-separated workload seeds")
    parser.add_argument("--peers", help="only peers whose name contains one of these")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--probe-only", action="store_true", help="probe prefix peers, no runs")
    return parser.parse_args()


def choose_peers(
    args: argparse.Namespace, fleet: fleetlib.Fleet, skipped: dict[str, str]
) -> list[peerlib.Peer]:
    """The peers to run, in order; those that cannot run here go to `skipped` with the reason."""
    every = {p.name: p for p in peerlib.all_peers(fleet.capacity)}
    if args.peers:
        wanted = args.peers.split(",")
        names = [n for n in every if any(s in n for s in wanted)]
    else:
        names = QUICK_PEERS if args.quick else FULL_PEERS
    for name in names:
        reason = peerlib.unavailable(every[name], fleet.urls)
        if reason:
            skipped[name] = reason
            print(f"-- skip {name}: {reason}", flush=True)
    return [every[n] for n in names if n not in skipped]


def main() -> int:
    args = parse_args()
    config: dict[str, Any] = {"engine": args.engine, **(QUICK if args.quick else FULL)}
    if args.seconds:
        config["seconds"] = args.seconds
    if args.seeds:
        config["seeds"] = [int(s) for s in args.seeds.split(",")]
    scenarios = for_engine(args.engine, args.workloads.split(",") if args.workloads else None)
    name = "llm-quick" if args.quick else f"llm-{args.engine}"
    out = args.out or ROOT / "bench/results" / name
    started = time.monotonic()
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="servicepool-bench-llm-") as tmp:
        fleet = fleetlib.start(args.engine, Path(tmp))
        try:
            chosen = choose_peers(args, fleet, skipped)
            sweep = Sweep(fleet, config, Path(tmp))
            if args.probe_only:
                sweep.probe_only(chosen)
                return 0 if all(v["passed"] for v in sweep.verdicts.values()) else 1
            for scenario in scenarios:
                rates = [float(r) for r in args.rates.split(",")] if args.rates else None
                rates = rates or ([scenario.quick_rate] if args.quick else list(scenario.rates))
                sweep.scenario(scenario, chosen, rates)
            config["fleet"] = fleet.describe()
            config["workloads"] = {s.workload: s.describe() for s in scenarios}
        finally:
            fleet.stop()
    elapsed = time.monotonic() - started
    write_report(out, sweep.rows, skipped, sweep.verdicts, config, elapsed, args.quick)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
