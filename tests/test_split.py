"""models/split.py: trunk -> (deep if go_deep) reproduces the fused model bitwise (onnxruntime), and
TensorRT's parser/builder accept both halves (the trunk without a conditional).

onnxruntime runs at ORT_ENABLE_EXTENDED: at ORT_ENABLE_ALL its NCHWc layout optimizer rewrites the
main graph and If subgraphs differently, which moves the deep path by 1 ulp (1.2e-7 on resnet8).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from fixtures.backends.base import BackendUnavailable
from fixtures.backends.tensorrt.build import build_plan
from fixtures.backends.tensorrt.compat import import_tensorrt, inspect_onnx
from models.dataset import eval_split
from models.split import GO_DEEP, SplitError, run_split, split_at_if
from models.structure import analyze, load_model
from models.zoo import ZOO, onnx_path
from tests import graphs, onnx_graphs
from tests.graphs import settle

THRESHOLDS = {"exit_always": 0.0, "exit_never": 1.0}


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(names, feeds), strict=True))


def _drivable(model: onnx.ModelProto) -> tuple[onnx.ModelProto, object]:
    model, a, _ = settle(model)
    assert a.ok, a.explain()
    return model, a


def _check_bitwise(
    model: onnx.ModelProto, images: np.ndarray, image_input: str, thresholds: dict[str, float]
) -> dict[str, dict]:
    """Fused vs split on every image at each threshold; returns per-path counts."""
    __tracebackhide__ = True
    model, a = _drivable(model)
    split = split_at_if(model, a)
    fused, trunk, deep = _session(model), _session(split.trunk), _session(split.deep)
    result = {}
    for path, t in thresholds.items():
        went_deep, n = 0, len(images)
        for i, img in enumerate(images):
            feeds = {image_input: img[None], "threshold": np.array([t], np.float32)}
            want = fused(feeds)
            got = run_split(split, trunk, deep, feeds)
            go = float(trunk(feeds)[GO_DEEP].reshape(-1)[0])
            went_deep += go > 0.5
            for name in split.outputs:
                if want[name].dtype != got[name].dtype or not np.array_equal(want[name], got[name]):
                    pytest.fail(
                        f"{path} (t={t}) image {i}: output {name!r} differs: fused "
                        f"{want[name].ravel()[:4]} vs split {got[name].ravel()[:4]} (go_deep {go})",
                        pytrace=False,
                    )
            # the flag the split reports is the decision it took
            flag = (
                got[a.flag_output].reshape(-1)[-1]
                if a.layout == "concat"
                else got[a.flag_output].reshape(-1)[0]
            )
            assert flag == (1.0 if go > 0.5 else 0.0), (path, i, flag, go)
        result[path] = {"n": n, "deep": int(went_deep)}
    if "exit_always" in result:
        assert result["exit_always"]["deep"] == 0
    if "exit_never" in result:
        assert result["exit_never"]["deep"] == result["exit_never"]["n"]
    return result


# ---- zoo ----


@pytest.fixture(scope="module")
def images64() -> np.ndarray:
    return eval_split(64).x


@pytest.mark.parametrize("layout", ["concat", "separate"])
def test_zoo_resnet8_split_is_bitwise(layout: str, images64: np.ndarray) -> None:
    pytest.importorskip("torch", reason="the zoo export needs PyTorch the first time")

    spec = ZOO["resnet8"]
    model = load_model(onnx_path(spec, layout))
    res = _check_bitwise(
        model, images64, "input", {**THRESHOLDS, "exit_default": spec.default_threshold}
    )
    # exit_default must exercise both paths on the dataset, or the check proves little
    assert 0 < res["exit_default"]["deep"] < res["exit_default"]["n"], res


def test_zoo_split_shape(images64: np.ndarray) -> None:
    pytest.importorskip("torch", reason="the zoo export needs PyTorch the first time")

    model = load_model(onnx_path(ZOO["resnet8"], "separate"))
    split = split_at_if(model, analyze(model))
    assert [o.name for o in split.trunk.graph.output][:2] == ["probs", "exit_flag"]
    assert [o.name for o in split.trunk.graph.output][-1] == GO_DEEP
    assert [o.name for o in split.deep.graph.output] == ["probs", "exit_flag"]
    assert split.deep_inputs == split.boundary and split.passthrough == []
    assert not any(n.op_type == "If" for n in split.trunk.graph.node)
    assert not any(n.op_type == "If" for n in split.deep.graph.node)


# ---- hand-built graphs ----


def _cifar(nhwc: bool, n: int = 32) -> np.ndarray:
    x = eval_split(n).x
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x


@pytest.mark.parametrize("layout", ["concat", "separate"])
@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("baked", [False, True], ids=["input_t", "baked_t"])
def test_hand_built_cnn_split_is_bitwise(layout: str, nhwc: bool, baked: bool) -> None:
    model = onnx_graphs.early_exit_graph(layout, threshold_as_input=not baked, nhwc=nhwc)
    res = _check_bitwise(model, _cifar(nhwc), "input", {**THRESHOLDS, "exit_default": 0.9})
    assert res["exit_default"]["n"] == 32


@pytest.mark.parametrize(
    "spec",
    [
        graphs.Spec(),
        graphs.Spec(layout="separate"),
        graphs.Spec(threshold="constant", nhwc=True),
        graphs.Spec(compare="GreaterOrEqual"),
        graphs.Spec(compare="Less"),  # Less(t, conf): mirrored
        graphs.Spec(negate=True),  # Not before the If: the exit is the else branch
        graphs.Spec(negate=True, layout="separate", threshold="constant"),
    ],
    ids=["concat", "separate", "nhwc_baked", "ge", "less", "negated", "negated_sep_baked"],
)
def test_toy_graph_split_is_bitwise(spec: graphs.Spec) -> None:
    rng = np.random.default_rng(1)
    shape = (48, 4, 4, 3) if spec.nhwc else (48, 3, 4, 4)
    images = rng.standard_normal(shape).astype(np.float32)
    model = graphs.build(spec)
    _check_bitwise(model, images, "image", {**THRESHOLDS, "exit_default": 0.5})
    model, a = _drivable(model)
    assert split_at_if(model, a).exit_branch == a.exit_branch


def test_negated_split_takes_the_else_branch_as_exit() -> None:
    model, a = _drivable(graphs.build(graphs.Spec(negate=True)))
    assert a.exit_branch == "else_branch"
    assert split_at_if(model, a).exit_branch == "else_branch"


@pytest.mark.parametrize(
    "spec, code",
    [(graphs.Spec(with_if=False), "no_if"), (graphs.Spec(condition="constant"), "constant")],
)
def test_unsplittable_models_are_refused(spec: graphs.Spec, code: str) -> None:
    model = graphs.build(spec)
    with pytest.raises(SplitError, match="exit"):
        split_at_if(model, analyze(model))


# ---- TensorRT accepts both halves ----


@pytest.fixture(scope="module")
def trt_halves():
    try:
        import_tensorrt()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    model, a = _drivable(
        onnx_graphs.early_exit_graph("concat", threshold_as_input=False, nhwc=True)
    )
    return split_at_if(model, a)


def test_tensorrt_parses_both_halves_trunk_has_no_conditional(trt_halves, record_property) -> None:
    trunk = inspect_onnx(trt_halves.trunk.SerializeToString())
    deep = inspect_onnx(trt_halves.deep.SerializeToString())
    record_property("trt_trunk_layers", trunk["layers"])
    record_property("trt_deep_layers", deep["layers"])
    assert trunk["conditional_layers"] == {
        "CONDITION": 0,
        "CONDITIONAL_INPUT": 0,
        "CONDITIONAL_OUTPUT": 0,
    }, trunk["layers"]
    assert deep["conditional_layers"]["CONDITION"] == 0, deep["layers"]
    assert [o["name"] for o in trunk["outputs"]] == ["output", *trt_halves.boundary, GO_DEEP]
    assert [o["name"] for o in deep["outputs"]] == ["output"]
    assert [i["name"] for i in deep["inputs"]] == trt_halves.boundary


@pytest.mark.slow
@pytest.mark.parametrize("half", ["trunk", "deep"])
def test_tensorrt_builds_both_halves_fp32(trt_halves, half: str) -> None:
    plan = build_plan(getattr(trt_halves, half).SerializeToString(), "fp32", "strong")
    assert len(plan) > 1000
