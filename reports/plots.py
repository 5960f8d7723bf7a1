"""PNG plots for the summary (matplotlib, headless). Missing matplotlib means no plots, not a crash."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from models._io import atomic_write_bytes

__all__ = ["pyplot", "save_png", "write_plots"]


def pyplot():
    """matplotlib's pyplot on the headless Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(fig, path: Path) -> None:
    """Write ``fig`` as a PNG, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def write_plots(run: dict[str, Any], out: Path) -> list[str]:
    plt = pyplot()
    if plt is None:
        return []
    written: list[str] = []
    sweeps = {}
    for _, t in sorted(run["tests"].items()):
        sw = t.get("props", {}).get("sweep")
        case = t.get("props", {}).get("case")
        if sw and case:
            label = case["model"] + (f" {case['precision']}" if case.get("precision") else "")
            label += f" ({sw['criterion']})" if sw.get("criterion") else ""
            sweeps.setdefault(label, sw)
    if sweeps:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for label, sw in sweeps.items():
            ax1.plot(sw["thresholds"], sw["exit_rate"], label=label)
            ax2.plot(sw["exit_rate"], sw["accuracy"], marker=".", label=label)
        ax1.set(xlabel="threshold", ylabel="exit rate", title="Exit rate vs threshold")
        ax2.set(
            xlabel="exit rate",
            ylabel="accuracy",
            title="Accuracy vs exit rate (BranchyNet trade-off)",
        )
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        save_png(fig, out / "threshold_sweep.png")
        plt.close(fig)
        written.append("threshold_sweep.png")
    curves = [
        (t["props"]["case"], t["props"]["tradeoff"])
        for _, t in sorted(run["tests"].items())
        if "tradeoff" in t.get("props", {}) and "case" in t.get("props", {})
    ]
    from matplotlib.ticker import NullFormatter

    curves = [
        (c, tr)
        for c, tr in curves
        if all(x is not None for x in tr["accuracy"]) and tr["latency_ms"]
    ]
    if curves:  # one panel per case: a curve per strategy, the no-exit twin as a star
        cols = min(3, len(curves))
        rows = -(-len(curves) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, (case, tr) in zip(axes.flat, curves, strict=False):
            for lab, ms in tr["latency_ms"].items():
                ax.plot(ms, tr["accuracy"], marker=".", label=lab)
            if "twin" in tr and tr["twin"]["accuracy"] is not None:
                ax.plot(
                    [tr["twin"]["latency_ms"]],
                    [tr["twin"]["accuracy"]],
                    marker="*",
                    markersize=12,
                    linestyle="none",
                    color="k",
                    label="no-exit twin",
                )
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(case.get("id") or case["model"], fontsize=8)
            ax.set_xlabel(f"mean latency per inference (ms, {tr.get('timing', '')})", fontsize=7)
            ax.set_ylabel("accuracy", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(curves) :]:
            ax.set_visible(False)
        fig.suptitle("Accuracy vs latency, one point per threshold (BranchyNet's trade-off)")
        fig.tight_layout()
        save_png(fig, out / "tradeoff.png")
        plt.close(fig)
        written.append("tradeoff.png")
    lat = [
        (t["props"]["case"], t["props"]["latency"])
        for t in run["tests"].values()
        if "latency" in t.get("props", {})
        and "case" in t.get("props", {})
        and isinstance(t["props"]["latency"], dict)
    ]
    if lat:
        fig, ax = plt.subplots(figsize=(11, 4))
        labels = [
            c.get("id") or f"{c['model']}-{c.get('precision')}-{c.get('path')}" for c, _ in lat
        ]
        med = [v["median_ms"] for _, v in lat]
        lo = [v["median_ms"] - v.get("p05_ms", v["median_ms"]) for _, v in lat]
        hi = [v.get("p95_ms", v["median_ms"]) - v["median_ms"] for _, v in lat]
        ax.bar(range(len(med)), med, yerr=[lo, hi], capsize=3)
        ax.set_xticks(range(len(med)), labels, rotation=60, ha="right", fontsize=7)
        ax.set(ylabel="ms (median, p5-p95)", title="Latency per precision and exit path")
        save_png(fig, out / "latency.png")
        plt.close(fig)
        written.append("latency.png")
    return written
