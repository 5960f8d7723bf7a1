"""The exit flag at the threshold extremes and at the model's own threshold, input by input.

exit_always (threshold 0): every input leaves early (flag 0) and the output equals the exit head's.
exit_never (threshold 1): every input runs the full network (flag 1) and the output equals the deep
branch's. exit_default: the flag equals `max(exit probs) > threshold`, and both paths occur on the
project's dataset. The same checks run unchanged on every backend and precision.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.cases import Case
from fixtures.workspace import Prepared, Workspace

# How far from the threshold a confidence must be for its exit decision to be asserted: reduced
# precisions compute the confidence slightly differently from the fp32 reference.
DECISION_MARGIN = {"fp32": 1e-5, "fp16": 5e-3, "int8": 5e-2}


def _fail(case: Case, msg: str) -> None:
    __tracebackhide__ = True
    pytest.fail(f"[{case.id}] {msg}", pytrace=False)


@pytest.mark.exitgate_cases(precision=True, paths=("exit_always", "exit_never", "exit_default"))
def test_exit_flag(case: Case, prepared: Prepared, workspace: Workspace, engine, record) -> None:
    __tracebackhide__ = True
    precision = case.precision or "fp32"
    t = prepared.threshold_for(case.path)
    if case.path == "exit_default":  # what built the engine (precision mode, flavor, ...)
        record("engine", {"backend": engine.backend, **{k: str(v) for k, v in engine.info.items()}})
    got = workspace.candidate(case.model, precision, t)
    n = len(got.flag)
    if case.path in ("exit_always", "exit_never"):
        want_flag = 0.0 if case.path == "exit_always" else 1.0
        branch = "exit" if case.path == "exit_always" else "deep"
        wrong = np.flatnonzero(np.round(got.flag) != want_flag)
        if len(wrong):
            _fail(
                case,
                f"at threshold {t} every input must have exit flag {want_flag:g}, but "
                f"{len(wrong)}/{n} did not (first inputs {wrong[:5].tolist()}, flags "
                f"{got.flag[wrong[:5]].tolist()}). The exit is not driven by the threshold input.",
            )
        forced = workspace.reference(case.model, t, force=branch)
        atol = workspace.settings.profile.tol(precision, "atol")
        diff = np.abs(got.probs - forced.probs).max(axis=1)
        bad = np.flatnonzero(diff > atol)
        # int8 is judged on top-1 agreement with the branch's fp32 output
        if precision == "int8":
            agree = float((got.probs.argmax(1) == forced.probs.argmax(1)).mean())
            limit = workspace.settings.profile.tol("int8", "top1_agree")
            if agree < limit:
                _fail(case, f"top-1 agreement with the {branch} branch's fp32 output is "
                            f"{agree:.1%} < {limit:.0%}")  # fmt: skip
        elif len(bad):
            i = int(bad[0])
            _fail(
                case,
                f"the output must equal the {branch} branch's output (atol {atol:g}); "
                f"{len(bad)}/{n} inputs differ, e.g. input {i}: max |diff| {diff[i]:.3g}",
            )
        return
    # exit_default: the decision follows the confidence, input by input
    ref = workspace.reference(case.model, t)
    assert ref.confidence is not None
    margin = DECISION_MARGIN[precision]
    clear = np.abs(ref.confidence - t) > margin
    expected = np.where(ref.confidence > t, 0.0, 1.0)
    wrong = np.flatnonzero(clear & (np.round(got.flag) != expected))
    if len(wrong):
        i = int(wrong[0])
        _fail(
            case,
            f"flag must be 0 exactly when max(exit probs) > {t}: {len(wrong)}/{int(clear.sum())} "
            f"inputs disagree, e.g. input {i}: confidence {ref.confidence[i]:.4f}, flag "
            f"{got.flag[i]:g}",
        )
    exited = np.round(got.flag) == 0
    exit_rate = float(exited.mean())
    record("exit", _exit_stats(got.probs, exited, prepared.data.y, t))
    if precision == "fp32":
        record("sweep", _threshold_sweep(workspace, case, ref, prepared.data.y))
    if exit_rate in (0.0, 1.0):
        _fail(
            case,
            f"at the default threshold {t} all {n} inputs took the same path (exit rate "
            f"{exit_rate:.0%}): the dataset must exercise both the early exit and the deep branch",
        )


def _exit_stats(probs: np.ndarray, exited: np.ndarray, y: np.ndarray, t: float) -> dict:
    """Exit rate and accuracy per exit (labels < 0 mean unknown: accuracy is then omitted)."""
    stats: dict = {"threshold": t, "n": len(exited), "exit_rate": float(exited.mean())}
    if (y >= 0).all():
        right = probs.argmax(1) == y
        stats["accuracy"] = float(right.mean())
        stats["accuracy_exited"] = float(right[exited].mean()) if exited.any() else None
        stats["accuracy_deep"] = float(right[~exited].mean()) if (~exited).any() else None
    return stats


def _threshold_sweep(workspace: Workspace, case: Case, ref, y: np.ndarray) -> dict:
    """Exit rate and accuracy vs threshold from the fp32 reference (the BranchyNet trade-off)."""
    exit_p = workspace.reference(case.model, 0.0, force="exit").probs.argmax(1)
    deep_p = workspace.reference(case.model, 1.0, force="deep").probs.argmax(1)
    thresholds = np.round(np.linspace(0.0, 1.0, 41), 3)
    rates, accs = [], []
    for th in thresholds:
        ex = ref.confidence > th
        rates.append(float(ex.mean()))
        accs.append(float((np.where(ex, exit_p, deep_p) == y).mean()) if (y >= 0).all() else None)
    return {"thresholds": thresholds.tolist(), "exit_rate": rates, "accuracy": accs}
