"""The suites, run as a user runs them (pytest in a subprocess), pass on good models and fail,
with the explanation, on the negative control and on a constant-condition If."""

from __future__ import annotations

import re

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


PATHS = ("exit_always", "exit_never", "exit_default")
#: what runs on any machine (a CPU included): each of these must pass, not skip
MUST_PASS = (
    *(f"test_benchmark.py::test_benchmark[resnet8-fp32-{p}-concat]" for p in PATHS),
    "test_correctness.py::test_matches_reference[resnet8-fp32-exit_default-concat]",
    *(f"test_exit_flag.py::test_exit_flag[resnet8-fp32-{p}-concat]" for p in PATHS),
    "test_exit_value.py::test_exit_value[resnet8-fp32-exit_default-concat]",
    "test_latency.py::test_untaken_branch_is_skipped[resnet8-fp32-concat]",
    "test_precision_audit.py::test_branches_run_in_target_precision[resnet8-concat]",
    *(
        f"test_strategies.py::test_strategy_exit_flag_and_correctness[resnet8-fp32-{p}-concat-{s}]"
        for p in PATHS
        for s in ("fused", "split_host")
    ),
    "test_structure.py::test_exit_is_real[resnet8-concat]",
    "test_structure.py::test_tensorrt_keeps_conditional[resnet8-fp32-concat]",
)
#: the only reasons a test may skip here: no GPU, or a CPU profile that gates no latency ordering
SKIP_REASONS = re.compile(r"no usable GPU|needs a GPU|needs a usable NVIDIA GPU|gates no latency")


def test_zoo_model_passes_every_suite(run_suite) -> None:
    result = run_suite(str(REPO / "suites"), *FAST, "--layout=concat", "-rA")
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, out
    passed = {
        line.split()[1].rpartition("suites/")[2]
        for line in out.splitlines()
        if line.startswith("PASSED ")
    }
    missing = [t for t in MUST_PASS if t not in passed]
    assert not missing, f"did not pass: {missing}\n{out}"
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED ")]
    counted = sum(int(re.match(r"SKIPPED \[(\d+)\]", line).group(1)) for line in skips)  # type: ignore[union-attr]
    assert counted == outcomes.get("skipped", 0), out  # every skip's reason is in the summary
    odd = [line for line in skips if not SKIP_REASONS.search(line)]
    assert not odd, f"skipped for another reason: {odd}"
    result.stdout.fnmatch_lines(["exitgate: device profile *", "exitgate: backend onnxruntime*"])


def test_negative_control_fails_structure_with_the_explanation(run_suite, tmp_path) -> None:
    neg = tmp_path / "resnet8_traced.onnx"
    neg.write_bytes(onnx_path(ZOO["resnet8"], "traced").read_bytes())
    result = run_suite(
        str(REPO / "suites" / "test_structure.py"), f"--model={neg}", "-k", "exit_is_real"
    )
    assert _counts(result) == {"failed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*[[]resnet8_traced[]] the early exit is not real:*",
            "*no `If` node: the early exit was traced away*torch.cond*dynamo=True*",
        ]
    )


def test_constant_condition_fails_structure(run_suite, tmp_path, resnet8_concat) -> None:
    f = tmp_path / "folded.onnx"
    onnx.save(constant_condition(resnet8_concat), f)
    result = run_suite(
        str(REPO / "suites" / "test_structure.py"), f"--model={f}", "-k", "exit_is_real"
    )
    assert _counts(result) == {"failed": 1}, result.stdout.str()
    result.stdout.fnmatch_lines(["*has a constant condition: TensorRT's ONNX parser folds it*"])


def test_tf2onnx_style_model_is_understood_and_driven(run_suite, tmp_path, resnet8_concat) -> None:
    f = tmp_path / "branchy_tf.onnx"
    onnx.save(tf2onnx_like(resnet8_concat), f)
    result = run_suite(str(REPO / "suites"), f"--model={f}", "--samples=48", "-v")
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines_random(
        [
            "*test_exit_is_real?branchy_tf? PASSED*",
            "*test_exit_flag?branchy_tf-fp32-exit_always? PASSED*",
            "*test_exit_flag?branchy_tf-fp32-exit_never? PASSED*",
            "*test_exit_flag?branchy_tf-fp32-exit_default? PASSED*",
            "*test_matches_reference?branchy_tf-fp32-exit_default? PASSED*",
            "*test_untaken_branch_is_skipped?branchy_tf-fp32? PASSED*",
        ]
    )


def test_manifest_runs_several_models(run_suite, tmp_path, resnet8_concat) -> None:
    onnx.save(tf2onnx_like(resnet8_concat), tmp_path / "a.onnx")
    onnx.save(resnet8_concat, tmp_path / "b.onnx")
    (tmp_path / "models.toml").write_text(
        '[[model]]\nname = "tf_style"\npath = "a.onnx"\n\n[[model]]\npath = "b.onnx"\n'
        "threshold = 0.9\n"
    )
    result = run_suite(
        str(REPO / "suites" / "test_exit_flag.py"),
        f"--model={tmp_path / 'models.toml'}",
        "--samples=48",
        "-v",
    )
    assert _counts(result) == {"passed": 6}, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*tf_style-fp32-exit_always*PASSED*", "*b-fp32-exit_never*PASSED*"]
    )
