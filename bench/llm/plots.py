"""llm-<workload>.png: TTFT p90, output tokens/s and reuse against the request rate (means
over the seeds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.llm.report import counted

Value = Callable[[dict[str, Any]], float]


def _means(rows: list[dict[str, Any]], value: Value) -> tuple[list[float], list[float]]:
    rates = sorted({r["rate"] for r in rows})
    means = []
    for rate in rates:
        values = [value(r) for r in rows if r["rate"] == rate]
        means.append(sum(values) / len(values))
    return rates, means


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    panels: list[tuple[str, Value]] = [
        ("TTFT p90 (s)", lambda r: (r["ttftMs"]["p90"] or float("nan")) / 1e3),
        ("output tokens/s", lambda r: r["outputTokensPerSecond"]),
        ("reuse (cached / prompt tokens)", lambda r: r["reuse"]),
    ]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        mine = [r for r in rows if r["workload"] == workload and counted(r)]
        peers = list(dict.fromkeys(r["peer"] for r in mine))
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
        for ax, (label, value) in zip(axes, panels, strict=True):
            for peer in peers:
                rates, means = _means([r for r in mine if r["peer"] == peer], value)
                style = "-" if peer.startswith("servicepool") else "--"
                ax.plot(rates, means, style, marker="o", markersize=3, label=peer)
                broken = [r for r in mine if r["peer"] == peer and not r["completes"]]
                ax.plot([r["rate"] for r in broken], [value(r) for r in broken], "x",
                        color="red", markersize=7)  # fmt: skip
            ax.set_xlabel("requests/s")
            ax.set_title(label)
            ax.grid(alpha=0.3)
        axes[0].set_yscale("log")
        axes[2].legend(fontsize=7, loc="best")
        fig.suptitle(f"LLM routing, {workload} (x: a run did not complete)")
        fig.tight_layout()
        fig.savefig(out / f"llm-{workload}.png", dpi=100)
        plt.close(fig)
