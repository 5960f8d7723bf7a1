"""Compare stored pytest-benchmark runs test by test (e.g. TensorRT 8.6.2 vs 10.3, same device).

What is compared: every saved run of ``suites/test_benchmark.py`` carries, in each benchmark's
``extra_info["exitgate_blocks"]``, the medians of consecutive blocks of inferences in time order
(``gpu_compute_ms``: trtexec-style GPU compute time, device engines; ``host_latency_ms``: host
latency of one synchronised inference, from pytest-benchmark's own rounds). Runs saved with
``--benchmark-save-data`` but without blocks are cut into blocks from their raw rounds. Runs that
kept only pytest-benchmark's summary (older files) still compare, marked ``summary`` (weak).

The method (per test id present on both sides):

- ``ratio`` = median(blocks of B) / median(blocks of A), from the block medians (block medians
  of blocks: robust to spikes and bursts);
- its uncertainty on the log scale: the distribution-free standard error of each median from its
  order statistics (Price & Bonett 2002), plus a run-to-run term ``run_noise`` per run: the level
  shift between two runs of the same engine (thermal state, clocks) that no within-run statistic
  can see. Blocks, not single inferences, are the unit, so drift and correlated noise within a run
  widen the interval instead of hiding in it (an i.i.d. bootstrap of single inferences does not);
- one-sided bounds at 1 - alpha each; four verdicts, the last two the "same-or-unknown" outcome:
  **regressed** (lower bound above 1 and ratio >= 1 + threshold), **improved** (the mirror image),
  **same** (both bounds within 1 -/+ same_within), **unknown** (neither: take more samples, see
  ``--more-a``/``--more-b``; several runs per side are pooled, and the run-to-run term shrinks with
  the number of runs);
- summary-only rows: the quartile interval [q1_B/q3_A, q3_B/q1_A] (it does not narrow with more
  data); regressed/improved only when the whole interval lies beyond the threshold, else unknown.

``machine_info`` differences are printed, never hidden.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fixtures.run_facts import BLOCKS_KEY

from .plots import pyplot, save_png

__all__ = [
    "DEFAULTS",
    "CompareError",
    "Row",
    "Side",
    "compare_runs",
    "decide",
    "format_table",
    "load_run",
    "machine_differences",
    "median_se",
]

"""``extra_info`` key of the block medians in a saved run (written by suites/test_benchmark.py)."""
METRICS = ("gpu_compute_ms", "host_latency_ms")
RAW_BLOCK = 5
"""Raw pytest-benchmark rounds per block when blocks are cut from ``--benchmark-save-data`` data."""
MIN_BLOCKS = 10
"""Fewest blocks per side for a block comparison (fewer: summary basis)."""


@dataclass(frozen=True)
class Defaults:
    alpha: float = 0.01
    threshold: float = 0.02
    same_within: float = 0.05
    run_noise: float = 0.0075


DEFAULTS = Defaults()


class CompareError(ValueError):
    """A run file cannot be compared; the message names the file."""


# --------------------------------------------------------------------------------------------------
# The statistics (vectorised over leading axes; tests/simulate_gates.py runs them on simulated runs)


@functools.lru_cache(maxsize=256)
def _pb_constants(n: int) -> tuple[int, float]:
    """Price-Bonett: order statistic c (1-based) and the normal quantile matching the exact
    binomial coverage of [y(c), y(n-c+1)] for the median of n values."""
    from scipy import stats

    c = max(1, round((n + 1) / 2 - math.sqrt(n)))
    tail = float(stats.binom.cdf(c - 1, n, 0.5))
    return c, float(stats.norm.isf(tail))


def median_se(y: np.ndarray) -> np.ndarray:
    """Distribution-free standard error of the sample median over the last axis (Price & Bonett
    2002: the spread of the order statistics around the median, scaled by the exact coverage)."""
    x = np.sort(np.asarray(y, dtype=float), axis=-1)
    n = x.shape[-1]
    if n < 3:
        raise ValueError(f"median_se: need at least 3 values, got {n}")
    c, z = _pb_constants(n)
    return (x[..., n - c] - x[..., c - 1]) / (2 * z)


def decide(
    log_a: np.ndarray,
    log_b: np.ndarray,
    *,
    runs_a: int | np.ndarray = 1,
    runs_b: int | np.ndarray = 1,
    alpha: float = DEFAULTS.alpha,
    threshold: float = DEFAULTS.threshold,
    same_within: float = DEFAULTS.same_within,
    run_noise: float = DEFAULTS.run_noise,
) -> dict[str, np.ndarray]:
    """Compare log block medians ``log_a[..., blocks]`` with ``log_b``: keys ``theta`` (log ratio
    B/A of the medians), ``se``, ``low``/``high`` (one-sided 1 - alpha bounds of theta) and
    ``verdict`` (1 regressed, -1 improved, 0 same, 2 unknown)."""
    from scipy import stats

    a, b = np.asarray(log_a, dtype=float), np.asarray(log_b, dtype=float)
    theta = np.median(b, axis=-1) - np.median(a, axis=-1)
    var = median_se(a) ** 2 + median_se(b) ** 2
    var = var + run_noise**2 * (1 / np.asarray(runs_a, float) + 1 / np.asarray(runs_b, float))
    se = np.sqrt(var)
    z = float(stats.norm.isf(alpha))
    low, high = theta - z * se, theta + z * se
    t, s = math.log1p(threshold), math.log1p(same_within)
    verdict = np.full(theta.shape, 2, dtype=np.int8)
    verdict[(high < s) & (low > -s)] = 0
    verdict[(low > 0) & (theta >= t)] = 1
    verdict[(high < 0) & (theta <= -t)] = -1
    return {"theta": theta, "se": se, "low": low, "high": high, "verdict": verdict}


# --------------------------------------------------------------------------------------------------
# Run files


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
        name = b.get("name", "?") if isinstance(b, dict) else "?"
        if not isinstance(stats, dict) or not all(
            isinstance(stats.get(k), int | float) and stats[k] > 0 for k in ("median", "q1", "q3")
        ):
            raise CompareError(f"{p}: benchmark #{i} ({name}) has no positive median/q1/q3 stats")
        blocks = (b.get("extra_info") or {}).get(BLOCKS_KEY)
        if blocks is not None and not _valid_blocks(blocks):
            raise CompareError(
                f"{p}: benchmark #{i} ({name}) has a malformed extra_info[{BLOCKS_KEY!r}] "
                "(expected lists of positive block medians in ms)"
            )
    data["_path"] = str(p)
    return data


def _valid_blocks(blocks: Any) -> bool:
    if not isinstance(blocks, dict):
        return False
    for metric in METRICS:
        v = blocks.get(metric)
        if v is None:
            continue
        if not isinstance(v, list) or not all(
            isinstance(x, int | float) and math.isfinite(x) and x > 0 for x in v
        ):
            return False
    return True


@dataclass
class Side:
    """One test on one side of the comparison: its block medians per metric, pooled over runs."""

    blocks: dict[str, list[np.ndarray]] = field(default_factory=dict)  # metric -> one per run
    summaries: list[dict[str, float]] = field(default_factory=list)  # pytest-benchmark stats (s)

    def add(self, bench: dict[str, Any]) -> None:
        st = bench["stats"]
        self.summaries.append({k: float(st[k]) for k in ("median", "q1", "q3")})
        stored = (bench.get("extra_info") or {}).get(BLOCKS_KEY) or {}
        host = stored.get("host_latency_ms")
        if host is None and isinstance(st.get("data"), list) and len(st["data"]) >= RAW_BLOCK:
            raw = np.asarray(st["data"], float) * 1e3  # pytest-benchmark stores seconds
            n = raw.size // RAW_BLOCK * RAW_BLOCK
            host = np.median(raw[:n].reshape(-1, RAW_BLOCK), axis=1).tolist()
        for metric, values in (
            ("gpu_compute_ms", stored.get("gpu_compute_ms")),
            ("host_latency_ms", host),
        ):
            if values is not None and len(values) >= MIN_BLOCKS:
                self.blocks.setdefault(metric, []).append(np.asarray(values, float))

    def runs(self, metric: str) -> int:
        return len(self.blocks.get(metric, []))


@dataclass(frozen=True)
class Row:
    test: str
    metric: str  # gpu_compute_ms | host_latency_ms
    basis: str  # blocks | summary
    median_a_ms: float
    median_b_ms: float
    ratio: float
    low: float
    high: float
    verdict: str  # regressed | improved | same | unknown
    runs_a: int = 1
    runs_b: int = 1
    blocks_a: int = 0
    blocks_b: int = 0

    @property
    def weak(self) -> bool:
        return self.basis == "summary"


_VERDICT = {1: "regressed", -1: "improved", 0: "same", 2: "unknown"}


def _sides(runs: list[dict[str, Any]]) -> dict[str, Side]:
    out: dict[str, Side] = {}
    for run in runs:
        for bench in run["benchmarks"]:
            out.setdefault(bench["name"], Side()).add(bench)
    return out


def compare_runs(
    a: dict[str, Any] | list[dict[str, Any]],
    b: dict[str, Any] | list[dict[str, Any]],
    threshold: float = DEFAULTS.threshold,
    *,
    alpha: float = DEFAULTS.alpha,
    same_within: float = DEFAULTS.same_within,
    run_noise: float = DEFAULTS.run_noise,
    metric: str = "auto",
) -> list[Row]:
    """One Row per test id present on both sides; ``a``/``b``: a run or several runs (pooled).

    ``metric``: ``auto`` (GPU compute time where both sides have it, else host latency),
    ``gpu_compute_ms`` or ``host_latency_ms``. ``alpha`` is per test: comparing N tests, a
    family-wise rate of alpha needs ``alpha / N`` (Bonferroni), at some cost in power.
    """
    for name, v, lo, hi in (
        ("--threshold", threshold, 0, 10),
        ("--same-within", same_within, 0, 10),
        ("--run-noise", run_noise, 0, 1),
    ):
        if not (math.isfinite(v) and lo <= v < hi):
            raise CompareError(f"{name} must be a fraction in [{lo}, {hi}), got {v}")
    if not 0 < alpha < 0.5:
        raise CompareError(f"--alpha must be in (0, 0.5), got {alpha}")
    if metric not in ("auto", *METRICS):
        raise CompareError(f"--metric must be auto or one of {', '.join(METRICS)}, got {metric!r}")
    sa = _sides(a if isinstance(a, list) else [a])
    sb = _sides(b if isinstance(b, list) else [b])
    names = sorted(set(sa) & set(sb))
    plans = []
    for name in names:
        A, B = sa[name], sb[name]
        wanted = [metric] if metric != "auto" else list(METRICS)
        chosen = next((m for m in wanted if A.runs(m) and B.runs(m)), None)
        plans.append((name, chosen or ("host_latency_ms" if metric == "auto" else metric)))
    rows: list[Row] = []
    for name, m in plans:
        A, B = sa[name], sb[name]
        if A.runs(m) and B.runs(m):
            xa, xb = np.concatenate(A.blocks[m]), np.concatenate(B.blocks[m])
            res = decide(
                np.log(xa),
                np.log(xb),
                runs_a=A.runs(m),
                runs_b=B.runs(m),
                alpha=alpha,
                threshold=threshold,
                same_within=same_within,
                run_noise=run_noise,
            )
            rows.append(
                Row(
                    name,
                    m,
                    "blocks",
                    float(np.median(xa)),
                    float(np.median(xb)),
                    math.exp(float(res["theta"])),
                    math.exp(float(res["low"])),
                    math.exp(float(res["high"])),
                    _VERDICT[int(res["verdict"])],
                    A.runs(m),
                    B.runs(m),
                    xa.size,
                    xb.size,
                )
            )
            continue
        # summary only (weak): pytest-benchmark's own stats are host latency of one inference
        qa, qb = _pooled_summary(A.summaries), _pooled_summary(B.summaries)
        ratio = qb["median"] / qa["median"]
        lo, hi = qb["q1"] / qa["q3"], qb["q3"] / qa["q1"]
        verdict = "unknown"
        if lo > 1 + threshold:
            verdict = "regressed"
        elif hi < 1 / (1 + threshold):
            verdict = "improved"
        rows.append(
            Row(
                name,
                "host_latency_ms",
                "summary",
                qa["median"] * 1e3,
                qb["median"] * 1e3,
                ratio,
                lo,
                hi,
                verdict,
                len(A.summaries),
                len(B.summaries),
            )
        )
    return rows


def _pooled_summary(summaries: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.median([s[k] for s in summaries])) for k in ("median", "q1", "q3")}


# --------------------------------------------------------------------------------------------------
# Presentation


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


_MARK = {"regressed": "REGRESSED", "improved": "improved", "same": "same", "unknown": "unknown"}
_METRIC = {"gpu_compute_ms": "gpu", "host_latency_ms": "host"}


def _basis(r: Row) -> str:
    if r.weak:
        return "summary (weak)"
    text = f"{r.blocks_a}+{r.blocks_b} blocks"
    return text + (f", {r.runs_a}+{r.runs_b} runs" if r.runs_a > 1 or r.runs_b > 1 else "")


def format_table(rows: list[Row], only_a: list[str], only_b: list[str]) -> str:
    """One line per test: metric, medians, ratio B/A, its bounds (one-sided 1 - alpha each; the
    quartile interval for summary rows), what the comparison rests on, and the verdict."""
    w = max([len(r.test) for r in rows] + [4])
    wb = max([len(_basis(r)) for r in rows] + [5])
    lines = [
        f"{'test':<{w}}  {'metric':<6}  {'A ms':>9}  {'B ms':>9}  {'B/A':>6}  {'bounds':>15}  "
        f"{'basis':<{wb}}  verdict",
        "-" * (w + wb + 73),
    ]
    for r in rows:
        mark = _MARK[r.verdict] + (" (weak)" if r.weak and r.verdict != "unknown" else "")
        lines.append(
            f"{r.test:<{w}}  {_METRIC[r.metric]:<6}  {r.median_a_ms:9.4f}  "
            f"{r.median_b_ms:9.4f}  {r.ratio:6.3f}  [{r.low:5.3f}, {r.high:5.3f}]  "
            f"{_basis(r):<{wb}}  {mark}"
        )
    for name in only_a:
        lines.append(f"{name:<{w}}  only in A")
    for name in only_b:
        lines.append(f"{name:<{w}}  only in B")
    return "\n".join(lines)


def write_plot(rows: list[Row], path: Path, threshold: float) -> bool:
    """Per-test ratio bars with their bounds; False when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(rows) + 2), 4.5))
    x = np.arange(len(rows))
    ratios = np.array([r.ratio for r in rows])
    err = np.array([[r.ratio - r.low for r in rows], [r.high - r.ratio for r in rows]])
    colors = [
        "#c0392b"
        if r.verdict == "regressed"
        else "#27ae60"
        if r.verdict == "improved"
        else "#34495e"
        if r.verdict == "same"
        else "#95a5a6"
        for r in rows
    ]
    ax.bar(x, ratios - 1, bottom=1, color=colors, yerr=np.clip(err, 0, None), capsize=2)
    ax.axhline(1, color="k", lw=0.8)
    ax.axhline(1 + threshold, color="#c0392b", ls="--", lw=0.8, label=f"+{threshold:.0%} threshold")
    ax.set_xticks(
        x, [r.test.replace("test_benchmark", "") for r in rows], rotation=70, ha="right", fontsize=7
    )
    ax.set_ylabel("median B / A (lower is faster)")
    ax.set_title("Per-test latency ratio, run B vs run A (grey: unknown, hatched: summary only)")
    for bar, r in zip(ax.patches, rows, strict=False):
        if r.weak:
            bar.set_hatch("//")
    ax.legend(fontsize=8)
    ax.set_yscale("log")
    save_png(fig, path)
    plt.close(fig)
    return True
