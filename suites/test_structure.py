"""The exit is real: an `If` whose condition depends on the input, matching branches (declared and,
run on a few inputs, produced), the flag produced inside them, thresholds that force each path;
and (with TensorRT installed) the conditional survives TensorRT's parser."""

from __future__ import annotations

import pytest

from fixtures.backends.base import BackendUnavailable
from fixtures.backends.tensorrt.compat import TrtParseError, inspect_onnx
from fixtures.cases import Case
from fixtures.workspace import ExitNotReal, Prepared, PrepareError, Workspace
from models.structure import ModelFileError

pytestmark = pytest.mark.exitgate_family("structure", order=10)


@pytest.mark.exitgate_cases()
def test_exit_is_real(case: Case, workspace: Workspace) -> None:
    __tracebackhide__ = True
    try:
        a = workspace.analysis(case.model)
    except ModelFileError as exc:
        pytest.fail(f"[{case.id}] {exc}", pytrace=False)
    if a.problems:
        pytest.fail(f"[{case.id}] the early exit is not real:\n{a.explain()}", pytrace=False)
    if a.undetermined:
        pytest.fail(
            f"[{case.id}] the exit could not be fully analysed:\n{a.explain()}", pytrace=False
        )
    assert a.condition == "data_dependent"
    assert a.exit_branch in ("then_branch", "else_branch")
    # what only running shows: the branches' real output shapes, the flag, the forced paths
    try:
        p = workspace.prepare(case.model)
    except ExitNotReal as exc:
        pytest.fail(f"[{case.id}] the early exit is not real:\n{exc}", pytrace=False)
    except PrepareError as exc:  # a missing --threshold, an input size the data cannot feed...
        pytest.fail(f"[{case.id}] cannot be prepared for testing:\n{exc}", pytrace=False)
    assert set(p.paths) == {"exit_always", "exit_never", "exit_default"}


@pytest.mark.exitgate_cases(precision=True)
def test_tensorrt_keeps_conditional(case: Case, prepared: Prepared, workspace: Workspace) -> None:
    """TensorRT's parser must import the If as CONDITION / CONDITIONAL_* layers (a constant or
    traced-away condition leaves none: the model would never exit on the device)."""
    __tracebackhide__ = True
    try:
        onnx = workspace.onnx_for(prepared, case.precision or "fp32")
        summary = inspect_onnx(onnx, strong=True)
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")
    except TrtParseError as exc:
        pytest.fail(f"[{case.id}] TensorRT could not parse the model:\n{exc}", pytrace=False)
    cond = summary["conditional_layers"]
    if not cond.get("CONDITION"):
        pytest.fail(
            f"[{case.id}] TensorRT's network has no CONDITION layer (layers: {cond}): the parser "
            "folded or lost the early exit, so the engine would always run one branch. Make the "
            "If condition depend on the input.",
            pytrace=False,
        )
    assert cond.get("CONDITIONAL_OUTPUT", 0) >= 1
