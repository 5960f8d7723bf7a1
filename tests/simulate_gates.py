"""Known-truth simulations of exitgate's two timing decisions, and the README's table.

    python -m tests.simulate_gates                 # 1000 trials a cell (about two minutes)
    python -m tests.simulate_gates --trials 300    # quicker

1. The **in-run ordering gate** (``fixtures.measure.stats.SequentialGate``, as ``suites/test_latency.py``
   drives it): FP32, FP16 and INT8 engines interleaved in randomised order per round, one block
   estimate of k = 20 inferences per engine and round (Hodges-Lehmann, ``block_hodges_lehmann``;
   block medians for contrast), looks at 40 / 80 / 120 rounds.
2. The **cross-run comparison** (``reports.compare.decide``, as ``python -m reports compare`` runs
   it): two runs of one test, 80 blocks of k = 20 inferences each, as ``suites/test_benchmark.py``
   stores them.

Noise model (multiplicative, per inference unless said otherwise):

- lognormal with coefficient of variation ``cov``;
- spikes: 1 % of inferences take 1.5-4x as long;
- bursts: 2 % of blocks are hit by a burst that slows a contiguous 25-100 % of their inferences
  by 10-50 %;
- a level shift per round / block (sigma 3 %; in the ordering gate it is common to the engines of a
  round) and a jitter per block (sigma 1 %);
- drift: ordering gate: +5 % linearly across the session (engine order shuffled per round);
  comparison: each run slows down linearly by a random 0-5 % from its first block to its last
  (thermal state differs between runs, so their medians differ by up to 2.5 % in A/A).

The self-tests (tests/test_stats.py, tests/test_reports_compare.py) run smaller versions of the same
cells with bounds from a binomial interval, so they cannot flake on a seed.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fixtures.measure.stats import SequentialGate, SequentialPlan, block_hodges_lehmann
from reports.compare import DEFAULTS, decide

K = 20
GATE_PLAN = SequentialPlan()
COMPARE_BLOCKS = 100
Block = Callable[[np.ndarray], np.ndarray]
"""Reduces a block's inferences (the last axis) to one number."""
GATE_BLOCK: Block = block_hodges_lehmann  # as suites/test_latency.py


def block_median(x: np.ndarray) -> np.ndarray:
    """The block medians the comparison stores (and the gate used before the Hodges-Lehmann)."""
    return np.median(x, axis=-1)


@dataclass(frozen=True)
class Noise:
    cov: float = 0.05
    spike_prob: float = 0.01
    spike: tuple[float, float] = (0.5, 3.0)
    burst_prob: float = 0.02
    burst_len: tuple[float, float] = (0.25, 1.0)
    burst: tuple[float, float] = (0.1, 0.5)
    round_shift: float = 0.03
    jitter: float = 0.01
    drift: float = 0.05


def _blocks(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    k: int,
    noise: Noise,
    block: Block = block_median,
) -> np.ndarray:
    """Per-inference noise (lognormal, spikes, bursts) reduced per block of ``k`` by ``block``."""
    sigma = math.sqrt(math.log1p(noise.cov**2))
    x = rng.lognormal(-(sigma**2) / 2, sigma, size=(*shape, k))
    spikes = rng.random(x.shape) < noise.spike_prob
    x[spikes] *= 1 + rng.uniform(*noise.spike, size=int(spikes.sum()))
    hit = rng.random(shape) < noise.burst_prob
    n = int(hit.sum())
    if n:
        length = np.maximum(1, np.round(rng.uniform(*noise.burst_len, size=n) * k)).astype(int)
        start = (rng.random(n) * (k - length + 1)).astype(int)
        i = np.arange(k)
        inside = (i >= start[:, None]) & (i < (start + length)[:, None])
        x[hit] *= np.where(inside, 1 + rng.uniform(*noise.burst, size=n)[:, None], 1.0)
    return block(x)


def _chunks(n: int, per_trial: int, budget: int = 4_000_000):
    step = max(1, budget // max(per_trial, 1))
    for start in range(0, n, step):
        yield start, min(step, n - start)


# --------------------------------------------------------------------------------------------------
# The ordering gate


def gate_blocks(
    rng: np.random.Generator,
    trials: int,
    times_ms: Sequence[float],
    rounds: int,
    *,
    k: int = K,
    noise: Noise = Noise(),
    block: Block = GATE_BLOCK,
) -> np.ndarray:
    """Block estimates ``m[trial, round, engine]`` of interleaved sessions under the noise model."""
    times = np.asarray(times_ms, dtype=float)
    e = times.size
    out = np.empty((trials, rounds, e))
    for s, n in _chunks(trials, rounds * e * k):
        est = _blocks(rng, (n, rounds, e), k, noise, block)
        position = rng.random((n, rounds, e)).argsort(-1).argsort(-1)  # shuffled order per round
        t = (np.arange(rounds)[:, None] * e + position) / (rounds * e)
        level = (
            np.exp(rng.normal(0, noise.round_shift, size=(n, rounds, 1)))
            * np.exp(rng.normal(0, noise.jitter, size=(n, rounds, e)))
            * (1 + noise.drift * t)
        )
        out[s : s + n] = times * est * level
    return out


@dataclass(frozen=True)
class GateRates:
    holds: np.ndarray  # per pair, fraction of trials
    inverted: np.ndarray
    inconclusive: np.ndarray
    any_inverted: float  # fraction of trials with at least one INVERTED pair
    any_holds: float
    all_inconclusive: float  # fraction of trials with no pair decided
    mean_rounds: np.ndarray  # per pair
    trials: int


def gate_cell(
    rng: np.random.Generator,
    trials: int,
    times_ms: Sequence[float],
    *,
    cov: float,
    family_size: int | None = None,
    plan: SequentialPlan = GATE_PLAN,
    noise: Noise | None = None,
    block: Block = GATE_BLOCK,
) -> GateRates:
    """Run the gate on ``trials`` simulated sessions of engines with true times ``times_ms``
    (slowest expected first; pairs are consecutive engines), as one test of a run whose family
    holds ``family_size`` pairs with no earlier rejections (the run's worst case)."""
    noise = noise or Noise(cov=cov)
    med = gate_blocks(rng, trials, times_ms, plan.max_rounds, noise=noise, block=block)
    logm = np.log(med)
    d = np.stack([logm[..., j] - logm[..., j + 1] for j in range(med.shape[-1] - 1)], axis=1)
    gate = SequentialGate(d.shape[1], plan, batch=trials, family_size=family_size)
    while (n := gate.next_rounds) is not None:
        gate.update(d[..., :n])
    st = gate.state
    return GateRates(
        holds=(st == 1).mean(0),
        inverted=(st == -1).mean(0),
        inconclusive=(st == 0).mean(0),
        any_inverted=float((st == -1).any(1).mean()),
        any_holds=float((st == 1).any(1).mean()),
        all_inconclusive=float((st == 0).all(1).mean()),
        mean_rounds=gate.rounds.mean(0),
        trials=trials,
    )


# --------------------------------------------------------------------------------------------------
# The cross-run comparison


def run_blocks(
    rng: np.random.Generator,
    trials: int,
    time_ms: float,
    *,
    blocks: int = COMPARE_BLOCKS,
    k: int = K,
    noise: Noise = Noise(),
    offset: float = 0.0,
    with_samples: bool = False,
):
    """Block medians ``b[trial, block]`` of one run per trial; each run drifts by its own random
    0..drift and, with ``offset``, is shifted by a run-level N(0, offset) nobody models.
    ``with_samples``: also the pytest-benchmark-style summary (median, q1, q3) of all inferences."""
    out = np.empty((trials, blocks))
    summary = np.empty((trials, 3)) if with_samples else None
    for s, n in _chunks(trials, blocks * k):
        if with_samples:  # the same model, keeping the inferences for the summary statistics
            sigma = math.sqrt(math.log1p(noise.cov**2))
            x = rng.lognormal(-(sigma**2) / 2, sigma, size=(n, blocks, k))
            spikes = rng.random(x.shape) < noise.spike_prob
            x[spikes] *= 1 + rng.uniform(*noise.spike, size=int(spikes.sum()))
            b = np.median(x, -1)
        else:
            b = _blocks(rng, (n, blocks), k, noise)
        slope = rng.uniform(0, noise.drift, size=(n, 1))
        level = (
            np.exp(rng.normal(0, noise.round_shift, size=(n, blocks)))
            * np.exp(rng.normal(0, noise.jitter, size=(n, blocks)))
            * (1 + slope * np.arange(blocks) / blocks)
            * np.exp(rng.normal(0, offset, size=(n, 1)))
        )
        out[s : s + n] = time_ms * b * level
        if with_samples:
            y = (time_ms * x * level[..., None]).reshape(n, -1)
            summary[s : s + n] = np.percentile(y, [50, 25, 75], axis=1).T
    return (out, summary) if with_samples else out


@dataclass(frozen=True)
class CompareRates:
    regressed: float
    improved: float
    same: float
    unknown: float
    trials: int


def compare_cell(
    rng: np.random.Generator,
    trials: int,
    truth: float,
    *,
    cov: float,
    blocks: int = COMPARE_BLOCKS,
    runs: int = 1,
    offset: float = 0.0,
    alpha: float = DEFAULTS.alpha,
    run_noise: float = DEFAULTS.run_noise,
) -> CompareRates:
    """Compare run(s) of a test at 1.0 ms with run(s) at ``truth`` ms; ``runs`` per side pooled."""
    noise = Noise(cov=cov)
    a = np.concatenate(
        [
            run_blocks(rng, trials, 1.0, blocks=blocks, noise=noise, offset=offset)
            for _ in range(runs)
        ],
        axis=1,
    )
    b = np.concatenate(
        [
            run_blocks(rng, trials, truth, blocks=blocks, noise=noise, offset=offset)
            for _ in range(runs)
        ],
        axis=1,
    )
    v = decide(np.log(a), np.log(b), runs_a=runs, runs_b=runs, alpha=alpha, run_noise=run_noise)
    v = v["verdict"]
    return CompareRates(
        float((v == 1).mean()),
        float((v == -1).mean()),
        float((v == 0).mean()),
        float((v == 2).mean()),
        trials,
    )


def summary_cell(
    rng: np.random.Generator, trials: int, truth: float, *, cov: float, threshold: float
) -> float:
    """How often the summary-only fallback (quartile interval) flags a regression."""
    noise = Noise(cov=cov)
    _, sa = run_blocks(rng, trials, 1.0, noise=noise, with_samples=True)
    _, sb = run_blocks(rng, trials, truth, noise=noise, with_samples=True)
    return float((sb[:, 1] / sa[:, 2] > 1 + threshold).mean())


# --------------------------------------------------------------------------------------------------
# The README table


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def gate_table(trials: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    base = 0.30
    rows = [
        "| truth (FP16 vs INT8) | CoV | family | HOLDS | INVERTED | INCONCLUSIVE | rounds "
        "(mean) | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    # A/A/A rows: HOLDS / INVERTED = runs with any pair so decided (all wrong), INCONCLUSIVE = runs
    # with no pair decided; other rows: the FP16/INT8 pair's verdicts
    cells = [
        ("A/A/A (three identical engines)", [base] * 3, "false INVERTED <= 1 %"),
        (
            "INT8 4 % slower (a real inversion)",
            [1.3 * base, base, 1.04 * base],
            "INVERTED >= 95 % (CoV 5 %), >= 90 % (CoV 10 %); never HOLDS",
        ),
        ("INT8 4 % faster (the ordering holds)", [1.3 * base, base, base / 1.04], "never INVERTED"),
    ]

    def row(label: str, r: GateRates, cov: float, fam: int, target: str) -> str:
        if label.startswith("A/A"):
            h, i, inc = r.any_holds, r.any_inverted, r.all_inconclusive
        else:
            h, i, inc = r.holds[1], r.inverted[1], r.inconclusive[1]
        return (
            f"| {label} | {cov:.0%} | {fam} | {_pct(h)} | {_pct(i)} | {_pct(inc)} | "
            f"{r.mean_rounds[-1]:.0f} | {target} |"
        )

    for label, times, target in cells:
        for cov in (0.05, 0.10, 0.20):
            for fam in (2, 24):
                rows.append(
                    row(
                        label,
                        gate_cell(rng, trials, times, cov=cov, family_size=fam),
                        cov,
                        fam,
                        target,
                    )
                )
    inversion = [1.3 * base, base, 1.04 * base]
    # stress: five times the spikes and bursts of the model (5 % of inferences, 10 % of blocks)
    stress = Noise(cov=0.10, spike_prob=0.05, burst_prob=0.10)
    contrast = [
        (
            "A/A/A, 5 % spikes + 10 % bursts",
            [base] * 3,
            stress,
            GATE_BLOCK,
            "false INVERTED <= 1 %",
        ),
        ("INT8 4 % slower, 5 % spikes + 10 % bursts", inversion, stress, GATE_BLOCK, "(stress)"),
        ("the same, block medians", inversion, stress, block_median, "(stress, for contrast)"),
        (
            "INT8 4 % slower, block medians (the gate before)",
            inversion,
            Noise(cov=0.10),
            block_median,
            "for contrast",
        ),
    ]
    for label, times, noise, block, target in contrast:
        for fam in (2, 24):
            r = gate_cell(
                rng, trials, times, cov=noise.cov, family_size=fam, noise=noise, block=block
            )
            rows.append(row(label, r, noise.cov, fam, target))
    old = SequentialPlan((30,), (1.0,))
    for cov in (0.05, 0.10):
        r = gate_cell(rng, trials, inversion, cov=cov, family_size=2, plan=old, block=block_median)
        rows.append(
            row(
                "INT8 4 % slower, first gate (30 rounds, one look, block medians)",
                r,
                cov,
                2,
                "for contrast",
            )
        )
    return rows


def compare_table(trials: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed + 1)
    rows = [
        "| truth (B vs A) | CoV | runs per side | regressed | improved | same | unknown | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cells = [
        ("A/A, drift", 1.0, 0.05, 1, {}, "false regressed <= 1 %"),
        ("A/A, drift", 1.0, 0.10, 1, {}, "false regressed <= 1 %"),
        ("10 % regression", 1.10, 0.10, 1, {}, "regressed >= 95 %"),
        ("5 % regression", 1.05, 0.05, 1, {}, "regressed >= 90 %"),
        ("5 % regression", 1.05, 0.10, 1, {}, "(information)"),
        ("2 % regression", 1.02, 0.05, 1, {}, "(information)"),
        ("10 % improvement", 1 / 1.10, 0.10, 1, {}, "(information)"),
        ("A/A, drift, escalated", 1.0, 0.05, 3, {}, "(information: unknown resolves to same)"),
        (
            "5 % regression, --alpha 0.01/36",
            1.05,
            0.05,
            1,
            {"alpha": DEFAULTS.alpha / 36},
            "(information: the price of a per-night error rate)",
        ),
        (
            "A/A, drift + unmodelled 1 % run offset",
            1.0,
            0.05,
            1,
            {"offset": 0.01},
            "(stress: calibrate --run-noise)",
        ),
        (
            "the same, --run-noise 0.0125",
            1.0,
            0.05,
            1,
            {"offset": 0.01, "run_noise": 0.0125},
            "(calibrated)",
        ),
    ]
    for label, truth, cov, runs, kw, target in cells:
        r = compare_cell(rng, trials, truth, cov=cov, runs=runs, **kw)
        rows.append(
            f"| {label} | {cov:.0%} | {runs} | {_pct(r.regressed)} | {_pct(r.improved)} | "
            f"{_pct(r.same)} | {_pct(r.unknown)} | {target} |"
        )
    for truth, cov, label in (
        (1.0, 0.05, "A/A, drift"),
        (1.10, 0.10, "10 % regression"),
        (1.05, 0.05, "5 % regression"),
    ):
        flagged = summary_cell(rng, trials, truth, cov=cov, threshold=DEFAULTS.threshold)
        rows.append(
            f"| {label}, summary-only files (weak) | {cov:.0%} | 1 | {_pct(flagged)} | | | "
            f"{_pct(1 - flagged)} | for contrast |"
        )
    nights = trials
    a = np.log(run_blocks(rng, nights * 36, 1.0, noise=Noise(cov=0.05)))
    b = np.log(run_blocks(rng, nights * 36, 1.0, noise=Noise(cov=0.05)))
    for alpha, label in (
        (DEFAULTS.alpha, "default --alpha"),
        (DEFAULTS.alpha / 36, "--alpha 0.01/36"),
    ):
        v = decide(a, b, alpha=alpha)["verdict"].reshape(nights, 36) == 1
        rows.append(
            f"| A/A nights of 36 tests ({label}, {nights} nights) | 5 % | 1 | "
            f"{_pct(float(v.any(1).mean()))} of nights | | | | per test "
            f"{_pct(float(v.mean()))} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.simulate_gates", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--trials", type=int, default=1000, help="simulated runs per cell")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(
        f"### Ordering gate ({args.trials} simulated runs a cell; looks at "
        f"{'/'.join(map(str, GATE_PLAN.looks))} rounds, k = {K}, block Hodges-Lehmann, alpha 1 %, "
        "minimum inversion 2 %)\n"
    )
    print("\n".join(gate_table(args.trials, args.seed)))
    print(
        f"\n### Cross-run comparison ({args.trials} simulated comparisons a cell; "
        f"{COMPARE_BLOCKS} blocks of k = {K} per run, alpha {DEFAULTS.alpha:.0%} per test, "
        f"threshold {DEFAULTS.threshold:.0%}, run noise {DEFAULTS.run_noise:.2%})\n"
    )
    print("\n".join(compare_table(args.trials, args.seed)))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
