"""Compare two stored pytest-benchmark runs test by test (e.g. TensorRT 8.6.2 vs 10.3, same device).

For each test id present in both runs: the ratio of medians B/A with an interval, and a verdict.
Where both runs kept raw samples (``--benchmark-save-data``) the interval is a bootstrap interval of
the ratio of medians; otherwise it is the conservative quartile interval [q1_B/q3_A, q3_B/q1_A].
A test is a **regression** when its ratio exceeds 1 + threshold and the whole interval lies above 1;
an **improvement** symmetrically. Differences in ``machine_info`` are printed, never hidden: a
comparison across devices or backends is allowed but said out loud.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CompareError", "Row", "compare_runs", "format_table", "load_run", "machine_differences"]


class CompareError(ValueError):
    """A run file cannot be compared; the message names the file."""


@dataclass(frozen=True)
class Row:
    test: str
    median_a_ms: float
    median_b_ms: float
    ratio: float
    low: float
    high: float
    verdict: str  # regression | improvement | same


def load_run(path: str | Path) -> dict[str, Any]:
    """A pytest-benchmark JSON file, or a folder (its newest JSON)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.rglob("*.json"), key=lambda f: f.stat().st_mtime)
        if not files:
            raise CompareError(f"{p}: no pytest-benchmark JSON files in this folder")
        p = files[-1]
    if not p.is_file():
        raise CompareError(f"{p}: no such file")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise CompareError(f"{p}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise CompareError(f"{p}: not a pytest-benchmark run (no 'benchmarks' list)")
    for i, b in enumerate(data["benchmarks"]):
        stats = b.get("stats") if isinstance(b, dict) else None
        if not isinstance(stats, dict) or not all(
            isinstance(stats.get(k), int | float) and stats[k] > 0 for k in ("median", "q1", "q3")
        ):
            raise CompareError(
                f"{p}: benchmark #{i} ({b.get('name', '?') if isinstance(b, dict) else '?'}) has no positive median/q1/q3 stats"
            )
    data["_path"] = str(p)
    return data


def _by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in run["benchmarks"]}


def _interval(a: dict, b: dict, seed: int = 0) -> tuple[float, float]:
    da, db = a["stats"].get("data"), b["stats"].get("data")
    if da and db:
        rng = np.random.default_rng(seed)
        xa, xb = np.asarray(da, float), np.asarray(db, float)
        ra = np.median(rng.choice(xa, (2000, xa.size)), axis=1)
        rb = np.median(rng.choice(xb, (2000, xb.size)), axis=1)
        lo, hi = np.quantile(rb / ra, [0.005, 0.995])
        return float(lo), float(hi)
    sa, sb = a["stats"], b["stats"]
    return sb["q1"] / sa["q3"], sb["q3"] / sa["q1"]


def compare_runs(a: dict[str, Any], b: dict[str, Any], threshold: float = 0.10) -> list[Row]:
    if not 0 < threshold < 10:
        raise CompareError(f"--threshold must be a fraction like 0.1 (10 %), got {threshold}")
    ba, bb = _by_name(a), _by_name(b)
    rows = []
    for name in sorted(set(ba) & set(bb)):
        ma, mb = ba[name]["stats"]["median"], bb[name]["stats"]["median"]
        ratio = mb / ma
        lo, hi = _interval(ba[name], bb[name])
        if ratio > 1 + threshold and lo > 1:
            verdict = "regression"
        elif ratio < 1 / (1 + threshold) and hi < 1:
            verdict = "improvement"
        else:
            verdict = "same"
        rows.append(Row(name, ma * 1e3, mb * 1e3, ratio, lo, hi, verdict))
    return rows


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return {k.rstrip("."): v for k, v in out.items()}
    return {prefix: d}


def machine_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    fa, fb = _flatten(a.get("machine_info", {})), _flatten(b.get("machine_info", {}))
    keys = sorted(set(fa) | set(fb))
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]


def format_table(rows: list[Row], only_a: list[str], only_b: list[str]) -> str:
    w = max([len(r.test) for r in rows] + [4])
    lines = [f"{'test':<{w}}  {'A ms':>9}  {'B ms':>9}  {'B/A':>6}  {'interval':>15}  verdict",
             "-" * (w + 60)]  # fmt: skip
    for r in rows:
        mark = {"regression": "REGRESSION", "improvement": "improved", "same": "same"}[r.verdict]
        lines.append(f"{r.test:<{w}}  {r.median_a_ms:9.4f}  {r.median_b_ms:9.4f}  {r.ratio:6.3f}  "
                     f"[{r.low:5.3f}, {r.high:5.3f}]  {mark}")  # fmt: skip
    for name in only_a:
        lines.append(f"{name:<{w}}  only in A")
    for name in only_b:
        lines.append(f"{name:<{w}}  only in B")
    return "\n".join(lines)


def write_plot(rows: list[Row], path: Path, threshold: float) -> bool:
    """Per-test ratio bars with intervals; False when matplotlib is missing."""
    from .plots import pyplot, save_png

    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(rows) + 2), 4.5))
    x = np.arange(len(rows))
    ratios = np.array([r.ratio for r in rows])
    err = np.array([[r.ratio - r.low for r in rows], [r.high - r.ratio for r in rows]])
    colors = ["#c0392b" if r.verdict == "regression" else "#27ae60" if r.verdict == "improvement"
              else "#34495e" for r in rows]  # fmt: skip
    ax.bar(x, ratios - 1, bottom=1, color=colors, yerr=err, capsize=2)
    ax.axhline(1, color="k", lw=0.8)
    ax.axhline(1 + threshold, color="#c0392b", ls="--", lw=0.8, label=f"+{threshold:.0%} threshold")
    ax.set_xticks(x, [r.test.replace("test_benchmark", "") for r in rows], rotation=70, ha="right",
                  fontsize=7)  # fmt: skip
    ax.set_ylabel("median B / A (lower is faster)")
    ax.set_title("Per-test latency ratio, run B vs run A")
    ax.legend(fontsize=8)
    ax.set_yscale("log")
    save_png(fig, path)
    plt.close(fig)
    return True
