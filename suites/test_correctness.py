"""Outputs agree with onnxruntime on the fp32 ONNX, branch-aware.

That the zoo's own export matches PyTorch is a self-test of the project: tests/test_zoo_export.py.
"""

from __future__ import annotations

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
    cmp = compare_runs(
        case.id,
        workspace.candidate(case.model, precision, t),
        workspace.reference(case.model, t),
        workspace.settings.profile,
        precision,
    )
    record("correctness", cmp.line())
    if not cmp.passed:
        pytest.fail(
            f"{cmp.line()}\n  worst input {cmp.worst}; tolerances come from profile "
            f"{workspace.settings.profile.source}. If the model is right and the tolerance too "
            "tight for this device, adjust the profile; otherwise inspect the precision audit.",
            pytrace=False,
        )
