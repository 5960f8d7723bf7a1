"""The exit flag at the threshold extremes and at the model's own threshold, input by input.

exit_always: at the threshold that forces the exit for the model's own comparison (-inf for
`max_softmax > t`, +inf for `entropy < t`) every input leaves early (flag 0) and the output equals
the exit branch's. exit_never: every input runs the full network (flag 1) and the output equals the
deep branch's. exit_default: at the model's own threshold the path taken is the model's own
decision, input by input, and both paths occur on the project's dataset. A model without a flag
output is judged on the path read from its outputs. The same checks run on every backend and
precision.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.cases import Case
from fixtures.checks import check_decisions, check_fixed_path, fail
from fixtures.workspace import Prepared, Workspace
from models.structure import exits

pytestmark = pytest.mark.exitgate_family(
    "exit flag",
    order=20,
    facts={
        "exit": "Exit rate and accuracy per exit (project dataset, default threshold)",
        "engine": "Engines (what ran each case)",
    },
)


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
        check_fixed_path(case, got, workspace)
        return
    ref = workspace.reference(case.model, t)
    check_decisions(case, got, ref, t, prepared.analysis.describe())
    exited = np.round(got.flag) == 0
    exit_rate = float(exited.mean())
    record(
        "exit",
        {
            **_exit_stats(got.probs, exited, prepared.data.y, t),
            "criterion": prepared.analysis.describe(),
        },
    )
    if precision == "fp32":
        record("sweep", _threshold_sweep(workspace, case, prepared, ref))
    if exit_rate in (0.0, 1.0):
        fail(
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


def _threshold_sweep(workspace: Workspace, case: Case, prepared: Prepared, ref) -> dict:
    """Exit rate and accuracy vs threshold from the fp32 reference (the BranchyNet trade-off),
    over the score's own range (0..1 for a max softmax; the observed range otherwise)."""
    a, y = prepared.analysis, prepared.data.y
    exit_p = workspace.reference(
        case.model, prepared.threshold_for("exit_always"), force="exit"
    ).probs.argmax(1)
    deep_p = workspace.reference(
        case.model, prepared.threshold_for("exit_never"), force="deep"
    ).probs.argmax(1)
    lo, hi = (
        (0.0, 1.0)
        if a.criterion == "max_softmax"
        else (float(ref.score.min()), float(ref.score.max()))
    )
    thresholds = np.round(np.linspace(lo, hi, 41), 4)
    rates, accs = [], []
    for th in thresholds:
        ex = exits(ref.score, a.exit_when, th)
        rates.append(float(ex.mean()))
        accs.append(float((np.where(ex, exit_p, deep_p) == y).mean()) if (y >= 0).all() else None)
    return {
        "thresholds": thresholds.tolist(),
        "exit_rate": rates,
        "accuracy": accs,
        "criterion": a.describe(),
    }
