"""LLM routing benchmark: servicepool's strategies, vllm-router and nginx on the same members.

    python bench/llm/run.py [--quick] [--rates 4,8] [--seconds 10] [--peers substring,...]

Starts MEMBERS simulated engines (bench/llm/engine.py) in one process, then for every rate and
every peer (in that order, so peers alternate at each rate): starts the peer, empties the
engines' queues and caches, sends the same schedule (bench/llm/workload.py), reads the engines'
prefix-cache counters and stops the peer. Writes report.md, report.json and PNG plots to
bench/results/llm/ (or llm-quick/ with --quick).

A peer with a prefix policy (cache_aware, prefix_hash, cacheAware) is probed the first time it
starts (bench/llm/probe.py); one that fails the probe is refused: none of its runs count, and
the report says why. --probe-only probes those peers and writes nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.llm import peers as peerlib  # noqa: E402
from bench.llm.client import drive, prefix_counters, reset_members  # noqa: E402
from bench.llm.probe import decision_counter, probe, read_counter  # noqa: E402
from bench.llm.report import OWN_RR, summarize, write_report  # noqa: E402
from bench.llm.workload import schedule  # noqa: E402

MEMBERS = 4
# Full: every peer at every rate. Quick: servicepool roundRobin at rising rates until it stops
# completing, then every other peer once at the highest rate where it completed.
FULL = {"rates": [6.0, 10.0, 12.0, 14.0, 17.0], "seconds": 9.0, "drain": 4.0}
QUICK = {"rates": [12.0, 15.0], "seconds": 9.0, "drain": 4.0}


def start_members(tmp: Path) -> tuple[subprocess.Popen[bytes], list[str]]:
    ports = [peerlib.free_port() for _ in range(MEMBERS)]
    argv = [sys.executable, str(ROOT / "bench/llm/member.py")]
    for port in ports:
        argv += ["--listen", f"127.0.0.1:{port}"]
    log = open(tmp / "members.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    for port in ports:
        peerlib.wait_for_port(port, process)
    return process, [f"http://127.0.0.1:{p}" for p in ports]


def peer_decisions(peer: peerlib.Peer, urls: list[str]) -> Counter[str]:
    """The peer's own routing-decision counter by outcome (empty if it exports none)."""
    counter = decision_counter(peer.kind, peer.option)
    return read_counter(urls, counter) if counter and urls else Counter()


def refused(peer: peerlib.Peer, rate: float, verdict: dict[str, Any]) -> dict[str, Any]:
    """The row of a run that does not count: the peer failed the prefix probe."""
    why = "; ".join(verdict["reasons"])
    return {"peer": peer.name, "rate": rate, "refused": f"failed the prefix probe: {why}"}


def run_one(
    peer: peerlib.Peer,
    members: list[str],
    rate: float,
    requests: list[Any],
    drain: float,
    tmp: Path,
    verdicts: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """One run of the schedule through the peer; its verdict is probed first if still unknown."""
    began = time.monotonic()
    running = peerlib.start(peer, members, tmp)
    started = time.monotonic()
    before: dict[str, tuple[float, float]] = {}
    try:
        if peer.follows_prefixes and peer.name not in verdicts:
            verdicts[peer.name] = probe(
                running.port, members, running.metrics_urls, peer.kind, peer.option
            )
            print(json.dumps({"peer": peer.name, "probe": verdicts[peer.name]}), flush=True)
        if not verdicts.get(peer.name, {"passed": True})["passed"]:
            return refused(peer, rate, verdicts[peer.name])
        reset_members(members)
        decisions = peer_decisions(peer, running.metrics_urls)
        url = f"http://127.0.0.1:{running.port}/v1/chat/completions"
        result = asyncio.run(
            drive(url, requests, drain, lambda: before.update(prefix_counters(members)))
        )
        after = prefix_counters(members)
        decisions = peer_decisions(peer, running.metrics_urls) - decisions
    finally:
        running.stop()
    row = summarize(peer, rate, result, before, after)
    if decision_counter(peer.kind, peer.option):
        row["peerDecisions"] = dict(decisions)
    row["seconds"] = {
        "start": round(started - began, 1),
        "run": round(time.monotonic() - started, 1),
    }
    return row


class Sweep:
    """Runs (peer, rate) pairs in front of the same members and keeps the rows."""

    def __init__(self, members: list[str], config: dict[str, Any], tmp: Path) -> None:
        self.members, self.config, self.tmp = members, config, tmp
        self.rows: list[dict[str, Any]] = []
        self.schedules: dict[float, list[Any]] = {}
        self.verdicts: dict[str, dict[str, Any]] = {}  # peer name -> its prefix probe

    def run(self, peer: peerlib.Peer, rate: float) -> dict[str, Any]:
        if rate not in self.schedules:
            self.schedules[rate] = schedule(rate, self.config["seconds"])
        verdict = self.verdicts.get(peer.name)
        try:
            if verdict and not verdict["passed"]:
                row = refused(peer, rate, verdict)
            else:
                row = run_one(peer, self.members, rate, self.schedules[rate],
                              self.config["drain"], self.tmp, self.verdicts)  # fmt: skip
        except RuntimeError as exc:
            row = {"peer": peer.name, "rate": rate, "failed": str(exc)}
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row

    def full(self, peers: list[peerlib.Peer]) -> None:
        """Every peer at every rate; peers alternate at each rate."""
        for rate in self.config["rates"]:
            for peer in peers:
                self.run(peer, rate)

    def quick(self, peers: list[peerlib.Peer]) -> None:
        """servicepool roundRobin at rising rates until it no longer completes, then every
        other peer at the highest rate where it did (or the lowest rate)."""
        others = [p for p in peers if p.name != OWN_RR]
        chosen = self.config["rates"][0]
        for peer in peers:
            if peer.name != OWN_RR:
                continue
            for rate in self.config["rates"]:
                if not self.run(peer, rate).get("completes"):
                    break
                chosen = rate
        for peer in others:
            self.run(peer, chosen)

    def probe_only(self, peers: list[peerlib.Peer]) -> None:
        """Start and probe every peer with a prefix policy; no runs."""
        for peer in (p for p in peers if p.follows_prefixes):
            running = peerlib.start(peer, self.members, self.tmp)
            try:
                verdict = probe(running.port, self.members, running.metrics_urls, peer.kind,
                                peer.option)  # fmt: skip
            finally:
                running.stop()
            self.verdicts[peer.name] = verdict
            print(json.dumps({"peer": peer.name, "probe": verdict}), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rates", help="comma-separated requests/s")
    parser.add_argument("--seconds", type=float, help="measured window per run")
    parser.add_argument("--peers", help="only peers whose name contains one of these")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--probe-only", action="store_true", help="probe prefix peers, no runs")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    config = dict(QUICK if args.quick else FULL)
    if args.rates:
        config["rates"] = [float(r) for r in args.rates.split(",")]
    if args.seconds:
        config["seconds"] = args.seconds
    out = args.out or ROOT / "bench/results" / ("llm-quick" if args.quick else "llm")
    started = time.monotonic()
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="servicepool-bench-llm-") as name:
        process, members = start_members(Path(name))
        try:
            wanted = (args.peers or "").split(",")
            chosen = [p for p in peerlib.all_peers() if any(s in p.name for s in wanted)]
            for peer in chosen:
                reason = peerlib.unavailable(peer, members)
                if reason:
                    skipped[peer.name] = reason
                    print(f"-- skip {peer.name}: {reason}", flush=True)
            active = [p for p in chosen if p.name not in skipped]
            sweep = Sweep(members, config, Path(name))
            if args.probe_only:
                sweep.probe_only(active)
                return 0 if all(v["passed"] for v in sweep.verdicts.values()) else 1
            (sweep.quick if args.quick else sweep.full)(active)
        finally:
            process.terminate()
            process.wait(10)
    elapsed = time.monotonic() - started
    write_report(out, sweep.rows, skipped, sweep.verdicts, config, elapsed, args.quick)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
