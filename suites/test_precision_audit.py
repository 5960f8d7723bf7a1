"""Per-branch precision audit: fp16 and int8 artifacts must run their convolutions and GEMMs in the
target precision in every branch (trunk, exit head, deep branch), inside the `If` too.

A converter that skips `If` subgraphs leaves the deep branch in fp32: the "INT8 slower than FP16"
symptom. The audit is read from the ONNX artifact here; with the TensorRT backend the engine's own
layer information is audited as well (test_structure.py).
"""

from __future__ import annotations

import pytest

from fixtures.backends.base import BackendUnavailable, load
from fixtures.backends.base import backend as get_descriptor
from fixtures.cases import Case
from fixtures.workspace import Prepared, Workspace
from models.audit import audit

pytestmark = pytest.mark.exitgate_family(
    "precision audit",
    order=40,
    facts={
        "audit": "Precision audit per branch",
        "engine_audit": "Engine precision per branch (TensorRT inspector)",
    },
)


@pytest.mark.exitgate_cases(precision=("fp16", "int8"))
def test_branches_run_in_target_precision(
    case: Case, prepared: Prepared, workspace: Workspace, record
) -> None:
    __tracebackhide__ = True

    precision = case.precision or "fp32"
    try:
        artifact = workspace.onnx_for(prepared, precision)
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")
    result = audit(artifact, precision, exit_branch=prepared.analysis.exit_branch or "then_branch")
    record(
        "audit",
        {
            b: {
                "text": a.text(),
                "left_fp32": a.left_fp32,
                "converted": a.converted,
                "total": a.total,
            }
            for b, a in result.branches.items()
        },
    )
    if result.left_fp32:
        pytest.fail(
            f"[{case.id}] branch(es) {', '.join(result.left_fp32)} left in fp32:\n  "
            + "\n  ".join(result.lines())
            + f"\n  artifact: {artifact}. Quantize/convert inside the If branches (see README, "
            "'Precision artifacts').",
            pytrace=False,
        )
    assert result["deep"].converted > 0, result.text()
    engine_audit = get_descriptor(workspace.settings.backend).engine_audit
    if engine_audit:
        _record_engine_audit(case, workspace, artifact, record, load(engine_audit))


def _record_engine_audit(case: Case, workspace: Workspace, artifact, record, engine_audit) -> None:
    """The same audit read back from the built engine (the backend's ``engine_audit``, e.g.
    TensorRT's engine inspector): which data types each branch's layers produce, so "INT8 slower
    than FP16" can be explained."""
    try:
        engine = workspace.engine(case.model, case.precision or "fp32")
    except BackendUnavailable as exc:
        record("engine_audit", f"not read: {exc}")
        return
    record("engine_audit", engine_audit(engine, artifact))
