"""llm.png: TTFT p90, output tokens/s and prefix-cache hit rate against the request rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.llm.report import counted


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    peers = list(dict.fromkeys(r["peer"] for r in rows if counted(r)))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    panels = [
        ("TTFT p90 (s)", lambda r: (r["ttftMs"]["p90"] or float("nan")) / 1e3),
        ("output tokens/s", lambda r: r["outputTokensPerSecond"]),
        ("prefix-cache hit rate", lambda r: r["hitRate"]),
    ]
    for ax, (label, value) in zip(axes, panels, strict=True):
        for peer in peers:
            mine = sorted(
                (r for r in rows if r["peer"] == peer and counted(r)),
                key=lambda r: r["rate"],
            )
            style = "-" if peer.startswith("servicepool") else "--"
            ax.plot(
                [r["rate"] for r in mine],
                [value(r) for r in mine],
                style,
                marker="o",
                markersize=3,
                label=peer,
            )
            broken = [r for r in mine if not r["completes"]]
            ax.plot(
                [r["rate"] for r in broken],
                [value(r) for r in broken],
                "x",
                color="red",
                markersize=7,
            )
        ax.set_xlabel("requests/s")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].legend(fontsize=7, loc="best")
    fig.suptitle("LLM routing on simulated engines (x: run did not complete)")
    fig.tight_layout()
    fig.savefig(out / "llm.png", dpi=100)
    plt.close(fig)
