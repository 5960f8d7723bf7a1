"""Self-tests of fixtures/stats.py on synthetic timings with known truth (no GPU, no real timing).

The noise model is the one of research/measurement-anchors.md §3.6: per-replay lognormal noise with
CoV c, 1 % spikes of +50-300 %, a per-round level shift common to all engines (σ 3 %), a
per-(round, engine) jitter (σ 1 %) and a linear thermal drift of +5 % across the session, with the
engine order shuffled in every round.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from fixtures.stats import (
    MIN_ROUNDS,
    TRTEXEC_COV_WARN,
    TRTEXEC_COV_WARN_OLD,
    PairResult,
    Verdict,
    block_medians,
    enqueue_bound,
    holm,
    instability,
    ordering_gate,
    summarize,
    untaken_branch_skipped,
)
from tests.conftest import REPO

LABELS = ["fp32", "fp16", "int8"]
PAIRS = [("fp32", "fp16"), ("fp16", "int8")]
ALPHA = 0.01
N_BOOT_MC = 200  # verdicts depend only on Wilcoxon + Holm; the bootstrap only sets the CI


def simulate(
    rng: np.random.Generator,
    n_nights: int,
    times_ms: Sequence[float],
    *,
    rounds: int = 30,
    k: int = 100,
    cov: float = 0.05,
    spike_prob: float = 0.01,
    round_shift: float = 0.03,
    jitter: float = 0.01,
    drift: float = 0.05,
) -> np.ndarray:
    """Block medians ``m[night, round, engine]`` of interleaved sessions under the noise model."""
    times = np.asarray(times_ms, dtype=float)
    n_eng = times.size
    sigma = math.sqrt(math.log1p(cov**2))
    out = np.empty((n_nights, rounds, n_eng))
    chunk = max(1, 2_000_000 // (rounds * n_eng * k))
    for start in range(0, n_nights, chunk):
        n = min(chunk, n_nights - start)
        x = rng.lognormal(-(sigma**2) / 2, sigma, size=(n * rounds, n_eng, k))
        spikes = rng.random(x.shape) < spike_prob
        x[spikes] *= 1 + rng.uniform(0.5, 3.0, size=int(spikes.sum()))
        block = block_medians(x).reshape(n, rounds, n_eng)
        position = rng.random((n, rounds, n_eng)).argsort(-1).argsort(-1)  # shuffled order
        t = (np.arange(rounds)[:, None] * n_eng + position) / (rounds * n_eng)
        level = (
            np.exp(rng.normal(0, round_shift, size=(n, rounds, 1)))
            * np.exp(rng.normal(0, jitter, size=(n, rounds, n_eng)))
            * (1 + drift * t)
        )
        out[start : start + n] = times * block * level
    return out


def verdicts(nights: np.ndarray, labels: Sequence[str], pairs: Sequence[tuple[str, str]]):
    """Verdict per night and pair: an array of Verdict, shape (nights, pairs)."""
    return np.array(
        [
            [r.verdict for r in ordering_gate(m, labels, pairs, alpha=ALPHA, n_boot=N_BOOT_MC)]
            for m in nights
        ],
        dtype=object,  # a str Enum in a plain array would become truncated text
    )


# --------------------------------------------------------------------------------------------------
# The gate's error rates (Monte Carlo, seeded)


def test_aa_false_verdicts_are_rare() -> None:
    """A/A/A: three identical engines; every HOLDS or INVERTED is wrong."""
    nights = simulate(np.random.default_rng(1), 1000, [0.3, 0.3, 0.3])
    v = verdicts(nights, LABELS, PAIRS)
    wrong = v != Verdict.INCONCLUSIVE
    assert wrong.mean() <= 0.01, f"{wrong.sum()} wrong verdicts of {wrong.size}"
    # Holm keeps the family-wise rate per night <= alpha; allow binomial noise over 1000 nights
    limit = sps.binom.ppf(0.999, len(nights), ALPHA)
    assert wrong.any(axis=1).sum() <= limit, f"{wrong.any(axis=1).sum()} bad nights of 1000"
    assert (v == Verdict.INVERTED).sum() == 0  # delta_inv = 2 % keeps A/A far from failing


@pytest.mark.parametrize("cov", [0.05, 0.10])
def test_true_4_percent_gap_holds(cov: float) -> None:
    nights = simulate(np.random.default_rng(2), 200, [1.04 * 0.29, 0.29], cov=cov)
    results = [
        ordering_gate(m, ["fp16", "int8"], [("fp16", "int8")], n_boot=N_BOOT_MC)[0] for m in nights
    ]
    v = np.array([r.verdict for r in results], dtype=object)
    assert (v == Verdict.HOLDS).mean() >= 0.95, f"HOLDS on {(v == Verdict.HOLDS).mean():.1%}"
    assert (v == Verdict.INVERTED).sum() == 0
    assert np.median([r.ratio for r in results]) == pytest.approx(1.04, abs=0.005)


def test_clear_inversion_is_inverted() -> None:
    """The "fast" engine is really 8 % slower."""
    nights = simulate(np.random.default_rng(3), 100, [0.29, 1.08 * 0.29], cov=0.10)
    v = verdicts(nights, ["fp16", "int8"], [("fp16", "int8")])
    assert (v == Verdict.INVERTED).all(), f"INVERTED on {(v == Verdict.INVERTED).mean():.0%}"


def test_small_gap_with_few_rounds_is_inconclusive() -> None:
    """A 1 % gap in 8 rounds is below what the gate can resolve; it must not guess."""
    nights = simulate(np.random.default_rng(4), 200, [1.01 * 0.29, 0.29], rounds=8, cov=0.10)
    v = verdicts(nights, ["fp16", "int8"], [("fp16", "int8")])
    assert (v == Verdict.INCONCLUSIVE).mean() >= 0.9, f"{(v == Verdict.INCONCLUSIVE).mean():.0%}"
    assert (v == Verdict.INVERTED).sum() == 0


def test_bootstrap_ci_brackets_the_true_ratio() -> None:
    nights = simulate(np.random.default_rng(5), 40, [0.4, 0.3, 0.29])
    truth = {("fp32", "fp16"): 0.4 / 0.3, ("fp16", "int8"): 0.3 / 0.29}
    covered = [
        r.ci_low <= truth[(r.slow, r.fast)] <= r.ci_high
        for m in nights
        for r in ordering_gate(m, LABELS, PAIRS, n_boot=2000)
    ]
    assert np.mean(covered) >= 0.9, f"nominal 99 % CI covered the truth {np.mean(covered):.0%}"


def test_round_common_factors_cancel() -> None:
    """Anything common to a round (clocks, temperature) leaves the result unchanged."""
    rng = np.random.default_rng(6)
    med = simulate(rng, 1, [0.4, 0.3, 0.29])[0]
    scaled = med * rng.uniform(0.5, 2.0, size=(med.shape[0], 1))
    for a, b in zip(
        ordering_gate(med, LABELS, PAIRS), ordering_gate(scaled, LABELS, PAIRS), strict=True
    ):
        assert a.verdict == b.verdict == Verdict.HOLDS
        assert (a.p_hold, a.p_inv) == pytest.approx((b.p_hold, b.p_inv))
        assert (a.ratio, a.ci_low, a.ci_high) == pytest.approx((b.ratio, b.ci_low, b.ci_high))


def test_gate_result_fields_and_determinism() -> None:
    med = simulate(np.random.default_rng(7), 1, [0.4, 0.3, 0.29])[0]
    first = ordering_gate(med, LABELS, PAIRS)
    assert first == ordering_gate(med, LABELS, PAIRS)  # seeded bootstrap
    assert [(r.slow, r.fast, r.n_rounds) for r in first] == [
        ("fp32", "fp16", 30),
        ("fp16", "int8", 30),
    ]
    for r in first:
        assert r.ci_low <= r.ratio <= r.ci_high
        assert 0 <= r.p_hold <= 2.0**-30 < r.p_inv <= 1


def test_identical_columns_are_inconclusive_without_warnings() -> None:
    """All-zero differences: Wilcoxon is undefined; the gate treats it as p = 1."""
    med = np.tile([[0.3, 0.3]], (10, 1))
    (r,) = ordering_gate(med, ["a", "b"], [("a", "b")])
    assert (r.verdict, r.p_hold, r.ratio, r.ci_low, r.ci_high) == (
        Verdict.INCONCLUSIVE,
        1.0,
        1,
        1,
        1,
    )


def test_delta_hold_requires_a_minimum_effect() -> None:
    med = simulate(np.random.default_rng(8), 1, [1.04 * 0.29, 0.29])[0]
    assert ordering_gate(med, ["a", "b"], [("a", "b")])[0].verdict == Verdict.HOLDS
    (r,) = ordering_gate(med, ["a", "b"], [("a", "b")], delta_hold=0.10)
    assert r.verdict == Verdict.INCONCLUSIVE


def test_untaken_branch_skipped() -> None:
    never, always = simulate(np.random.default_rng(9), 1, [0.5, 0.2])[0].T
    r = untaken_branch_skipped(never, always)
    assert (r.slow, r.fast, r.verdict) == ("exit_never", "exit_always", Verdict.HOLDS)
    assert r.ratio == pytest.approx(2.5, rel=0.05)
    assert untaken_branch_skipped(always, never).verdict == Verdict.INVERTED
    with pytest.raises(ValueError, match=r"equal length, got shapes \(30,\) .* \(29,\)"):
        untaken_branch_skipped(never, always[:-1])


def test_describe_and_verdict_values() -> None:
    r = PairResult("fp32", "fp16", Verdict.HOLDS, 1.3214, 1.2904, 1.3502, 1e-9, 1.0, 30)
    assert r.describe() == "fp32/fp16: ratio 1.32 [1.29, 1.35] (30 rounds) -> holds"
    assert [v.value for v in Verdict] == ["holds", "inverted", "inconclusive"]
    assert Verdict("inverted") is Verdict.INVERTED and Verdict.HOLDS == "holds"
    assert f"{Verdict.INCONCLUSIVE}" == str(Verdict.INCONCLUSIVE) == "inconclusive"


# --------------------------------------------------------------------------------------------------
# ordering_gate / block_medians input validation


GOOD = np.full((10, 3), 0.3)


@pytest.mark.parametrize(
    ("med", "labels", "pairs", "kwargs", "message"),
    [
        (GOOD, LABELS[:2], PAIRS, {}, r"med has 3 engine column\(s\) but 2 label\(s\)"),
        (GOOD[:, 0], LABELS, PAIRS, {}, r"rounds x engines \(2-D\), got shape \(10,\)"),
        (GOOD, ["a", "b", "a"], [("a", "b")], {}, "duplicate labels"),
        (GOOD, LABELS, [("fp32", "bf16")], {}, "unknown label 'bf16' .* known: fp32, fp16, int8"),
        (GOOD, LABELS, [("fp16", "fp16")], {}, "compares an engine with itself"),
        (GOOD, LABELS, [], {}, "no pairs"),
        (GOOD[:5], LABELS, PAIRS, {}, r"5 round\(s\), need at least 6: .*2\^-R = 0.0312"),
        (GOOD[:7], LABELS, PAIRS, {}, r"7 rounds can never reach alpha=0.01 .* at least 8 rounds"),
        (GOOD, LABELS, PAIRS, {"alpha": 0.0}, r"alpha must be in \(0, 1\)"),
        (GOOD, LABELS, PAIRS, {"delta_inv": -0.1}, "delta_inv must be a fraction >= 0"),
        (GOOD, LABELS, PAIRS, {"n_boot": 0}, "n_boot must be >= 1"),
    ],
)
def test_ordering_gate_rejects_bad_input(med, labels, pairs, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ordering_gate(med, labels, pairs, **kwargs)


@pytest.mark.parametrize("bad", [0.0, -0.3, np.nan, np.inf])
def test_ordering_gate_rejects_bad_times(bad: float) -> None:
    med = GOOD.copy()
    med[4, 1] = bad
    with pytest.raises(ValueError, match=r"non-positive or non-finite .* round 4, engine 'fp16'"):
        ordering_gate(med, LABELS, PAIRS)


def test_min_rounds_is_reachable_at_a_looser_alpha() -> None:
    med = simulate(np.random.default_rng(10), 1, [0.5, 0.2], rounds=MIN_ROUNDS)[0]
    (r,) = ordering_gate(med, ["a", "b"], [("a", "b")], alpha=0.05)
    assert r.verdict == Verdict.HOLDS and r.p_hold == pytest.approx(2.0**-MIN_ROUNDS)


def test_block_medians() -> None:
    x = np.arange(2 * 3 * 5, dtype=float).reshape(2, 3, 5)[..., ::-1]
    np.testing.assert_array_equal(block_medians(x), np.arange(2, 30, 5).reshape(2, 3))
    with pytest.raises(ValueError, match=r"rounds x engines x k .* got shape \(2, 3\)"):
        block_medians(x[..., 0])
    with pytest.raises(ValueError, match="k >= 1"):
        block_medians(x[..., :0])


# --------------------------------------------------------------------------------------------------
# Holm


@pytest.mark.parametrize(
    ("p", "alpha", "reject"),
    [
        # sorted 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2 -> stop
        ([0.01, 0.04, 0.03, 0.005], 0.05, [True, False, False, True]),
        # the first step fails (0.011 > .03/3), so nothing is rejected although 0.025 <= .03
        ([0.011, 0.02, 0.025], 0.03, [False, False, False]),
        # equality rejects: 0.01 <= .03/3, 0.015 <= .03/2, 0.03 <= .03
        ([0.03, 0.01, 0.015], 0.03, [True, True, True]),
        ([], 0.05, []),
    ],
)
def test_holm_hand_computed(p: list[float], alpha: float, reject: list[bool]) -> None:
    got = holm(p, alpha)
    assert got.dtype == bool
    assert got.tolist() == reject


@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=8),
    st.sampled_from([0.001, 0.01, 0.05, 0.2]),
)
def test_holm_matches_adjusted_pvalues(p: list[float], alpha: float) -> None:
    """Reference: Holm-adjusted p_(j) = max_{i<=j} min(1, (m-i+1) p_(i)); reject iff <= alpha."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.maximum.accumulate([min(1.0, (m - i) * p[j]) for i, j in enumerate(order)])
    expected = np.zeros(m, bool)
    expected[order] = adjusted <= alpha
    np.testing.assert_array_equal(holm(p, alpha), expected)


@pytest.mark.parametrize(
    ("p", "alpha", "message"),
    [
        ([0.1, 1.2], 0.05, r"p-values must lie in \[0, 1\]"),
        ([0.1, math.nan], 0.05, r"p-values must lie in \[0, 1\]"),
        ([[0.1]], 0.05, "1-D sequence of p-values"),
        ([0.1], 1.0, r"alpha must be in \(0, 1\)"),
    ],
)
def test_holm_rejects_bad_input(p: list, alpha: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        holm(p, alpha)


# --------------------------------------------------------------------------------------------------
# summarize / instability / enqueue_bound


def trtexec_percentile(x: np.ndarray, p: int) -> float:
    """trtexec's order statistic, timings[max(n - 1 - exclude, 0)], in exact arithmetic."""
    n = x.size
    exclude = math.floor((1 - Fraction(p, 100)) * n)
    return float(np.sort(x)[max(n - 1 - exclude, 0)])


def test_summarize_known_data() -> None:
    x = np.random.default_rng(11).permutation(np.arange(1.0, 101.0))
    s = summarize(x.tolist())
    assert (s.n, s.min, s.max, s.median, s.mean) == (100, 1, 100, 50.5, 50.5)
    assert (s.p90, s.p95, s.p99) == (90, 95, 99)
    assert s.std == pytest.approx(math.sqrt((100**2 - 1) / 12))  # population SD of 1..100
    assert s.cv == pytest.approx(s.std / 50.5)


@pytest.mark.parametrize("n", [1, 2, 7, 10, 20, 99, 101, 1000])
def test_summarize_percentiles_match_numpy_and_trtexec(n: int) -> None:
    x = np.random.default_rng(n).lognormal(-1.2, 0.1, size=n)
    s = summarize(x)
    got = [s.p90, s.p95, s.p99]
    assert got == np.percentile(x, [90, 95, 99], method="inverted_cdf").tolist()
    assert got == [trtexec_percentile(x, p) for p in (90, 95, 99)]
    assert (s.median, s.mean, s.std) == pytest.approx((np.median(x), x.mean(), x.std()))
    assert s.min <= s.median <= s.p90 <= s.p95 <= s.p99 <= s.max


def test_summarize_constant_samples_have_zero_cv() -> None:
    s = summarize([0.3] * 5)
    assert (s.std, s.cv, s.p99) == (0.0, 0.0, 0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.median = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], r"summarize: no samples \(empty input\)"),
        ([0.3, math.nan, 0.4], r"1 non-finite value\(s\), first nan at index 1"),
        ([0.3, 0.4, math.inf, -math.inf], r"2 non-finite value\(s\), first inf at index 2"),
        ([0.3, -0.1], "negative time -0.1 ms at index 1"),
        ([[0.3, 0.4]], r"1-D sequence of times in ms, got shape \(1, 2\)"),
    ],
)
def test_summarize_rejects_bad_input(samples: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(samples)


def with_cv(cv: float):
    return dataclasses.replace(summarize([0.29, 0.3, 0.31]), cv=cv)


@pytest.mark.parametrize(
    ("cv", "warn_old", "warn_new"),
    [
        (0.009, False, False),
        (0.01, False, False),  # trtexec warns only strictly above the threshold
        (0.0101, True, False),
        (0.025, True, False),
        (0.0251, True, True),
    ],
)
def test_instability_thresholds(cv: float, warn_old: bool, warn_new: bool) -> None:
    assert (instability(with_cv(cv), TRTEXEC_COV_WARN_OLD) is not None) is warn_old
    assert (instability(with_cv(cv), TRTEXEC_COV_WARN) is not None) is warn_new


def test_instability_message_names_cov_threshold_and_remedy() -> None:
    msg = instability(with_cv(0.067), TRTEXEC_COV_WARN)
    assert msg is not None
    for part in (
        "6.70%",
        "2.50%",
        "sudo jetson_clocks",
        "nvidia-smi -lgc",
        "CUDA-graph",
        "warm up",
    ):
        assert part in msg, (part, msg)
    with pytest.raises(ValueError, match="threshold must be a positive CoV fraction"):
        instability(with_cv(0.1), 0.0)


def test_enqueue_bound_boundary() -> None:
    assert 0.8 * 0.5 == 0.4  # exact in binary, so the boundary below is exact
    msg = enqueue_bound(0.4, 0.5)
    assert msg is not None
    for part in ("0.4 ms", "0.8 x", "0.5 ms", "CUDA graph", "--useCudaGraph"):
        assert part in msg, (part, msg)
    assert enqueue_bound(float(np.nextafter(0.4, 0)), 0.5) is None
    assert enqueue_bound(0.1, 0.3) is None
    assert enqueue_bound(0.1, 0.3, ratio=0.3) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-0.1, 0.3), "enqueue_ms_median must be a finite time >= 0 ms, got -0.1"),
        ((0.1, math.nan), "gpu_ms_median must be a finite time >= 0 ms, got nan"),
        ((0.1, 0.3, 0.0), "ratio must be positive, got 0.0"),
    ],
)
def test_enqueue_bound_rejects_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        enqueue_bound(*args)


def test_module_imports_scipy_lazily() -> None:
    code = "import sys, fixtures.stats; sys.exit('scipy' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, check=False)
    assert proc.returncode == 0, "importing fixtures.stats pulled in scipy " + proc.stderr.decode()
