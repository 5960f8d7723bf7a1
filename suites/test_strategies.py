"""Execution strategies (issue #8): ``fused``, ``split_host``, ``split_graph`` (fixtures/strategies.py).

Every strategy must pass the exit-flag and correctness checks unchanged (against the fp32
onnxruntime reference), and a split strategy must give the fused engine's outputs. The latency test
times, per model x precision x path, the fused engine, both splits and the no-exit twin's CUDA graph
(``plain``), interleaved. For every model ``split_graph`` must beat the twin at exit_always (the
point of exiting early); the issue's quantitative targets — at least 2x faster at exit_always and
within 25 % at exit_never — are gated where they were set (``TARGETS``: resnet56). Smaller models
pay the split's fixed cost (two half-graphs and a condition kernel, ~0.04 ms on an H100) as a larger
fraction; their exit_never overhead is recorded, not gated.

On a CPU with --backend=onnxruntime, ``split_host`` runs as a host emulation (two sessions over the
split ONNX halves); ``split_graph`` and the latency test skip, naming what is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.backends.base import BackendUnavailable
from fixtures.cases import Case
from fixtures.checks import check_decisions, check_fixed_path, fail
from fixtures.compare import compare_runs
from fixtures.gpu import cuda
from fixtures.measure import timing
from fixtures.measure.stats import Verdict, ordering_gate
from fixtures.strategies import (
    device_split_backends,
    has_device_splits,
    strategy_engine,
    strategy_run,
    strategy_unavailable,
)
from fixtures.workspace import Prepared, RunResult, Workspace

pytestmark = pytest.mark.exitgate_family(
    "strategies",
    order=80,
    facts={
        "correctness": "Correctness against onnxruntime fp32 (branch-aware)",
        "strategy": "Strategies",
    },
)

ROUNDS, K = 30, 20
# issue #8's targets for split_graph vs the twin: (min speed-up at exit_always, max slowdown at
# exit_never); other models: faster at exit_always, exit_never recorded only
TARGETS: dict[str, tuple[float, float | None]] = {"resnet56": (2.0, 0.25)}
DEFAULT_TARGET: tuple[float, float | None] = (1.0, None)


def _runs(workspace: Workspace, case: Case, prepared: Prepared, cache: dict, t: float):
    """The strategy's run over the evaluation set (once per session), or a skip naming what is
    missing."""
    try:
        return strategy_run(
            workspace, case.model, case.precision or "fp32", case.strategy, t, cache
        )
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")


@pytest.mark.exitgate_cases(
    precision=True,
    paths=("exit_always", "exit_never", "exit_default"),
    strategies=("fused", "split_host", "split_graph"),
)
def test_strategy_exit_flag_and_correctness(
    case: Case, prepared: Prepared, workspace: Workspace, strategy_cache: dict, record
) -> None:
    __tracebackhide__ = True
    precision = case.precision or "fp32"
    t = prepared.threshold_for(case.path)
    got: RunResult = _runs(workspace, case, prepared, strategy_cache, t)
    profile = workspace.settings.profile
    if case.path in ("exit_always", "exit_never"):
        check_fixed_path(case, got, workspace)
    else:  # exit_default: the decision follows the confidence; outputs match the reference
        ref = workspace.reference(case.model, t)
        check_decisions(case, got, ref, t, prepared.analysis.describe())
        cmp = compare_runs(case.id, got, ref, profile, precision)
        record("correctness", cmp.line())
        if not cmp.passed:
            fail(case, f"{cmp.line()}\n  worst input {cmp.worst}")
    if case.strategy != "fused":  # a split must compute what the fused engine computes
        fused = workspace.candidate(case.model, precision, t)
        same_flag = bool(np.array_equal(fused.flag, got.flag))
        diff = float(np.abs(fused.probs - got.probs).max())
        record(
            "strategy_vs_fused",
            {
                "strategy": case.strategy,
                "flags_equal": same_flag,
                "max_abs_diff": diff,
                "identical": same_flag and diff == 0,
            },
        )
        atol = profile.tol(precision, "atol")
        if not same_flag or diff > atol:
            fail(
                case,
                f"{case.strategy} differs from the fused engine: flags equal {same_flag}, "
                f"max |diff| {diff:.3g} (atol {atol:g})",
            )


# ---- latency: fused vs split_host vs split_graph vs the no-exit twin ----


@pytest.mark.serial
@pytest.mark.gpu
@pytest.mark.exitgate_cases(
    models="zoo", precision=True, paths=("exit_always", "exit_never", "exit_default")
)
def test_strategy_latency(
    case: Case, prepared: Prepared, workspace: Workspace, strategy_cache: dict, record
) -> None:
    __tracebackhide__ = True

    backend = workspace.settings.backend
    reason = cuda.available()
    if reason:
        pytest.skip(f"[{case.id}] the strategy latency comparison needs a GPU: {reason}")
    if not has_device_splits(backend):
        pytest.skip(
            f"[{case.id}] split engines with device halves exist for "
            f"{device_split_backends()} "
            f"({strategy_unavailable(backend, 'split_graph') or backend})"
        )
    precision = case.precision or "fp32"
    feeds = prepared.feed(prepared.threshold_for(case.path))
    engines, notes = {}, {}
    try:
        engines["plain"] = workspace.engine(case.model, precision, variant="plain")
        engines["fused"] = workspace.engine(case.model, precision)
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")
    for s in ("split_host", "split_graph"):
        try:
            engines[s] = strategy_engine(workspace, case.model, precision, s, strategy_cache)
        except BackendUnavailable as exc:
            notes[s] = str(exc)
    with timing.Launchers() as launchers:
        for label, e in engines.items():
            launchers.add(label, e, feeds)
        labels, med = timing.interleaved_medians(
            launchers.fns, launchers.stream, rounds=ROUNDS, k=K
        )
    how = launchers.how
    ms = {lab: float(np.median(med[:, i])) for i, lab in enumerate(labels)}
    facts = {"medians_ms": ms, "launch": how, "unavailable": notes, "path": case.path}
    if "split_graph" in ms:
        facts["twin_over_split_graph"] = ms["plain"] / ms["split_graph"]
    if "split_host" in ms:
        facts["twin_over_split_host"] = ms["plain"] / ms["split_host"]
    facts["twin_over_fused"] = ms["plain"] / ms["fused"]
    gate = None
    speedup, slowdown = TARGETS.get(case.model.zoo or "", DEFAULT_TARGET)
    if "split_graph" in ms and case.path == "exit_always":  # split_graph >= speedup x the twin
        gate = ordering_gate(med, labels, [("plain", "split_graph")], delta_hold=speedup - 1)[0]
    elif "split_graph" in ms and case.path == "exit_never" and slowdown is not None:
        gate = ordering_gate(med, labels, [("plain", "split_graph")], delta_inv=slowdown)[0]
    if gate is not None:
        facts["gate"] = gate.describe()
    line = ", ".join(
        f"{lab} {ms[lab]:.3f} ms" + ("" if how[lab] == "graph" else " (no graph)") for lab in ms
    )
    if "twin_over_split_graph" in facts:
        line += f"; twin/split_graph {facts['twin_over_split_graph']:.2f}x"
    if gate is not None:
        line += f"; gate {gate.describe()}"
    if notes:
        line += "; unavailable: " + "; ".join(f"{k}: {v}" for k, v in notes.items())
    record("strategy", line)
    record("strategy_detail", facts)
    if gate is None:
        return
    if case.path == "exit_always" and gate.verdict != Verdict.HOLDS:
        fail(
            case,
            f"split_graph at exit_always is not at least {speedup:g}x as fast as the "
            f"no-exit twin's graph: {gate.describe()}; medians {ms}",
        )
    if case.path == "exit_never" and gate.verdict == Verdict.INVERTED:
        fail(
            case,
            f"split_graph at exit_never is more than {slowdown:.0%} slower than "
            f"the no-exit twin's graph: {gate.describe()}; medians {ms}",
        )
