"""Does a started peer follow prompt prefixes? Checked before a run of a prefix policy counts.

The probe empties the members' caches, then sends PREFIXES long, distinct system prompts
(of the fleet's `probe_words`) once each (cold), then WARM_ROUNDS rounds of the same prompts,
each with a new user message. Requests go one at a time, and each is put down to the member
whose own prompt-token counter grew (real engines do not name themselves in answers). It
passes when
- every request is answered;
- each prefix stayed on one member for at least MIN_AFFINITY of its requests;
- the members' own prompt-cache counters show at least MIN_WARM_HIT_RATE of the warm
  rounds' prompt tokens served from cache;
- the peer's own decision counter, where it exports one, agrees: its fallback for prompts it
  could not read never grew, and it reports a prefix hit for at least MIN_AFFINITY of the warm
  requests.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request
from collections import Counter
from typing import Any

from bench.llm.fleet import Fleet
from bench.llm.routers import ROUTERS, DecisionCounter
from bench.llm.text import words

PREFIXES = 4
USER_WORDS = 12
WARM_ROUNDS = 3
MIN_AFFINITY = 0.75
MIN_WARM_HIT_RATE = 0.85
SERVICEPOOL_COUNTER = DecisionCounter("servicepool_member_prefix_hits_total", None)
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Snapshot = dict[str, Any]  # members' (queries, hits) and the peer's decisions at one moment


def decision_counter(kind: str, option: str) -> DecisionCounter | None:
    """The peer's own counter of its prefix decisions, if it exports one."""
    if kind == "servicepool":
        return SERVICEPOOL_COUNTER if option == "cacheAware" else None
    spec = ROUTERS.get(kind)
    return spec.counters.get(option) if spec else None


def read_counter(urls: list[str], counter: DecisionCounter) -> Counter[str]:
    """The counter's samples summed by the value of its label ("" without a label)."""
    out: Counter[str] = Counter()
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode(errors="replace")
        for line in text.splitlines():
            match = _SAMPLE.match(line.strip())
            if not match or match[1] != counter.metric:
                continue
            labels = dict(_LABEL.findall(match[2] or ""))
            out[labels.get(counter.label, "") if counter.label else ""] += float(match[3])
    return out


def prompts(prefix_words: int, seed: int = 7) -> list[str]:
    """PREFIXES distinct long system prompts."""
    rng = random.Random(seed)
    return [f"probe{i} " + " ".join(words(rng, prefix_words - 1)) for i in range(PREFIXES)]


def body(system: str, model: str, rng: random.Random) -> dict[str, Any]:
    user = " ".join(words(rng, USER_WORDS))
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return {"model": model, "messages": messages, "max_tokens": 2}


def send(url: str, request: dict[str, Any]) -> bool:
    """Whether the request was answered with 200."""
    data = json.dumps(request).encode()
    headers = {"Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as r:
            r.read()
            return r.status == 200
    except (OSError, ValueError):
        return False


def grown(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> str:
    """The member whose prompt-token counter grew most between two snapshots ("" if none)."""
    growth = {m: after[m][0] - before[m][0] for m in after}
    member = max(growth, key=lambda m: growth[m], default="")
    return member if growth.get(member, 0) > 0 else ""


def exchange(
    url: str, fleet: Fleet, urls: list[str], counter: DecisionCounter | None
) -> dict[str, Any]:
    """Send the cold round, then the warm rounds, one request at a time."""
    systems, rng = prompts(fleet.probe_words), random.Random(11)
    placed: dict[int, list[str]] = {i: [] for i in range(PREFIXES)}
    cold: Snapshot = {}
    for round_ in range(1 + WARM_ROUNDS):
        if round_ == 1:
            cold = snapshot(fleet, urls, counter)
        for i, system in enumerate(systems):
            before = fleet.counters()
            answered = send(url, body(system, fleet.model, rng))
            placed[i].append(grown(before, fleet.counters()) if answered else "")
    return {"placed": placed, "cold": cold}


def snapshot(fleet: Fleet, urls: list[str], counter: DecisionCounter | None) -> Snapshot:
    engines = fleet.counters()
    decisions = read_counter(urls, counter) if counter and urls else Counter()
    return {"engines": engines, "decisions": decisions}


def judge(
    placed: dict[int, list[str]],
    start: Snapshot,
    cold: Snapshot,
    end: Snapshot,
    counter: DecisionCounter | None,
) -> dict[str, Any]:
    """The verdict from where each prefix went and from both sides' counters."""
    reasons: list[str] = []
    sent = sum(len(v) for v in placed.values())
    failed = sum(1 for v in placed.values() for m in v if not m)
    if failed:
        reasons.append(f"{failed} of {sent} probe requests failed")
    shares = {f"probe{i}": max(Counter(v).values()) / len(v) for i, v in placed.items() if any(v)}
    if any(share < MIN_AFFINITY for share in shares.values()):
        reasons.append(f"a prefix left its member: shares {shares}")
    queries = sum(end["engines"][m][0] - cold["engines"][m][0] for m in end["engines"])
    hits = sum(end["engines"][m][1] - cold["engines"][m][1] for m in end["engines"])
    warm_hit_rate = hits / max(1.0, queries)
    if warm_hit_rate < MIN_WARM_HIT_RATE:
        reasons.append(f"members' warm-round hit rate {warm_hit_rate:.2f} < {MIN_WARM_HIT_RATE}")
    verdict = {
        "placement": {f"probe{i}": dict(Counter(v)) for i, v in placed.items()},
        "affinity": round(min(shares.values(), default=0.0), 3),
        "warmHitRate": round(warm_hit_rate, 3),
        "membersUsed": len({m for v in placed.values() for m in v if m}),
    }
    if counter is None:
        verdict["peerCounter"] = "none exported: judged on the members' counters alone"
    else:
        reasons += check_counter(counter, start, cold, end, verdict)
    return {"passed": not reasons, "reasons": reasons, **verdict}


def check_counter(
    counter: DecisionCounter, start: Snapshot, cold: Snapshot, end: Snapshot, out: dict[str, Any]
) -> list[str]:
    """Reasons the peer's own decision counter contradicts a pass; fills out['peerCounter']."""
    whole = end["decisions"] - start["decisions"]
    warm = end["decisions"] - cold["decisions"]
    out["peerCounter"] = {"metric": counter.metric, "probe": dict(whole), "warm": dict(warm)}
    reasons = []
    fired = {k: v for k, v in whole.items() if k in counter.never}
    if fired:
        reasons.append(f"the peer's fallback fired: {counter.metric} {fired}")
    warm_requests = PREFIXES * WARM_ROUNDS
    warm_hits = sum(v for k, v in warm.items() if not counter.label or k in counter.hits)
    if warm_hits < MIN_AFFINITY * warm_requests:
        reasons.append(
            f"the peer counted {warm_hits:g} prefix hits in {warm_requests} warm requests"
        )
    return reasons


def probe(
    port: int, fleet: Fleet, metrics_urls: list[str], kind: str, option: str
) -> dict[str, Any]:
    """Probe the peer listening on 127.0.0.1:port in front of the fleet's freshly reset
    members; the verdict as a JSON-ready dict."""
    began = time.monotonic()
    counter = decision_counter(kind, option)
    start = snapshot(fleet, metrics_urls, counter)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    sent = exchange(url, fleet, metrics_urls, counter)
    end = snapshot(fleet, metrics_urls, counter)
    verdict = judge(sent["placed"], start, sent["cold"], end, counter)
    verdict["seconds"] = round(time.monotonic() - began, 1)
    return verdict
