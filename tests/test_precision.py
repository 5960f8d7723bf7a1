"""fp16 / int8 artifacts: converted inside both If branches, the exit flag still works, the audit
catches an unquantized branch, the cache rebuilds damaged entries, calibration data is checked,
and what TensorRT-RTX's parser accepts is recorded.

The zoo's resnet8 is exported once per session with seeded random weights (structure, not accuracy).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.artifacts import ArtifactCache
from models.audit import audit
from models.calibration import calibration_hash, calibration_images, iter_batches
from models.dataset import DataError, eval_split, train_split
from models.export import export_early_exit, save
from models.precision import (
    QDQ_EXTRA_OPTIONS,
    fp16_artifact,
    int8_artifact,
    quantize_qdq,
    to_int8_qdq,
)
from models.zoo import LAYOUTS, ZOO

# resnet8: trunk 3 Conv; exit head Conv + Gemm; deep branch 6 Conv + Gemm
EXPECTED = {"trunk": "3/3 Conv", "exit": "2/2 Conv/Gemm", "deep": "7/7 Conv/Gemm"}


# ---- session fixtures ----
@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """resnet8 exported with a real If, both flag layouts (random weights, seeded)."""
    torch = pytest.importorskip("torch", reason="the zoo export needs torch (pip install .[zoo])")

    folder = tmp_path_factory.mktemp("zoo")
    out = {}
    for layout in LAYOUTS:
        torch.manual_seed(0)
        model = export_early_exit(ZOO["resnet8"].build().eval(), layout)
        out[layout] = save(model, folder / f"resnet8-{layout}.onnx")
    return out


@pytest.fixture(scope="session")
def calib() -> np.ndarray:
    return calibration_images(n=64)


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ArtifactCache:
    return ArtifactCache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def artifacts(
    zoo_onnx: dict[str, Path], cache: ArtifactCache, calib: np.ndarray
) -> dict[tuple[str, str], Path]:
    out = {}
    for layout, path in zoo_onnx.items():
        out[layout, "fp32"] = path
        out[layout, "fp16"] = fp16_artifact(cache, path)
        out[layout, "int8"] = int8_artifact(cache, path, calib)
    return out


def _session(model: onnx.ModelProto | Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # the exporter leaves unused constants; ORT logs their removal
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _run(sess, images: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and exit flags over ``images`` (batch 1 each), for either layout."""
    t = np.array([threshold], np.float32)
    probs, flags = [], []
    for x in images:
        outs = sess.run(None, {"input": x[None], "threshold": t})
        if len(outs) == 1:  # concat: last column is the flag
            probs.append(outs[0][0, :-1])
            flags.append(outs[0][0, -1])
        else:
            probs.append(outs[0][0])
            flags.append(outs[1].ravel()[0])
    return np.stack(probs), np.array(flags)


def _graphs(graph: onnx.GraphProto, outer: dict | None = None) -> Iterator[tuple]:
    """(graph, visible initializers) for the graph and every subgraph in it."""
    scope = {**(outer or {}), **{t.name: t for t in graph.initializer}}
    yield graph, scope
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, scope)


# ---- fp16 ----
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fp16_is_converted_inside_both_branches(artifacts: dict, layout: str) -> None:
    model = onnx.load(artifacts[layout, "fp16"])
    result = audit(model, "fp16")
    assert result.lines() == [f"{b}: {EXPECTED[b]} in fp16" for b in ("trunk", "exit", "deep")]
    assert not result.left_fp32
    # the interface stays float32, the threshold included
    io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert set(io.values()) == {TensorProto.FLOAT}, io
    # the exit decision is compared in fp32: the threshold reaches Greater without a Cast to fp16
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input]}
    greater = next(n for n in model.graph.node if n.op_type == "Greater")
    assert [types[i] for i in greater.input] == [TensorProto.FLOAT, TensorProto.FLOAT]


# ---- the exit flag at the threshold extremes ----
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_exit_flag_at_threshold_extremes(artifacts: dict, layout: str, precision: str) -> None:
    sess = _session(artifacts[layout, precision])
    images = eval_split(16).x
    _, flags0 = _run(sess, images, 0.0)
    _, flags1 = _run(sess, images, 1.0)
    assert flags0.tolist() == [0.0] * 16, f"{precision}/{layout}: threshold 0 must always exit"
    assert flags1.tolist() == [1.0] * 16, f"{precision}/{layout}: threshold 1 must never exit"


# ---- int8 ----
@pytest.mark.parametrize("layout", LAYOUTS)
def test_int8_qdq_is_what_tensorrt_needs(artifacts: dict, layout: str) -> None:
    model = onnx.load(artifacts[layout, "int8"])
    assert next(o.version for o in model.opset_import if o.domain == "") == 17
    n_dq = n_weight = 0
    for graph, inits in _graphs(model.graph):
        producer = {o: n for n in graph.node for o in n.output}
        for node in graph.node:
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                continue
            zp = numpy_helper.to_array(inits[node.input[2]])
            assert zp.dtype == np.int8 and not zp.any(), f"{node.name}: zero point {zp}"
            if node.op_type == "QuantizeLinear":
                continue
            n_dq += 1
            x = node.input[0]
            if x in inits:  # a weight: int8 (never an int32 bias), per output channel
                n_weight += 1
                w = inits[x]
                assert w.data_type == TensorProto.INT8, f"{node.name}: {w.data_type}"
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                scale = numpy_helper.to_array(inits[node.input[1]])
                assert scale.shape == (w.dims[axis],) and w.dims[axis] > 1, node.name
            else:  # an activation: fed by an int8 QuantizeLinear
                assert producer[x].op_type == "QuantizeLinear", node.name
    assert n_weight == 12 and n_dq == 22, (n_weight, n_dq)
    result = audit(model, "int8")
    assert result.lines() == [f"{b}: {EXPECTED[b]} in int8" for b in ("trunk", "exit", "deep")]
    assert result["deep"].converted > 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_int8_top1_agrees_with_fp32(artifacts: dict, layout: str) -> None:
    images = eval_split(128).x
    ref, cand = _session(artifacts[layout, "fp32"]), _session(artifacts[layout, "int8"])
    for threshold in (0.0, 1.0):  # the exit head's answers, then the deep branch's
        p_ref, _ = _run(ref, images, threshold)
        p_int8, _ = _run(cand, images, threshold)
        agree = float((p_ref.argmax(1) == p_int8.argmax(1)).mean())
        assert agree >= 0.9, f"{layout} threshold {threshold}: int8 top-1 agrees on {agree:.1%}"


def test_audit_catches_branches_left_in_fp32(zoo_onnx: dict, calib: np.ndarray) -> None:
    """Negative control: plain quantize_static on the unsplit model quantizes the main graph only."""
    model = onnx.load(zoo_onnx["concat"])
    feeds = [{"input": x[None], "threshold": np.array([0.5], np.float32)} for x in calib[:16]]
    naive = quantize_qdq(model, feeds)
    result = audit(naive, "int8")
    assert result.lines() == [
        "trunk: 3/3 Conv in int8",
        "exit: 2/2 Conv/Gemm in int8",
        "deep: 0/7 Conv/Gemm in int8 (left in fp32)",
    ]
    assert result["deep"].left_fp32 and result.left_fp32 == ["deep"]


def test_audit_sections(zoo_onnx: dict) -> None:
    model = onnx.load(zoo_onnx["separate"])
    fp32 = audit(model, "fp32")
    assert [(b.total, b.converted) for b in fp32.branches.values()] == [(3, 3), (2, 2), (7, 7)]
    # the exit branch is a parameter: called the other way round, the deep convs count as "exit"
    # and the exit head, read by the then-branch now taken for the deep one, as trunk
    swapped = audit(model, "fp32", exit_branch="else_branch")
    assert [b.total for b in swapped.branches.values()] == [5, 7, 0]
    # a model without If is all trunk
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    plain = helper.make_model(
        helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"])],
            "plain",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [w],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    no_if = audit(plain, "fp16")
    assert not no_if.has_if
    assert no_if.lines() == [
        "trunk: 0/1 Conv in fp16 (left in fp32)",
        "exit: 0/0 Conv/Gemm/MatMul in fp16",
        "deep: 0/0 Conv/Gemm/MatMul in fp16",
    ]


# ---- caching ----
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_damaged_cached_artifact_is_rebuilt(
    zoo_onnx: dict, calib: np.ndarray, tmp_path: Path, precision: str
) -> None:
    cache = ArtifactCache(tmp_path)
    kind = f"{precision}_onnx"

    def get() -> Path:
        if precision == "fp16":
            return fp16_artifact(cache, zoo_onnx["concat"])
        return int8_artifact(cache, zoo_onnx["concat"], calib[:16])

    first = get()
    good = first.read_bytes()
    assert get() == first and cache.builds[kind] == 1  # served from the cache
    first.write_bytes(good[: len(good) // 2])  # truncated, e.g. by a crash or a full disk
    again = get()
    assert cache.builds[kind] == 2, "the damaged entry was used instead of rebuilt"
    assert again == first and again.read_bytes() == good
    onnx.checker.check_model(onnx.load(again))


def test_int8_cache_key_follows_the_calibration_data(
    zoo_onnx: dict, calib: np.ndarray, tmp_path: Path
) -> None:
    cache = ArtifactCache(tmp_path)
    a = int8_artifact(cache, zoo_onnx["concat"], calib[:8])
    b = int8_artifact(cache, zoo_onnx["concat"], calib[8:16])
    assert a != b and cache.builds["int8_onnx"] == 2


# ---- calibration data ----
def test_default_calibration_set_is_a_seeded_train_subset(calib: np.ndarray) -> None:
    assert calib.shape == (64, 3, 32, 32) and calib.dtype == np.float32
    again = calibration_images(n=64)
    assert calibration_hash(again) == calibration_hash(calib)
    train = train_split().x.reshape(6000, -1)
    rows = {r.tobytes() for r in train}
    assert all(x.reshape(-1).tobytes() in rows for x in calib)
    assert calibration_hash(calibration_images(n=64, seed=1)) != calibration_hash(calib)
    batches = list(iter_batches(calib[:10], 4))
    assert [b.shape[0] for b in batches] == [4, 4]
    assert all(b.flags.c_contiguous and b.dtype == np.float32 for b in batches)
    assert [b.shape[0] for b in iter_batches(calib[:10], 4, drop_last=False)] == [4, 4, 2]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((4, 3, 16, 16), np.float32),
            "{p}: expected images of shape (N,3,32,32) or (N,32,32,3), got (4, 3, 16, 16)",
        ),
        (
            np.zeros((4, 3, 32, 32), np.int32),
            "{p}: dtype int32 is not supported (use uint8 or float32)",
        ),
        (
            np.zeros((4, 3, 32), np.float32),
            "{p}: expected 4-D images (N,3,32,32) or (N,32,32,3), got shape (4, 3, 32)",
        ),
        (np.zeros((0, 3, 32, 32), np.float32), "{p}: no calibration images (N = 0)"),
    ],
    ids=["shape", "dtype", "rank", "empty"],
)
def test_bad_calibration_file_names_the_file(
    tmp_path: Path, array: np.ndarray, message: str
) -> None:
    p = tmp_path / "cal.npy"
    np.save(p, array)
    with pytest.raises(DataError) as info:
        calibration_images(p)
    assert str(info.value) == message.format(p=p)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((4, 3, 32, 32), np.float64),
            "calibration array: calibration images must be float32 (normalised like the "
            "evaluation data), got float64",
        ),
        (
            np.zeros((4, 3, 16, 16), np.float32),
            "calibration array: calibration images must have shape (N,3,32,32) (float32 NCHW), "
            "got (4, 3, 16, 16)",
        ),
    ],
    ids=["dtype", "shape"],
)
def test_bad_calibration_array_is_a_data_error(
    zoo_onnx: dict, array: np.ndarray, message: str
) -> None:
    with pytest.raises(DataError) as info:
        to_int8_qdq(onnx.load(zoo_onnx["concat"]), array)
    assert str(info.value) == message


# ---- TensorRT-RTX ----
def _rtx_parse_build(data: bytes) -> dict:
    trt = pytest.importorskip(
        "tensorrt_rtx", reason="TensorRT-RTX not installed (pip install .[tensorrt-rtx])"
    )

    class Capture(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity, msg: str) -> None:
            self.messages.append(msg)

    logger = Capture()
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(data)
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    out = {"parsed": ok, "errors": [(e.code(), e.node_name(), e.desc()) for e in errors]}
    if ok:
        layers = [str(network.get_layer(i).type).split(".")[-1] for i in range(network.num_layers)]
        out["layers"] = {t: layers.count(t) for t in set(layers)}
        plan = builder.build_serialized_network(network, builder.create_builder_config())
        out["built"] = plan is not None
    del parser, network, builder  # the parser must outlive the build; then drop them in order
    return out


def _count_ops(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for g, _ in _graphs(model.graph) for n in g.node)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_rtx_parses_and_builds(artifacts: dict, precision: str) -> None:
    """Recorded with tensorrt-rtx 1.7.1 (CPU build, strongly typed): all three parse and build;
    for int8 every Q/DQ, the ones inside the If's deep branch included, becomes a (DE)QUANTIZE
    layer (10 Q + 22 DQ), and the If stays a real conditional."""
    model = onnx.load(artifacts["concat", precision])
    result = _rtx_parse_build(model.SerializeToString())
    assert result["parsed"] and not result["errors"], result["errors"]
    assert result["built"], "build_serialized_network returned None"
    layers = result["layers"]
    assert layers["CONDITION"] == 1 and layers["CONDITIONAL_OUTPUT"] == 1, layers
    if precision == "int8":
        assert layers.get("QUANTIZE") == _count_ops(model, "QuantizeLinear") == 10, layers
        assert layers.get("DEQUANTIZE") == _count_ops(model, "DequantizeLinear") == 22, layers
    else:
        assert "QUANTIZE" not in layers and "DEQUANTIZE" not in layers, layers


def test_rtx_rejects_int32_bias_dequantize(
    zoo_onnx: dict, calib: np.ndarray, tmp_path: Path
) -> None:
    """Why QuantizeBias=False: onnxruntime's default quantizes biases to int32, and TensorRT's
    DequantizeLinear takes only 8-bit (or 4-bit) input. Recorded with tensorrt-rtx 1.7.1."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(zoo_onnx["concat"])
    feeds = iter([{"input": x[None], "threshold": np.array([0.5], np.float32)} for x in calib[:8]])

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict | None:
            return next(feeds, None)

    out = tmp_path / "bias32.onnx"
    options = {k: v for k, v in QDQ_EXTRA_OPTIONS.items() if k != "QuantizeBias"}
    quantize_static(
        model,
        out,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options=options,
    )
    result = _rtx_parse_build(out.read_bytes())
    assert not result["parsed"]
    code, node, desc = result["errors"][0]
    assert (str(code), node) == (
        "ErrorCode.INVALID_NODE",
        "backbone.exit_head.3.bias_DequantizeLinear",
    )
    assert "input has type Int32 but must have type FP8, FP4, Int4, Int8, or UInt8" in desc
