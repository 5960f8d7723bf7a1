"""The latency-ordering gate (FP32 > FP16 > INT8 per the device profile) and proof that the untaken
branch is skipped, with interleaved rounds and a sequential, three-outcome paired test
(``fixtures/measure/stats.py``).

Each test times its engines in interleaved rounds (per round and engine, one block of 20 inferences
on a GPU, 3 on the host, reduced to its Hodges-Lehmann estimate) and decides each pair (slow, fast) at 40 rounds;
a pair that is neither established nor inverted gets 40 more, up to 120 (3x the default budget),
with the error rate split over the looks. Only the engines of undecided pairs are timed again.
Holm's correction runs over every ordering pair of the run (the family size is counted from the
collected cases; :class:`fixtures.measure.stats.GateFamily`), and at the end of the session Holm is applied
to all of them at once. HOLDS passes; INVERTED fails; INCONCLUSIVE passes with a warning that gives
the ratio and its one-sided bounds. Each exit path is gated separately.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from fixtures.backends.base import BackendUnavailable, Engine
from fixtures.cases import Case
from fixtures.measure import timing
from fixtures.measure.stats import (
    DEFAULT_PLAN,
    GateFamily,
    PairResult,
    SequentialGate,
    Verdict,
    block_hodges_lehmann,
    run_sequential,
)
from fixtures.measure.timing import Launchers
from fixtures.workspace import Prepared, Workspace

pytestmark = [
    pytest.mark.serial,
    pytest.mark.exitgate_family(
        "latency", order=60, facts={"ordering": "Latency ordering verdicts"}
    ),
]

K = 20  # inferences per block (one Hodges-Lehmann estimate each); looks at 40, 80, 120 rounds
#: on the host (a CPU: onnxruntime, milliseconds per inference, little jitter next to a GPU's
#: microseconds) a block of 3 after one untimed run decides the same pairs at a fraction of the time
HOST_K = 3
ALPHA = 0.01  # family-wise error rate of the run's INVERTED verdicts (and of its HOLDS verdicts)
DELTA_INV = 0.02  # an inversion must exceed this to fail: the noise floor


class TimingInconclusive(UserWarning):
    """The measured ordering is neither established nor inverted."""


def _order(settings) -> list[str]:
    return [p for p in settings.profile.latency_ordering if p in settings.precisions]


@pytest.fixture(scope="session")
def ordering_family(request: pytest.FixtureRequest, workspace: Workspace):
    """The run's ordering pairs, for Holm across all of them (counted from the collected cases)."""
    cases = [
        item
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_latency_ordering"
    ]
    size = len(cases) * max(len(_order(workspace.settings)) - 1, 0)
    family = GateFamily(max(size, 1), alpha=ALPHA)
    yield family
    changed = family.finish()
    resolved = [f"[{name}] {r.describe()}" for name, r in changed if r.verdict == Verdict.HOLDS]
    if resolved:
        warnings.warn(
            TimingInconclusive(
                f"with Holm over all {family.size} ordering pairs of the run, now established: "
                + "; ".join(resolved)
            ),
            stacklevel=1,
        )
    inverted = [f"[{name}] {r.describe()}" for name, r in changed if r.verdict == Verdict.INVERTED]
    if inverted:
        pytest.fail(
            f"ordering INVERTED once Holm runs over all {family.size} ordering pairs of the run "
            "(each test alone could not yet tell): " + "; ".join(inverted),
            pytrace=False,
        )


def _measure(launchers):
    """``measure(active, rounds, look)`` for run_sequential: interleaved blocks of the active
    engines, CUDA events (device) or perf_counter_ns (host), each block reduced to its
    Hodges-Lehmann estimate (robust as a median, nearly as efficient as a mean)."""

    def measure(active: list[str], rounds: int, look: int) -> np.ndarray:
        fns = {label: launchers.fns[label] for label in active}
        device = launchers.stream is not None
        kw = {
            "rounds": rounds,
            "k": K if device else HOST_K,
            "rewarm": 5 if device else 1,  # untimed launches per block: a GPU's L2, or the CPU's
            "seed": look,
            "warmup_ms": (200.0 if look == 0 else 50.0) if device else 20.0,  # clocks ramp on a GPU
        }
        if launchers.stream is None:
            _, samples = timing.interleaved_samples_host(fns, **kw)
        else:
            _, samples = timing.interleaved_samples(fns, launchers.stream, **kw)
        return block_hodges_lehmann(samples)

    return measure


def _judge(case: Case, results: list[PairResult], family_size: int, record) -> None:
    __tracebackhide__ = True
    record("ordering", [r.describe() for r in results])
    inverted = [r for r in results if r.verdict == Verdict.INVERTED]
    if inverted:
        pytest.fail(
            f"[{case.id}] ordering INVERTED: "
            + "; ".join(r.describe() for r in inverted)
            + f". The faster-expected engine is slower by more than {DELTA_INV:.0%}, at the "
            f"stated one-sided confidence (Holm over the run's {family_size} ordering pairs). "
            "Check the precision audit (test_precision_audit.py), the engine's layers (reformat "
            "or Q/DQ kernels around the conditional) and the clocks (--require-locked-clocks).",
            pytrace=False,
        )
    for r in results:
        if r.verdict == Verdict.INCONCLUSIVE:
            warnings.warn(TimingInconclusive(f"[{case.id}] {r.describe()}"), stacklevel=1)


@pytest.mark.exitgate_cases(paths=("exit_always", "exit_never"))
def test_latency_ordering(
    case: Case, prepared: Prepared, workspace: Workspace, ordering_family: GateFamily, record
) -> None:
    s = workspace.settings
    order = _order(s)
    if len(order) < 2:
        pytest.skip(
            f"[{case.id}] profile {s.profile.name} gates no latency ordering among "
            f"{','.join(s.precisions)} (its expectation: {list(s.profile.latency_ordering) or 'none'}"
            f"; {s.profile.note or 'see the profile'}); run with --precision=fp32,fp16,int8 on a GPU"
        )
    engines: dict[str, Engine] = {}
    notes = []
    for p in order:
        try:  # a fixed-path engine where the backend has one (capturable), else the fused one
            engines[p] = workspace.path_engine(case.model, p, case.path) or workspace.engine(
                case.model, p
            )
        except BackendUnavailable as exc:
            notes.append(f"{p}: {exc}")
    if len(engines) < 2:
        pytest.skip(f"[{case.id}] fewer than two precisions can run: {'; '.join(notes)}")
    feeds = prepared.feed(prepared.threshold_for(case.path))
    labels = list(engines)
    pairs = list(itertools.pairwise(labels))
    gate = ordering_family.gate(len(pairs), DEFAULT_PLAN, delta_inv=DELTA_INV)

    with Launchers(all(e.supports_device for e in engines.values())) as launchers:
        for p, e in engines.items():
            launchers.add(p, e, feeds)
        results = run_sequential(_measure(launchers), labels, pairs, gate)
    ordering_family.add(case.id, pairs, gate)
    _judge(case, results, gate.family_size, record)


@pytest.mark.exitgate_cases(precision=True)
def test_untaken_branch_is_skipped(
    case: Case, prepared: Prepared, workspace: Workspace, record
) -> None:
    """On one model, exit_always must be faster than exit_never: an engine that runs both
    branches, or a capture that froze one, fails here. A claim of its own (not in the ordering
    family); undecided after 40 rounds, it gets up to 120."""
    precision = case.precision or "fp32"
    try:
        a = workspace.engine(case.model, precision)
        b = workspace.engine(case.model, precision, instance=1)
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")
    labels, pair = ["exit_never", "exit_always"], ("exit_never", "exit_always")

    with Launchers(a.supports_device and b.supports_device) as launchers:
        launchers.add("exit_never", a, prepared.feed(prepared.threshold_for("exit_never")))
        launchers.add("exit_always", b, prepared.feed(prepared.threshold_for("exit_always")))
        gate = SequentialGate(1, DEFAULT_PLAN, alpha=ALPHA, delta_inv=DELTA_INV)
        (result,) = run_sequential(_measure(launchers), labels, [pair], gate)
    record("latency_paths", result.describe())
    if result.verdict != Verdict.HOLDS:
        pytest.fail(
            f"[{case.id}] exit_always is not measurably faster than exit_never: "
            f"{result.describe()}. The untaken branch seems to run anyway (or a CUDA graph "
            "froze one branch).",
            pytrace=False,
        )
