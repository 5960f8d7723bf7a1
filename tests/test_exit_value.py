"""The machinery behind suites/test_exit_value.py that runs without a GPU: the realised speed-up
interval (known truth), host stream timing in input order, and the suite on onnxruntime recording
the stream and the trade-off for the report."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from fixtures.measure import timing
from fixtures.measure.stats import speedup_interval
from tests.conftest import REPO


def _lognormal(rng, mean_ms: float, cov: float, n: int) -> np.ndarray:
    s = np.sqrt(np.log1p(cov**2))
    return mean_ms * rng.lognormal(-s * s / 2, s, n)


def test_speedup_interval_covers_the_true_ratio_and_excludes_one_when_real() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        twin = _lognormal(rng, 1.0, 0.10, 256)
        cand = _lognormal(rng, 1.0 / 1.3, 0.10, 256)
        ratio, lo, hi = speedup_interval(twin, cand, seed=int(rng.integers(1 << 30)))
        assert lo <= ratio <= hi
        hits += lo <= 1.3 <= hi
        assert lo > 1.0  # a 30 % speed-up at 10 % CoV over 256 inputs is never in doubt
    assert hits >= 180  # a 95 % interval: 190 of 200 expected; binomial 0.1 % bound is about 181


def test_speedup_interval_of_equal_series_contains_one() -> None:
    rng = np.random.default_rng(1)
    inside = sum(
        lo <= 1.0 <= hi
        for lo, hi in (
            speedup_interval(_lognormal(rng, 1, 0.1, 256), _lognormal(rng, 1, 0.1, 256), seed=s)[1:]
            for s in range(100)
        )
    )
    assert inside >= 88  # 95 % nominal; binomial 0.1 % bound is about 88


def test_speedup_interval_rejects_empty_series() -> None:
    with pytest.raises(ValueError, match="empty"):
        speedup_interval(np.array([]), np.array([1.0]))


def test_host_stream_latency_is_per_input_in_order() -> None:
    def run(i: int) -> None:
        if i % 2:
            time.sleep(0.004)

    ms = timing.stream_latency_host(run, 8, warm=0)
    assert ms.shape == (8,)
    assert ms[1::2].min() > 3.0 > ms[0::2].max()


@pytest.mark.slow
def test_suite_records_the_stream_and_the_tradeoff_on_onnxruntime(run_suite, pytester) -> None:
    """On a CPU (onnxruntime, host timing) the exit-value suite runs fused and the host split,
    against the no-exit twin, and the report gets its table and plot."""
    result = run_suite(
        str(REPO / "suites" / "test_exit_value.py"),
        "--zoo=resnet8",
        "--layout=concat",
        "--samples=32",
        "-p",
        "no:xdist",
    )
    assert result.ret == 0, result.stdout.str()
    run = json.loads((pytester.path / "report" / "run.json").read_text())
    (test,) = [t for t in run["tests"].values() if "stream" in t.get("props", {})]
    stream, tradeoff = test["props"]["stream"], test["props"]["tradeoff"]
    assert stream["timing"] == "host" and stream["criterion"] == "max_softmax > threshold"
    assert set(stream["strategies"]) == {"fused", "split_host"}
    for row in stream["strategies"].values():
        assert 0.0 < row["exit_rate"] < 1.0 and row["mean_ms"] > 0
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]
    assert tradeoff["exit_rate"][0] == 1.0 and tradeoff["exit_rate"][-1] == 0.0  # -inf .. +inf
    assert len(tradeoff["latency_ms"]["fused"]) == len(tradeoff["thresholds"])
    summary = (pytester.path / "report" / "summary.md").read_text()
    assert "What the exit is worth" in summary and "no-exit twin" in summary
    assert (pytester.path / "report" / "tradeoff.png").stat().st_size > 10_000


def test_a_run_where_no_strategy_runs_skips_and_still_writes_its_report(
    run_suite, pytester
) -> None:
    """--backend=tensorrt on a CPU: no engine runs, so the exit value is skipped with the reason
    (not a vacuous pass), and the report is still written (no empty plot panel breaks it)."""
    result = run_suite(
        str(REPO / "suites" / "test_exit_value.py"),
        "--zoo=resnet8",
        "--layout=concat",
        "--samples=16",
        "--backend=tensorrt",
    )
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"skipped": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["*no execution strategy runs here*"])
    assert (pytester.path / "report" / "run.json").is_file()
