"""Discovery of the If, the threshold, the flag layout and the image layout on hand-built graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.structure import (
    EXITS_OUTPUT,
    SCORE_OUTPUT,
    ModelFileError,
    analyze,
    load_model,
    reference_model,
    with_threshold_input,
)
from tests.graphs import Spec, build, settle


def _run(model: onnx.ModelProto, feeds: dict) -> dict:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds), strict=True))


def test_zoo_like_graph_is_fully_understood() -> None:
    a = analyze(build(Spec()), "g")
    assert a.ok and not a.undetermined
    assert (a.condition, a.threshold_input, a.compare_op, a.exit_branch) == (
        "data_dependent",
        "threshold",
        "Greater",
        "then_branch",
    )
    assert (a.image_layout, a.criterion, a.exit_when, a.score_tensor) == (
        "NCHW",
        "max_softmax",
        ">",
        "conf",
    )
    _, s, paths = settle(build(Spec()))
    assert s.ok, s.explain()
    assert (s.layout, s.flag_output, s.num_classes) == ("concat", "output", 10)
    assert paths["exit_always"].threshold == -np.inf and paths["exit_never"].threshold == np.inf


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
    out = _run(
        driven,
        {"image": np.ones((1, 3, 4, 4), np.float32), "threshold": np.array([1.0], np.float32)},
    )
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
    _, a, _ = settle(build(Spec(layout="separate")))
    assert a.ok
    assert (a.layout, a.flag_output, a.probs_output, a.num_classes) == (
        "separate",
        "exit_flag",
        "probs",
        10,
    )


@pytest.mark.parametrize(("layout", "flag"), [("none", None), ("scalar", "exit_flag")])
def test_flag_is_found_by_behaviour_not_by_position(layout: str, flag: str | None) -> None:
    """Probs only (the forum user's first model) is not read as concat with 9 classes; a scalar
    constant flag per branch is found."""
    _, a, _ = settle(build(Spec(layout=layout)))
    assert a.ok, a.explain()
    want_layout = "none" if flag is None else "separate"
    assert (a.layout, a.flag_output, a.probs_output, a.num_classes) == (
        want_layout,
        flag,
        "probs",
        10,
    )


@pytest.mark.parametrize("via", [("ReduceMax",), ("Reshape",), ("Cast",), ("ReduceMax", "Cast")])
def test_threshold_is_followed_through_shape_and_reducing_ops(via: tuple[str, ...]) -> None:
    a = analyze(build(Spec(threshold_via=via)), "g")
    assert a.ok and not a.undetermined, a.explain()
    assert a.threshold_input == "threshold" and a.threshold_via == list(reversed(via))


@pytest.mark.parametrize(("score", "exit_when"), [("entropy", "<"), ("max_logit", ">")])
def test_other_exit_criteria_are_read_and_driven(score: str, exit_when: str) -> None:
    """An entropy exit (BranchyNet) leaves early when the score is LOW: threshold -inf must force
    the deep branch, +inf the exit, and the probe verifies it by running."""
    m = build(Spec(score=score))
    a = analyze(m, "g")
    assert (a.criterion, a.exit_when, a.exit_branch) == (score, exit_when, "then_branch")
    runnable, s, paths = settle(m, default=1.0)
    assert s.ok, s.explain()
    sign = 1.0 if exit_when == "<" else -1.0
    assert paths["exit_always"].threshold == sign * np.inf
    img = np.ones((1, 3, 4, 4), np.float32)
    for path, flag in (("exit_always", 0.0), ("exit_never", 1.0)):
        t = np.array([paths[path].threshold], np.float32)
        assert _run(runnable, {"image": img, "threshold": t})["output"][0, -1] == flag


def test_dynamic_batch_with_different_symbolic_dims_is_not_a_mismatch() -> None:
    """tf2onnx names each unknown dim anew (unk__247 vs unk__248): only static sizes can clash."""
    m = build(Spec(batch="dynamic"))
    a = analyze(m, "g")
    assert a.ok, a.explain()
    runnable, s, _ = settle(m)
    assert s.ok
    assert [d.dim_value for d in runnable.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 4, 4]


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


@pytest.mark.parametrize(
    ("compare", "negate"),
    [("Less", False), ("Greater", True), ("GreaterOrEqual", False), ("Less", True)],
)
def test_exit_branch_follows_the_comparison(compare: str, negate: bool) -> None:
    m = build(Spec(compare=compare, negate=negate))
    a = analyze(m, "g")
    assert a.ok
    assert a.exit_when == (">=" if compare == "GreaterOrEqual" else ">")
    img = np.ones((1, 3, 4, 4), np.float32)
    for force, flag in (("exit", 0.0), ("deep", 1.0)):
        out = _run(
            reference_model(m, a, force), {"image": img, "threshold": np.array([0.5], np.float32)}
        )
        assert out["output"][0, -1] == flag, (compare, negate, force)
    _, _, paths = settle(m)
    for path, flag in (("exit_always", 0.0), ("exit_never", 1.0)):  # the flag-0 branch exits
        t = np.array([paths[path].threshold], np.float32)
        assert _run(m, {"image": img, "threshold": t})["output"][0, -1] == flag


def test_branch_shape_mismatch_is_a_problem() -> None:
    a = analyze(build(Spec(branch_mismatch=True)), "g")
    assert "branch_shape_mismatch" in [p.code for p in a.problems]


def test_flag_outside_the_if_is_a_problem() -> None:
    a = analyze(build(Spec(flag_outside=True)), "g")
    assert "flag_outside_if" in [p.code for p in a.problems]


def test_layout_option_that_contradicts_the_model() -> None:
    m = build(Spec(layout="concat"))
    _, s, _ = settle(m, layout="separate")
    assert [p.code for p in s.problems] == ["layout_mismatch"]
    assert "--flag-layout=separate does not match the model" in s.problems[0].message


@pytest.mark.parametrize(
    ("spec", "opts", "want"),
    [
        ("separate", {"flag_output": "exit_flag"}, ("separate", "exit_flag", "probs", 10)),
        (
            "concat",
            {"flag_output": "output", "layout": "concat"},
            ("concat", "output", "output", 10),
        ),
        ("separate", {"layout": "separate"}, ("separate", "exit_flag", "probs", 10)),
        ("concat", {"layout": "none"}, ("none", None, "output", 11)),  # the flag column ignored
    ],
    ids=["flag", "flag_and_layout", "layout", "layout_none"],
)
def test_forced_flag_and_layout_that_match_the_model(spec: str, opts: dict, want: tuple) -> None:
    _, a, _ = settle(build(Spec(layout=spec)), **opts)
    assert a.ok, a.explain()
    assert (a.layout, a.flag_output, a.probs_output, a.num_classes) == want


@pytest.mark.parametrize(
    ("spec", "opts", "code", "says"),
    [
        (
            "separate",
            {"flag_output": "probs"},
            "flag_output_mismatch",
            "flag_output='probs': forcing the branches does not make that output 0 (exit) and 1 (deep); "
            "the flag is 'exit_flag' (separate layout)",
        ),
        ("none", {"flag_output": "probs"}, "flag_output_mismatch", "the model has no flag"),
        (
            "separate",
            {"flag_output": "exit_flag", "layout": "concat"},
            "layout_mismatch",
            "--flag-layout=concat does not match the model: forcing the branches shows the separate "
            "layout (flag 'exit_flag')",
        ),
        (
            "separate",
            {"flag_output": "exit_flag", "layout": "none"},
            "layout_mismatch",
            "--flag-layout=none does not match",
        ),
        (
            "none",
            {"layout": "separate"},
            "layout_mismatch",
            "shows the none layout (no flag output)",
        ),
    ],
    ids=["not_the_flag", "no_flag", "flag_of_another_layout", "flag_with_none", "no_flag_layout"],
)
def test_forced_flag_or_layout_that_contradicts_the_model(
    spec: str, opts: dict, code: str, says: str
) -> None:
    """Each forced option is checked against what running the forced branches shows; a named flag
    fixes the layout, so a layout option that disagrees with it is refused too."""
    _, a, paths = settle(build(Spec(layout=spec)), **opts)
    assert [p.code for p in a.problems] == [code]
    assert says in a.problems[0].message
    assert paths == {}
    a = analyze(build(Spec(nhwc=True)), "g", input_layout="NCHW")
    assert any("--input-layout=NCHW does not match input 'image'" in p.message for p in a.problems)


def test_unsupported_opset() -> None:
    a = analyze(build(Spec(opset=9)), "g")
    assert "unsupported_opset" in [p.code for p in a.problems]


def test_reference_model_exposes_the_score_and_decision() -> None:
    m = build(Spec())
    a = analyze(m, "g")
    feeds = {"image": np.ones((1, 3, 4, 4), np.float32)}
    for t, exits in ((0.0, True), (1.0, False)):
        out = _run(reference_model(m, a), {**feeds, "threshold": np.array([t], np.float32)})
        assert 0.1 <= float(out[SCORE_OUTPUT]) <= 1.0
        assert bool(out[EXITS_OUTPUT]) is exits


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


# ---- the structure verdict covers what the backends will need (issue 13) ----


def test_branches_returning_different_types_are_refused() -> None:
    m = build(Spec(layout="separate"))
    if_node = next(n for n in m.graph.node if n.op_type == "If")
    else_g = next(x.g for x in if_node.attribute if x.name == "else_branch")
    else_g.output[1].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    a = analyze(m, "g")
    assert "branch_dtype_mismatch" in [p.code for p in a.problems]
    assert "float32" in a.explain() and "float16" in a.explain()


def test_an_if_inside_a_loop_body_is_named_not_called_traced() -> None:
    m = build(Spec())
    g = m.graph
    if_node = next(n for n in g.node if n.op_type == "If")
    g.node.remove(if_node)
    body = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["cond_in"], ["cond_out"]), if_node],
        "body",
        [
            onnx.helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
            onnx.helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
        ],
        [
            onnx.helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
            onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 11]),
        ],
    )
    g.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array(1, np.int64), "trips"),
            onnx.numpy_helper.from_array(np.array(True), "go"),
        ]
    )
    g.node.append(
        onnx.helper.make_node("Loop", ["trips", "go"], ["scanned"], body=body, name="the_loop")
    )
    g.output[0].name = "scanned"
    a = analyze(m, "g")
    assert [p.code for p in a.problems] == ["nested_if"]
    assert "Loop node 'the_loop'" in a.problems[0].message


def test_a_constant_if_holding_another_if_is_refused_once() -> None:
    outer = build(Spec(condition="constant"))
    inner = build(Spec())
    inner_if = next(n for n in inner.graph.node if n.op_type == "If")
    outer_if = next(n for n in outer.graph.node if n.op_type == "If")
    then_g = next(x.g for x in outer_if.attribute if x.name == "then_branch")
    then_g.node.append(inner_if)
    a = analyze(outer, "g")
    assert [p.code for p in a.problems] == ["constant_condition"]
    assert "holds another If" in a.problems[0].message
    assert a.threshold_input is None  # nothing more is read from it, nothing rewritten


def test_an_unbuildable_input_size_is_refused() -> None:
    m = build(Spec())
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, (1, 3, 16384, 16384), strict=True):
        d.dim_value = v
    a = analyze(m, "g")
    assert "input_too_large" in [p.code for p in a.problems]
    assert "3.0 GiB per image" in a.explain()


def test_an_initializer_without_its_data_is_refused() -> None:
    m = build(Spec())
    w = next(t for t in m.graph.initializer if t.name == "w_exit")
    w.ClearField("raw_data")
    a = analyze(m, "g")
    assert [p.code for p in a.problems] == ["missing_data"]
    assert "'w_exit'" in a.problems[0].message
