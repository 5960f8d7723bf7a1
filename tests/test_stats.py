"""Self-tests of fixtures/measure/stats.py: the sequential ordering gate on synthetic timings with known
truth, its error control, its bounds, Holm across a run, and the trtexec-style summaries.

The noise model is the one of ``tests/simulate_gates.py`` (lognormal, spikes, bursts, round-level
shifts, drift; engine order shuffled per round; blocks of 20 inferences reduced to their
Hodges-Lehmann estimate, as the suite does), whose 1000-trial table is in the README. The cells
here run 300 simulated sessions each, seeded; every bound is a binomial quantile around the target
(``binom.ppf(0.001, ...)``), so a rate that meets its target fails a bound with probability below
0.1 % on any seed, while a rate that slipped by a few points fails it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from fixtures.measure.stats import (
    DEFAULT_PLAN,
    MIN_ROUNDS,
    TRTEXEC_COV_WARN,
    TRTEXEC_COV_WARN_OLD,
    GateFamily,
    PairResult,
    SequentialGate,
    SequentialPlan,
    Verdict,
    _signed_rank_sf,
    block_hodges_lehmann,
    block_medians,
    enqueue_bound,
    holm,
    instability,
    ordering_gate,
    run_sequential,
    shift_interval,
    summarize,
    untaken_branch_skipped,
    walsh_averages,
)
from tests.conftest import REPO
from tests.simulate_gates import Noise, block_median, gate_blocks, gate_cell

LABELS = ["fp32", "fp16", "int8"]
PAIRS = [("fp32", "fp16"), ("fp16", "int8")]
ALPHA = 0.01
N = 300  # simulated sessions per cell
BASE = 0.30


def at_most(rate: float, n: int = N) -> int:
    """Largest count of n trials a true ``rate`` exceeds with probability < 0.1 %."""
    return int(sps.binom.ppf(0.999, n, rate))


def at_least(rate: float, n: int = N) -> int:
    """Smallest count of n trials a true ``rate`` falls below with probability < 0.1 %."""
    return int(sps.binom.ppf(0.001, n, rate))


# --------------------------------------------------------------------------------------------------
# The gate's error rates and power (Monte Carlo with known truth, seeded; README table at 1000)


@pytest.mark.parametrize(
    ("cov", "noise"),
    [
        (0.05, None),
        (0.10, None),
        (0.20, None),
        (0.10, Noise(cov=0.10, spike_prob=0.05, burst_prob=0.10)),
    ],  # 5x the spikes and bursts
    ids=["cov5", "cov10", "cov20", "cov10-spikes5-bursts10"],
)
def test_aa_never_inverts_and_rarely_holds(cov: float, noise: Noise | None) -> None:
    """A/A/A: three identical engines through all three looks; every HOLDS or INVERTED is wrong.
    Target (issue 14): false INVERTED <= 1 % of runs; Holm keeps false HOLDS <= alpha per run."""
    r = gate_cell(np.random.default_rng(1), N, [BASE] * 3, cov=cov, family_size=2, noise=noise)
    assert round(r.any_inverted * N) <= at_most(0.01), f"false INVERTED in {r.any_inverted:.1%}"
    assert round(r.any_holds * N) <= at_most(ALPHA), f"false HOLDS in {r.any_holds:.1%} of runs"
    assert (r.mean_rounds > 0.97 * DEFAULT_PLAN.max_rounds).all()  # undecided: the whole budget


@pytest.mark.parametrize(
    ("cov", "family", "target"),
    [(0.05, 2, 0.99), (0.05, 24, 0.99), (0.10, 2, 0.97), (0.10, 24, 0.93)],
)
def test_4_percent_inversion_is_detected(cov: float, family: int, target: float) -> None:
    """INT8 truly 4 % slower than FP16 (FP32 30 % slower still), as one test of a run of
    ``family`` gated pairs (24: a whole night, no earlier rejections), with the adaptive budget at
    most 3x the default and never the wrong direction. Issue 14 asks >= 95 % at CoV 5 % and
    >= 90 % at CoV 10 %; the bounds hold the rates the README's table claims (100 %, 99 %, 96 %),
    less a margin."""
    assert DEFAULT_PLAN.max_rounds <= 3 * DEFAULT_PLAN.default_rounds
    r = gate_cell(
        np.random.default_rng(2), N, [1.3 * BASE, BASE, 1.04 * BASE], cov=cov, family_size=family
    )
    detected = round(r.inverted[1] * N)
    assert detected >= at_least(target), f"INVERTED in {r.inverted[1]:.1%} (target {target:.0%})"
    assert r.holds[1] == 0, f"wrong direction: HOLDS in {r.holds[1]:.1%}"
    assert r.holds[0] == 1 and r.mean_rounds[0] == DEFAULT_PLAN.default_rounds  # 30 % gap: 1 look


@pytest.mark.parametrize("cov", [0.05, 0.10])
def test_4_percent_gap_holds_in_the_default_budget(cov: float) -> None:
    r = gate_cell(
        np.random.default_rng(3), N, [1.3 * BASE, BASE, BASE / 1.04], cov=cov, family_size=24
    )
    assert round(r.holds[1] * N) >= at_least(0.95), f"HOLDS in {r.holds[1]:.1%}"
    assert r.inverted.sum() == 0, "wrong direction: a real 4 % gap came out INVERTED"
    assert r.mean_rounds[1] < 1.5 * DEFAULT_PLAN.default_rounds, r.mean_rounds


def test_block_hodges_lehmann_buys_power_that_block_medians_lack() -> None:
    """The same simulated sessions, blocks reduced by their median (the gate before) and by their
    Hodges-Lehmann estimate (the gate now): at CoV 10 % under Holm over a night's 24 pairs the
    medians detect a 4 % inversion in about 87 % of runs, the Hodges-Lehmann in about 95 %."""
    times = [1.3 * BASE, BASE, 1.04 * BASE]
    hl = gate_cell(np.random.default_rng(16), N, times, cov=0.10, family_size=24)
    med = gate_cell(
        np.random.default_rng(16), N, times, cov=0.10, family_size=24, block=block_median
    )
    assert hl.inverted[1] - med.inverted[1] >= 0.04, (hl.inverted, med.inverted)
    assert hl.holds[1] == med.holds[1] == 0


def test_more_rounds_buy_power_that_one_look_lacks() -> None:
    """The adaptive budget is what turns a 4 % inversion at CoV 10 % from mostly undecided (one
    look of 30 rounds: the previous gate) into mostly detected."""
    rng = np.random.default_rng(4)
    times = [1.3 * BASE, BASE, 1.04 * BASE]
    one = gate_cell(rng, N, times, cov=0.10, family_size=2, plan=SequentialPlan((30,), (1.0,)))
    seq = gate_cell(rng, N, times, cov=0.10, family_size=2)
    assert one.inverted[1] < 0.6 < 0.9 < seq.inverted[1], (one.inverted, seq.inverted)


def test_sequential_error_rate_at_the_null_boundary() -> None:
    """Error control across looks: heavy-tailed symmetric log-ratios centred exactly on the
    INVERTED null's boundary (-ln 1.02) are rejected in at most alpha of runs, over all looks."""
    rng = np.random.default_rng(5)
    n = 4000
    d = -np.log1p(0.02) + 0.05 * rng.standard_t(3, size=(n, 1, DEFAULT_PLAN.max_rounds))
    gate = SequentialGate(1, batch=n)
    while (k := gate.next_rounds) is not None:
        gate.update(d[..., :k])
    rejected = int((gate.state == -1).sum())
    assert rejected <= at_most(ALPHA, n), f"{rejected} of {n} null runs rejected"
    assert rejected >= at_least(ALPHA / 4, n), "far below alpha: the looks waste the error rate"


# --------------------------------------------------------------------------------------------------
# The exact test, the bounds that invert it, and the driver


@pytest.mark.parametrize("n", [6, 11, 25, 50])
def test_signed_rank_law_matches_scipy_exact(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(5):
        d = rng.normal(0.2, 1, n)
        t = int((walsh_averages(d) > 0).sum())
        want = sps.wilcoxon(d, alternative="greater", method="exact").pvalue
        assert _signed_rank_sf(n)[t] == pytest.approx(want, rel=1e-9)


def test_signed_rank_law_normal_tail_beyond_the_exact_range() -> None:
    sf = _signed_rank_sf(500)
    total = 500 * 501 // 2
    assert sf[0] == 1 and sf[total // 2] == pytest.approx(0.5, abs=0.01) and sf[-1] < 1e-50
    assert (np.diff(sf) <= 0).all()


def test_bounds_never_contradict_the_verdict() -> None:
    """The issue's 8.7 %: a printed interval disagreeing with the one-sided verdict. Here the
    bounds invert the tests that decided, at their levels, so HOLDS <=> ci_low > 1 + delta_hold and
    INVERTED <=> ci_high < 1 / (1 + delta_inv), for gaps around both decision boundaries."""
    rng = np.random.default_rng(6)
    seen = set()
    for gap in (-0.045, -0.03, -0.02, -0.01, 0.0, 0.005, 0.01, 0.03):
        for family in (2, 3, 24):
            for _ in range(8):
                d = gap + 0.04 * rng.standard_normal((1, 2, DEFAULT_PLAN.max_rounds))
                gate = SequentialGate(2, family_size=family, delta_hold=0.01)
                while (k := gate.next_rounds) is not None:
                    gate.update(d[..., :k])
                for r in gate.results([("a", "b"), ("c", "d")]):
                    seen.add(r.verdict)
                    assert (r.verdict == Verdict.HOLDS) == (r.ci_low > 1.01), r.describe()
                    assert (r.verdict == Verdict.INVERTED) == (r.ci_high < 1 / 1.02), r.describe()
                    assert r.ci_low <= r.ratio <= r.ci_high, r.describe()
    assert seen == set(Verdict)  # every verdict was exercised


def test_one_sided_bounds_cover_the_truth() -> None:
    """Each bound is a one-sided confidence bound: over simulated sessions the true ratio lies
    above ci_low (and below ci_high) at least at the stated confidence."""
    nights = gate_blocks(np.random.default_rng(7), 200, [0.4, 0.3, 0.29], 40)
    truth = {("fp32", "fp16"): 0.4 / 0.3, ("fp16", "int8"): 0.3 / 0.29}
    low_ok, high_ok = [], []
    for m in nights:
        for r in ordering_gate(m, LABELS, PAIRS, delta_hold=0.5):  # no HOLDS: bounds at 99.5 %
            low_ok.append(r.ci_low <= truth[(r.slow, r.fast)])
            high_ok.append(truth[(r.slow, r.fast)] <= r.ci_high)
    assert sum(low_ok) >= at_least(0.99, len(low_ok)) and sum(high_ok) >= at_least(0.99, 400)


def test_only_undecided_pairs_are_measured_again() -> None:
    """fp32/fp16 is decided at the first look; only fp16 and int8 are timed at the next ones, and
    the whole budget is 3x the default."""
    rng = np.random.default_rng(8)
    calls = []
    truth = {"fp32": 1.3, "fp16": 1.0, "int8": 1 / 0.995}

    def measure(active: list[str], rounds: int, look: int) -> np.ndarray:
        calls.append((tuple(active), rounds, look))
        level = np.exp(rng.normal(0, 0.05, size=(rounds, 1)))  # common to a round: cancels
        noise = np.exp(rng.normal(0, 0.02, size=(rounds, len(active))))
        return np.array([truth[a] for a in active]) * level * noise

    gate = SequentialGate(2, family_size=2)
    results = run_sequential(measure, LABELS, PAIRS, gate)
    assert calls == [
        (("fp32", "fp16", "int8"), 40, 0),
        (("fp16", "int8"), 40, 1),
        (("fp16", "int8"), 40, 2),
    ]
    assert [r.verdict for r in results] == [Verdict.HOLDS, Verdict.INCONCLUSIVE]
    assert [r.n_rounds for r in results] == [40, 120]


def test_an_inverted_pair_stops_early_and_alone() -> None:
    def measure(active: list[str], rounds: int, look: int) -> np.ndarray:
        rng = np.random.default_rng(look)
        t = {"fp32": 1.3, "fp16": 1.0, "int8": 1.15}
        return np.array([t[a] for a in active]) * np.exp(rng.normal(0, 0.02, (rounds, len(active))))

    results = run_sequential(measure, LABELS, PAIRS, SequentialGate(2))
    assert [r.verdict for r in results] == [Verdict.HOLDS, Verdict.INVERTED]
    assert [r.n_rounds for r in results] == [40, 40]
    text = results[1].describe()
    assert re.fullmatch(
        r"fp16/int8: ratio 0\.8\d\d <= 0\.8\d\d \(one-sided 99\.50 %\), 40 rounds "
        r"-> inverted",
        text,
    ), text


# --------------------------------------------------------------------------------------------------
# Holm across the run


def _inverted_d(rng: np.random.Generator, lo: float, hi: float, n: int = 40) -> np.ndarray:
    """Per-round log-ratios (one look of n rounds) whose exact INVERTED p-value is in (lo, hi]."""
    for _ in range(10_000):
        d = -0.02 - 0.006 + 0.012 * rng.standard_normal(n)
        gate = SequentialGate(1, SequentialPlan((n,), (1.0,)))
        gate.update(d[None, None])
        if lo < gate.p_values(1)[0, 0] <= hi:
            return d
    raise AssertionError("no sample found")


def _one_look(family: GateFamily, d: np.ndarray, name: str) -> PairResult:
    gate = family.gate(1, SequentialPlan((d.size,), (1.0,)))
    (r,) = run_sequential(
        lambda a, n, k: np.exp(np.column_stack([d, np.zeros_like(d)])),
        ["a", "b"],
        [("a", "b")],
        gate,
    )
    family.add(name, [("a", "b")], gate)
    return r


def test_family_size_sets_the_level() -> None:
    d = _inverted_d(np.random.default_rng(9), 0.002, 0.004)
    assert _one_look(GateFamily(1), d, "t").verdict == Verdict.INVERTED
    assert _one_look(GateFamily(2), d, "t").verdict == Verdict.INVERTED  # 0.004 <= 0.01/2
    r = _one_look(GateFamily(24), d, "t")
    assert r.verdict == Verdict.INCONCLUSIVE and r.family == 24, r
    assert r.conf_high == pytest.approx(1 - ALPHA / 24)


def test_holm_across_tests_of_a_run() -> None:
    """Two tests of a run, one pair each: the first alone cannot reject at alpha/2, the second
    rejects at alpha/2; Holm then tests the first at alpha/1, which finish() applies."""
    rng = np.random.default_rng(10)
    borderline = _inverted_d(rng, 0.006, 0.009)
    clear = _inverted_d(rng, 0.0, 1e-6)
    family = GateFamily(2)
    assert _one_look(family, borderline, "first").verdict == Verdict.INCONCLUSIVE
    assert _one_look(family, clear, "second").verdict == Verdict.INVERTED
    assert family.rejected() == (0, 1)
    (changed,) = family.finish()
    assert changed[0] == "first" and changed[1].verdict == Verdict.INVERTED
    assert changed[1].conf_high == pytest.approx(1 - ALPHA)
    assert family.finish() == []  # nothing left to change
    # in the opposite order the step-down happens inside the run, test by test
    family = GateFamily(2)
    _one_look(family, clear, "second")
    assert _one_look(family, borderline, "first").verdict == Verdict.INVERTED


def test_family_counts_more_pairs_than_planned() -> None:
    family = GateFamily(1)
    family.add("x", [("a", "b")], family.gate(1))
    assert family.gate(2).family_size == 3


# --------------------------------------------------------------------------------------------------
# ordering_gate (one look) and untaken_branch_skipped


def test_round_common_factors_cancel() -> None:
    """Anything common to a round (clocks, temperature) leaves the result unchanged."""
    rng = np.random.default_rng(11)
    med = gate_blocks(rng, 1, [0.4, 0.3, 0.29], 40)[0]
    scaled = med * rng.uniform(0.5, 2.0, size=(med.shape[0], 1))
    for a, b in zip(
        ordering_gate(med, LABELS, PAIRS), ordering_gate(scaled, LABELS, PAIRS), strict=True
    ):
        assert a.verdict == b.verdict == Verdict.HOLDS
        assert (a.p_hold, a.p_inv) == pytest.approx((b.p_hold, b.p_inv))
        assert (a.ratio, a.ci_low, a.ci_high) == pytest.approx((b.ratio, b.ci_low, b.ci_high))


def test_gate_result_fields_and_determinism() -> None:
    med = gate_blocks(np.random.default_rng(12), 1, [0.4, 0.3, 0.29], 40)[0]
    first = ordering_gate(med, LABELS, PAIRS)
    assert first == ordering_gate(med, LABELS, PAIRS)
    assert [(r.slow, r.fast, r.n_rounds, r.family) for r in first] == [
        ("fp32", "fp16", 40, 2),
        ("fp16", "int8", 40, 2),
    ]
    for r in first:
        assert r.ci_low <= r.ratio <= r.ci_high
        assert 0 <= r.p_hold <= 2.0**-30 < r.p_inv <= 1


def test_identical_columns_are_inconclusive_without_warnings() -> None:
    """All-zero differences: no evidence either way; bounds and estimate are exactly 1."""
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
    med = gate_blocks(np.random.default_rng(13), 1, [1.04 * 0.29, 0.29], 40)[0]
    assert ordering_gate(med, ["a", "b"], [("a", "b")])[0].verdict == Verdict.HOLDS
    (r,) = ordering_gate(med, ["a", "b"], [("a", "b")], delta_hold=0.10)
    assert r.verdict == Verdict.INCONCLUSIVE and r.ci_low <= 1.10


def test_untaken_branch_skipped() -> None:
    never, always = gate_blocks(np.random.default_rng(14), 1, [0.5, 0.2], 40)[0].T
    r = untaken_branch_skipped(never, always)
    assert (r.slow, r.fast, r.verdict) == ("exit_never", "exit_always", Verdict.HOLDS)
    assert r.ratio == pytest.approx(2.5, rel=0.05)
    assert untaken_branch_skipped(always, never).verdict == Verdict.INVERTED
    with pytest.raises(ValueError, match=r"equal length, got shapes \(40,\) .* \(39,\)"):
        untaken_branch_skipped(never, always[:-1])


def test_describe_and_verdict_values() -> None:
    r = PairResult(
        "fp32", "fp16", Verdict.HOLDS, 1.3214, 1.2904, 1.3502, 1e-9, 1.0, 40, 0.995, 0.995
    )
    assert r.describe() == "fp32/fp16: ratio 1.321 >= 1.290 (one-sided 99.50 %), 40 rounds -> holds"
    r = dataclasses.replace(r, verdict=Verdict.INCONCLUSIVE)
    assert "within [1.290, 1.350] (one-sided 99.50 % / 99.50 %)" in r.describe()
    # reports print verdicts and write them to JSON: the bare word both ways, and it reads back
    assert f"{Verdict.INCONCLUSIVE}" == str(Verdict.INCONCLUSIVE) == "inconclusive"
    assert json.loads(json.dumps({"v": Verdict.INVERTED}))["v"] == "inverted"
    assert Verdict(json.loads(json.dumps(Verdict.HOLDS))) is Verdict.HOLDS


# --------------------------------------------------------------------------------------------------
# Input validation


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


@pytest.mark.parametrize(
    ("looks", "spend", "message"),
    [
        ((40, 80), (1.0,), "one spend share per look"),
        ((40, 40), (0.5, 0.5), "must increase"),
        ((5,), (1.0,), "start at >= 6"),
        ((40, 80), (0.6, 0.6), "sum to <= 1"),
    ],
)
def test_plan_rejects_bad_looks(looks, spend, message) -> None:
    with pytest.raises(ValueError, match=message):
        SequentialPlan(looks, spend)


def test_gate_rejects_a_family_too_small_and_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="count every gated pair of the run"):
        SequentialGate(3, family_size=2)
    gate = SequentialGate(1)
    with pytest.raises(
        ValueError, match=r"needs log-ratios of shape \(1, 1, 40\), got \(1, 1, 30\)"
    ):
        gate.update(np.zeros((1, 1, 30)))


def test_min_rounds_is_reachable_at_a_looser_alpha() -> None:
    med = gate_blocks(np.random.default_rng(15), 1, [0.5, 0.2], MIN_ROUNDS)[0]
    (r,) = ordering_gate(med, ["a", "b"], [("a", "b")], alpha=0.05)
    assert r.verdict == Verdict.HOLDS and r.p_hold == pytest.approx(2.0**-MIN_ROUNDS)


def test_block_medians() -> None:
    x = np.arange(2 * 3 * 5, dtype=float).reshape(2, 3, 5)[..., ::-1]
    np.testing.assert_array_equal(block_medians(x), np.arange(2, 30, 5).reshape(2, 3))
    with pytest.raises(ValueError, match=r"rounds x engines x k .* got shape \(2, 3\)"):
        block_medians(x[..., 0])
    with pytest.raises(ValueError, match="k >= 1"):
        block_medians(x[..., :0])


def test_block_hodges_lehmann() -> None:
    """The median of each block's Walsh averages (i <= j), on any leading axes; a symmetric block
    gives its centre, a few wild inferences barely move it, and it scales with the times."""
    rng = np.random.default_rng(17)
    x = rng.lognormal(-1.2, 0.1, size=(4, 3, 20))
    for k in (20, 5):  # an even and an odd number of Walsh averages
        want = [
            [
                np.median([(b[i] + b[j]) / 2 for i in range(k) for j in range(i, k)])
                for b in r[:, :k]
            ]
            for r in x
        ]
        np.testing.assert_allclose(block_hodges_lehmann(x[..., :k]), want, rtol=1e-15)
    y = x[..., :5]
    np.testing.assert_array_equal(block_hodges_lehmann(y[None]), block_hodges_lehmann(y)[None])
    np.testing.assert_allclose(block_hodges_lehmann(2.5 * y), 2.5 * np.asarray(want), rtol=1e-12)
    assert block_hodges_lehmann(np.array([[1.0, 2.0, 4.0]])).tolist() == [2.25]  # 1 1.5 2 2.5 3 4
    assert block_hodges_lehmann(np.full((2, 1, 1), 0.3)).tolist() == [[0.3], [0.3]]  # k = 1
    block = np.linspace(0.29, 0.31, 20)
    assert block_hodges_lehmann(block[None]).tolist() == pytest.approx([0.30], rel=1e-12)
    spiked = block.copy()
    spiked[[3, 11]] *= 4.0  # two inferences 4x as long: the mean moves 30 %, the estimate < 1 %
    assert block_hodges_lehmann(spiked[None]) / block_hodges_lehmann(block[None]) < 1.01
    assert spiked.mean() / block.mean() > 1.25
    bad = block.copy()
    bad[5] = np.inf  # a broken event pair: the block is NaN, so the gate names round and engine
    assert np.isnan(block_hodges_lehmann(np.stack([block, bad]))).tolist() == [False, True]
    with pytest.raises(ValueError, match=r"k >= 1 inferences on the last axis, got shape \(2, 0\)"):
        block_hodges_lehmann(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        block_hodges_lehmann(np.float64(0.3))


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
    # 0.4 ms enqueue against 0.5 ms GPU time is exactly the default 0.8 ratio: it counts as bound
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
    code = "import sys, fixtures.measure.stats; sys.exit('scipy' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, check=False)
    assert proc.returncode == 0, (
        "importing fixtures.measure.stats pulled in scipy " + proc.stderr.decode()
    )


def test_shift_interval_covers_the_shift_at_its_confidence() -> None:
    """95 % intervals of a known shift under heavy-tailed symmetric noise cover it ~95 % of the
    time, and each bound is where the exact one-sided signed-rank test (scipy) changes its mind."""
    rng = np.random.default_rng(7)
    hits, trials = 0, 400
    for _ in range(trials):
        d = 3.0 + rng.standard_t(3, size=40)
        est, lo, hi = shift_interval(d)
        assert lo <= est <= hi
        hits += lo <= 3.0 <= hi
    assert 0.92 <= hits / trials <= 0.98, hits / trials
    d = 3.0 + rng.standard_t(3, size=30)
    est, lo, hi = shift_interval(d)
    assert est == float(np.median(walsh_averages(d)))
    eps = 1e-9
    assert sps.wilcoxon(d - (lo - eps), alternative="greater", method="exact").pvalue <= 0.025
    assert sps.wilcoxon(d - (lo + eps), alternative="greater", method="exact").pvalue > 0.025
    assert sps.wilcoxon(d - (hi + eps), alternative="less", method="exact").pvalue <= 0.025
    assert sps.wilcoxon(d - (hi - eps), alternative="less", method="exact").pvalue > 0.025


def test_shift_interval_edges_and_bad_input() -> None:
    est, lo, hi = shift_interval([1.0, 2.0, 3.0, 4.0, 5.0])  # 5 rounds cannot reach 97.5 % a side
    assert est == 3.0 and lo == -math.inf and hi == math.inf
    assert math.isfinite(shift_interval(np.arange(6.0))[1])  # 6 rounds: p = 1/64 <= 0.025
    with pytest.raises(ValueError, match="confidence"):
        shift_interval([1.0] * 10, confidence=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        shift_interval([1.0, float("nan")])
