"""Discovery of the If, the threshold, the flag layout and the image layout on hand-built graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.structure import (
    CONFIDENCE_OUTPUT,
    ModelFileError,
    analyze,
    load_model,
    reference_model,
    with_threshold_input,
)
from tests.graphs import Spec, build


def _run(model: onnx.ModelProto, feeds: dict) -> dict:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds), strict=True))


def test_zoo_like_graph_is_fully_understood() -> None:
    a = analyze(build(Spec()), "g")
    assert a.ok and not a.undetermined
    assert (a.condition, a.threshold_input, a.compare_op, a.exit_branch, a.layout) == (
        "data_dependent", "threshold", "Greater", "then_branch", "concat"
    )  # fmt: skip
    assert (a.image_layout, a.flag_output, a.num_classes, a.confidence_tensor) == (
        "NCHW", "output", 10, "conf"
    )  # fmt: skip


def test_nhwc_with_baked_constant_is_found_and_rewritten() -> None:
    m = build(Spec(nhwc=True, threshold="constant", threshold_value=0.37))
    a = analyze(m, "tf")
    assert a.ok and not a.undetermined
    assert a.image_layout == "NHWC"
    assert a.threshold_input is None and a.threshold_constant == pytest.approx(0.37)
    driven = with_threshold_input(m, a)
    assert "threshold" in [i.name for i in driven.graph.input]
    image = np.random.default_rng(1).standard_normal((1, 4, 4, 3)).astype(np.float32)
    base = _run(m, {"image": image})["output"]
    same = _run(driven, {"image": image, "threshold": np.array([0.37], np.float32)})["output"]
    np.testing.assert_array_equal(base, same)  # the rewrite keeps the comparison exact
    for t, flag in ((0.0, 0.0), (1.0, 1.0)):
        out = _run(driven, {"image": image, "threshold": np.array([t], np.float32)})["output"]
        assert out[0, -1] == flag


def test_baked_constant_named_threshold_leaves_no_default_on_the_new_input() -> None:
    m = build(Spec())  # threshold as input ...
    m = tf2onnx_like_small(m)  # ... baked back as an initializer named "threshold"
    a = analyze(m, "tf")
    driven = with_threshold_input(m, a)
    assert "threshold" in [i.name for i in driven.graph.input]
    assert "threshold" not in [t.name for t in driven.graph.initializer]
    out = _run(driven, {"image": np.ones((1, 3, 4, 4), np.float32),
                        "threshold": np.array([1.0], np.float32)})  # fmt: skip
    assert out["output"][0, -1] == 1.0


def tf2onnx_like_small(m: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(m)
    thr = next(i for i in out.graph.input if i.name == "threshold")
    out.graph.input.remove(thr)
    out.graph.initializer.append(
        onnx.numpy_helper.from_array(np.array([0.5], np.float32), "threshold")
    )
    return out


def test_two_output_if_is_the_separate_layout() -> None:
    a = analyze(build(Spec(layout="separate")), "g")
    assert a.ok
    assert (a.layout, a.flag_output, a.probs_output, a.num_classes) == (
        "separate", "exit_flag", "probs", 10
    )  # fmt: skip


def test_constant_condition_is_a_problem() -> None:
    a = analyze(build(Spec(condition="constant")), "g")
    assert [p.code for p in a.problems] == ["constant_condition"]
    assert "TensorRT's ONNX parser folds it" in a.problems[0].message


def test_condition_on_threshold_only_is_input_independent() -> None:
    a = analyze(build(Spec(condition="threshold_only")), "g")
    assert [p.code for p in a.problems] == ["input_independent_condition"]


def test_no_if_is_the_traced_exit() -> None:
    a = analyze(build(Spec(with_if=False)), "g")
    assert [p.code for p in a.problems] == ["no_if"]
    assert "torch.cond" in a.problems[0].message


@pytest.mark.parametrize(("compare", "negate"), [("Less", False), ("Greater", True),
                                                 ("GreaterOrEqual", False), ("Less", True)])  # fmt: skip
def test_exit_branch_follows_the_comparison(compare: str, negate: bool) -> None:
    m = build(Spec(compare=compare, negate=negate))
    a = analyze(m, "g")
    assert a.ok
    img = np.ones((1, 3, 4, 4), np.float32)
    for force, flag in (("exit", 0.0), ("deep", 1.0)):
        out = _run(
            reference_model(m, a, force), {"image": img, "threshold": np.array([0.5], np.float32)}
        )
        assert out["output"][0, -1] == flag, (compare, negate, force)
    for t, flag in ((0.0, 0.0), (1.0, 1.0)):  # the discovered exit branch is the flag-0 one
        out = _run(m, {"image": img, "threshold": np.array([t], np.float32)})
        if compare != "GreaterOrEqual" or t != 1.0:
            assert out["output"][0, -1] == flag


def test_branch_shape_mismatch_is_a_problem() -> None:
    a = analyze(build(Spec(branch_mismatch=True)), "g")
    assert "branch_shape_mismatch" in [p.code for p in a.problems]


def test_flag_outside_the_if_is_a_problem() -> None:
    a = analyze(build(Spec(flag_outside=True)), "g")
    assert "flag_outside_if" in [p.code for p in a.problems]


def test_layout_option_that_contradicts_the_model() -> None:
    a = analyze(build(Spec(layout="concat")), "g", layout="separate")
    assert [p.code for p in a.problems] == ["layout_mismatch"]
    assert "--flag-layout=separate does not match the model" in a.problems[0].message
    a = analyze(build(Spec(nhwc=True)), "g", input_layout="NCHW")
    assert any("--input-layout=NCHW does not match input 'image'" in p.message for p in a.problems)


def test_unsupported_opset() -> None:
    a = analyze(build(Spec(opset=9)), "g")
    assert "unsupported_opset" in [p.code for p in a.problems]


def test_reference_model_exposes_the_confidence() -> None:
    m = build(Spec())
    out = _run(reference_model(m, analyze(m, "g")),
               {"image": np.ones((1, 3, 4, 4), np.float32), "threshold": np.array([0.5], np.float32)})  # fmt: skip
    assert 0.1 <= float(out[CONFIDENCE_OUTPUT]) <= 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "file is empty"),
        (b"\x08\x07garbage-not-onnx" * 3, "not a readable ONNX model"),
    ],
)
def test_bad_files_name_the_file(tmp_path, content, message: str) -> None:
    f = tmp_path / "m.onnx"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        load_model(f)
    assert str(f) in str(info.value) and message in str(info.value)


def test_truncated_model_is_rejected(tmp_path) -> None:
    f = tmp_path / "t.onnx"
    f.write_bytes(build(Spec()).SerializeToString()[:200])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(f)
