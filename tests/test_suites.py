"""The suites, run as a user runs them (pytest in a subprocess), pass on good models and fail,
with the explanation, on the negative control and on a constant-condition If."""

from __future__ import annotations

import onnx
import pytest

from models.zoo import ZOO, onnx_path
from tests.byo import constant_condition, tf2onnx_like
from tests.conftest import REPO


def _counts(result: pytest.RunResult) -> dict[str, int]:
    return {k: v for k, v in result.parseoutcomes().items() if k != "deselected"}


FAST = ("--zoo=resnet8", "--samples=48", "-p", "no:xdist")


@pytest.fixture(scope="module")
def resnet8_concat() -> onnx.ModelProto:
    return onnx.load(onnx_path(ZOO["resnet8"], "concat"))


def test_zoo_model_passes_every_suite(run_suite) -> None:
    result = run_suite(str(REPO / "suites"), *FAST, "--layout=concat")
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
    assert outcomes["passed"] >= 8, outcomes
    result.stdout.fnmatch_lines(["exitgate: device profile *", "exitgate: backend onnxruntime*"])


def test_negative_control_fails_structure_with_the_explanation(run_suite, tmp_path) -> None:
    neg = tmp_path / "resnet8_traced.onnx"
    neg.write_bytes(onnx_path(ZOO["resnet8"], "traced").read_bytes())
    result = run_suite(str(REPO / "suites" / "test_structure.py"), f"--model={neg}",
                       "-k", "exit_is_real")  # fmt: skip
    assert _counts(result) == {"failed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*[[]resnet8_traced[]] the early exit is not real:*",
        "*no `If` node: the early exit was traced away*torch.cond*dynamo=True*",
    ])  # fmt: skip


def test_constant_condition_fails_structure(run_suite, tmp_path, resnet8_concat) -> None:
    f = tmp_path / "folded.onnx"
    onnx.save(constant_condition(resnet8_concat), f)
    result = run_suite(str(REPO / "suites" / "test_structure.py"), f"--model={f}",
                       "-k", "exit_is_real")  # fmt: skip
    assert _counts(result) == {"failed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["*has a constant condition: TensorRT's ONNX parser folds it*"])


def test_tf2onnx_style_model_is_understood_and_driven(run_suite, tmp_path, resnet8_concat) -> None:
    f = tmp_path / "branchy_tf.onnx"
    onnx.save(tf2onnx_like(resnet8_concat), f)
    result = run_suite(str(REPO / "suites"), f"--model={f}", "--samples=48", "-v")
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_exit_is_real?branchy_tf? PASSED*",
        "*test_exit_flag?branchy_tf-fp32-exit_always? PASSED*",
        "*test_exit_flag?branchy_tf-fp32-exit_never? PASSED*",
        "*test_exit_flag?branchy_tf-fp32-exit_default? PASSED*",
        "*test_matches_reference?branchy_tf-fp32-exit_default? PASSED*",
        "*test_untaken_branch_is_skipped?branchy_tf-fp32? PASSED*",
    ])  # fmt: skip


def test_manifest_runs_several_models(run_suite, tmp_path, resnet8_concat) -> None:
    onnx.save(tf2onnx_like(resnet8_concat), tmp_path / "a.onnx")
    onnx.save(resnet8_concat, tmp_path / "b.onnx")
    (tmp_path / "models.toml").write_text(
        '[[model]]\nname = "tf_style"\npath = "a.onnx"\n\n[[model]]\npath = "b.onnx"\n'
        "threshold = 0.9\n"
    )
    result = run_suite(str(REPO / "suites" / "test_exit_flag.py"),
                       f"--model={tmp_path / 'models.toml'}", "--samples=48", "-v")  # fmt: skip
    assert _counts(result) == {"passed": 6}, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*tf_style-fp32-exit_always*PASSED*", "*b-fp32-exit_never*PASSED*"]
    )
