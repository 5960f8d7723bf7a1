"""Outputs agree with onnxruntime on the fp32 ONNX, branch-aware; the export matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.cases import Case
from fixtures.compare import compare_runs
from fixtures.workspace import Prepared, Workspace

pytestmark = pytest.mark.exitgate_family(
    "correctness",
    order=30,
    facts={"correctness": "Correctness against onnxruntime fp32 (branch-aware)"},
)


@pytest.mark.exitgate_cases(precision=True, paths=("exit_default",))
def test_matches_reference(
    case: Case, prepared: Prepared, workspace: Workspace, engine, record
) -> None:
    __tracebackhide__ = True
    precision = case.precision or "fp32"
    t = prepared.threshold_for(case.path)
    cmp = compare_runs(case.id, workspace.candidate(case.model, precision, t),
                       workspace.reference(case.model, t), workspace.settings.profile, precision)  # fmt: skip
    record("correctness", cmp.line())
    if not cmp.passed:
        pytest.fail(
            f"{cmp.line()}\n  worst input {cmp.worst}; tolerances come from profile "
            f"{workspace.settings.profile.source}. If the model is right and the tolerance too "
            "tight for this device, adjust the profile; otherwise inspect the precision audit.",
            pytrace=False,
        )


@pytest.mark.exitgate_cases(models="zoo", paths=("exit_always", "exit_never", "exit_default"))
def test_export_matches_eager(case: Case, prepared: Prepared, workspace: Workspace) -> None:
    """The zoo's ONNX export computes what the PyTorch module computes (fp32, CPU)."""
    __tracebackhide__ = True
    pytest.importorskip("torch", reason="install PyTorch (pip install -e '.[zoo]') to compare the "
                        "export with the eager module")  # fmt: skip
    t = prepared.threshold_for(case.path)
    eager = workspace.candidate(case.model, "fp32", t, backend="torch", device="cpu")
    onnx = workspace.reference(case.model, t)
    flips = np.flatnonzero(eager.flag != onnx.flag)
    if len(flips):
        pytest.fail(f"[{case.id}] eager and ONNX took different exits on inputs "
                    f"{flips[:5].tolist()}", pytrace=False)  # fmt: skip
    diff = float(np.abs(eager.probs - onnx.probs).max())
    assert diff < 1e-4, f"[{case.id}] eager vs ONNX max |diff| {diff:.3g} >= 1e-4"
