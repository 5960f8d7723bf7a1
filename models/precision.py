"""fp16 and int8 (explicit Q/DQ) ONNX artifacts of early-exit models, converted inside BOTH branches.

TensorRT 11 and TensorRT-RTX build strongly typed networks: the precision an engine runs in is the
precision written in the ONNX (fp16 types, Q/DQ nodes), not a builder flag. This module writes those
ONNX files; ``models.audit`` checks per branch that the conversion really reached the deep branch.

**fp16** (``to_fp16``): ``onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)``,
a maintained converter that walks ``If`` subgraphs itself. Inputs and outputs stay float32 (Casts at
the boundary), so ``threshold`` remains a float32 input. By default the few nodes that only compute
the exit decision from the exit head's probabilities (``ReduceMax``, the threshold's ``Reshape``,
``Greater``) are kept in fp32 through the converter's ``node_block_list``: in fp16 the threshold
itself is rounded (0.9 -> 0.89990234), so an input whose confidence lies between the two would
exit in fp16 and not in fp32 for no reason but the compare; in fp32 the user's threshold is compared
as given and the decision differs from the fp32 reference only by the probabilities' own fp16 error.
The cost is one Cast of C values. Everything else, the exit head's Softmax included, runs in fp16.

**int8** (``to_int8_qdq``): onnxruntime's ``quantize_static`` (QDQ format, symmetric int8
activations and per-channel weights, zero point 0, ``QuantizeBias=False`` because TensorRT's
DequantizeLinear accepts no int32 input). Why the split route: measured with onnxruntime 1.32,
neither the default nor ``EnableSubgraph=True`` puts any Q/DQ inside ``If`` branches in QDQ format
(the deep branch stays fp32; the test suite keeps a negative control that shows it), and NVIDIA
ModelOpt builds on the same quantizer. A hand-written Q/DQ inserter would be a second quantizer to
maintain. So the model is split at its ``If``:

1. the main graph (trunk + exit head) becomes a model whose outputs are the condition and the
   outer-scope tensors the branches read;
2. each branch becomes a standalone model whose inputs are those outer tensors (weights it reads
   from the outer scope are copied in as its own initializers);
3. the fp32 main model is run on ALL calibration images to produce the branch inputs; the branches
   read the same outer tensors whichever branch is taken, so both get the full calibration set;
4. each part is quantized by ``quantize_static`` with the same settings;
5. the ``If`` is re-assembled with the quantized branch graphs as its subgraphs (their weights and
   scales live in the subgraph; names that collide with the main graph's are prefixed).

The result is checked with ``onnx.checker``; the self-tests run it in onnxruntime, compare its
top-1 with fp32 and parse it with TensorRT-RTX.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from . import graph as G
from ._io import dist_version, sha256_file
from .artifacts import ArtifactCache
from .audit import COMPUTE_OPS, ELEM_TYPES, branch_inputs
from .calibration import DataError, calibration_hash, validate_images

__all__ = [
    "PRECISIONS",
    "QDQ_EXTRA_OPTIONS",
    "RECIPE_VERSION",
    "Fp16Settings",
    "Int8Settings",
    "converter_versions",
    "decision_nodes",
    "fp16_artifact",
    "int8_artifact",
    "quantize_qdq",
    "to_fp16",
    "to_int8_qdq",
]

PRECISIONS = tuple(ELEM_TYPES)  # ("fp32", "fp16", "int8"): the precisions exitgate tests

log = logging.getLogger("exitgate.precision")

#: bump when the conversion code changes what it writes (part of every cache key)
RECIPE_VERSION = 1

#: TensorRT wants symmetric Q/DQ (zero point 0) and no int32 bias DequantizeLinear. Besides these,
#: the outputs of the quantized ops are not quantized (``OpTypesToExcludeOutputQuantization``):
#: Q/DQ go on the inputs and weights of Conv/Gemm/MatMul only, TensorRT's recommended placement
#: ("quantize all inputs of weighted operations; by default do not quantize their outputs"), which
#: also keeps the exit head's logits, and so the exit decision, out of int8.
QDQ_EXTRA_OPTIONS: dict[str, Any] = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
}

# Ops that may sit between the exit head's probabilities and the If condition (kept in fp32).
_DECISION_OPS = {
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "Equal",
    "Not",
    "And",
    "Or",
    "Xor",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Cast",
    "Softmax",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Abs",
    "Log",
    "Exp",
    "Max",
    "Min",
}
_CLAMP_WARNING = "will be truncated to"  # onnxconverter_common: a value outside fp16's range


@dataclass(frozen=True)
class Fp16Settings:
    """``decision_fp32``: keep the exit decision (ReduceMax/Greater/threshold) in fp32."""

    decision_fp32: bool = True

    def key(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Int8Settings:
    """What ``quantize_static`` is asked to do besides the fixed TensorRT requirements."""

    calibrate_method: str = "MinMax"  # MinMax | Entropy | Percentile | Distribution
    op_types: tuple[str, ...] = COMPUTE_OPS

    def __post_init__(self) -> None:
        from onnxruntime.quantization import CalibrationMethod

        if self.calibrate_method not in CalibrationMethod.__members__:
            raise ValueError(
                f"unknown calibrate_method {self.calibrate_method!r}: expected one of "
                f"{list(CalibrationMethod.__members__)}"
            )

    def key(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "op_types": list(self.op_types),
            "extra": QDQ_EXTRA_OPTIONS,
            "outputs_quantized": False,
            "per_channel": True,
            "format": "QDQ",
            "types": "QInt8/QInt8",
        }


def converter_versions() -> dict[str, str]:
    """Versions of the tools whose output the artifacts are (part of their cache keys)."""
    dists = ("onnx", "onnxruntime", "onnxconverter-common", "numpy")
    return {d: dist_version(d) or "absent" for d in dists}


def _named_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose main-graph nodes all have unique names (the converters address nodes by name)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    used = {n.name for n in out.graph.node if n.name}
    for i, node in enumerate(out.graph.node):
        if not node.name:
            name = f"exitgate_{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
    return out


def decision_nodes(graph: onnx.GraphProto, if_name: str | None = None) -> list[str]:
    """Names of the main-graph nodes that only compute the ``If`` condition from tensors shared
    with the branches (walking back from the condition through cheap ops, e.g. ReduceMax, Greater,
    the threshold's Reshape). Empty when there is no ``If``."""
    if_node = G.find_if(graph, if_name)
    if if_node is None:
        return []
    shared = {n for names in branch_inputs(if_node).values() for n in names}
    producer = {o: n for n in graph.node for o in n.output if o}
    found: dict[str, None] = {}
    stack = [if_node.input[0]]
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if name in shared or node is None or node.op_type not in _DECISION_OPS:
            continue
        if node.name not in found:
            found[node.name] = None
            stack.extend(i for i in node.input if i)
    return list(found)


def _stamp(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def to_fp16(
    model: onnx.ModelProto, settings: Fp16Settings | None = None, if_name: str | None = None
) -> onnx.ModelProto:
    """Strongly typed fp16 ONNX (inputs/outputs float32), converted inside both ``If`` branches."""
    from onnxconverter_common import float16

    settings = settings or Fp16Settings()
    model = _named_copy(model)
    block = decision_nodes(model.graph, if_name) if settings.decision_fp32 else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST),
            node_block_list=block,
        )
    clamped = [w for w in caught if _CLAMP_WARNING in str(w.message)]
    for w in caught:  # anything else is news: pass it on
        if w not in clamped:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if clamped:  # expected for tiny weights: they become fp16's smallest normal value
        log.info("fp16: %d tensors had values clamped to fp16's range", len(clamped))
    _stamp(out, "exitgate.precision", f"fp16 decision_fp32={settings.decision_fp32}")
    onnx.checker.check_model(out)
    return out


# ---- int8 ----
def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _dims(vi: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def _calibration_feeds(model: onnx.ModelProto, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    """One feed per calibration batch: the images (in the model's layout) and neutral values for
    the other inputs (``threshold`` = 0.5: no quantized op depends on it)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    image = next(
        (i for i in inputs if len(_dims(i)) == 4 and i.type.tensor_type.elem_type in float_types),
        None,
    )
    if image is None:
        raise ValueError("the model has no 4-D float image input to calibrate with")
    dims = _dims(image)
    nhwc = dims[3] in (1, 3) and dims[1] not in (1, 3)
    chw = (dims[3], dims[1], dims[2]) if nhwc else tuple(dims[1:])
    if isinstance(images, np.ndarray) and images.ndim == 4 and None in chw:
        chw = tuple(s if s is not None else images.shape[1 + k] for k, s in enumerate(chw))
    validate_images(images, "calibration array", chw)  # type: ignore[arg-type]
    x = np.ascontiguousarray(images.transpose(0, 2, 3, 1)) if nhwc else images
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 1
    if x.shape[0] < batch:
        raise DataError(
            f"calibration array: {x.shape[0]} images, fewer than the model's batch size {batch}"
        )
    others = {}
    for i in inputs:
        if i.name == image.name:
            continue
        dtype = helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
        shape = [d if d else 1 for d in _dims(i)]
        fill = 0.5 if np.issubdtype(dtype, np.floating) else 0
        others[i.name] = np.full(shape, fill, dtype)
    stop = x.shape[0] - x.shape[0] % batch
    return [
        {image.name: np.ascontiguousarray(x[s : s + batch]), **others}
        for s in range(0, stop, batch)
    ]


def quantize_qdq(
    model: onnx.ModelProto,
    feeds: Sequence[dict[str, np.ndarray]],
    settings: Int8Settings | None = None,
) -> onnx.ModelProto:
    """onnxruntime ``quantize_static`` with the TensorRT settings on ONE graph (no If handling:
    on a model with an If this leaves the branches in fp32 -- use ``to_int8_qdq``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    settings = settings or Int8Settings()
    own = onnx.ModelProto()
    own.CopyFrom(model)  # quantize_static moves the weights of the model it is given to files

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        with tempfile.TemporaryDirectory(prefix="exitgate-q-") as tmp:
            out = Path(tmp) / "quantized.onnx"
            quantize_static(
                own,
                out,
                _Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(settings.op_types),
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod[settings.calibrate_method],
                extra_options={
                    **QDQ_EXTRA_OPTIONS,
                    "OpTypesToExcludeOutputQuantization": list(settings.op_types),
                },
            )
            return onnx.load(out)
    finally:
        logging.getLogger().removeFilter(hint)


class _DropPreprocessHint(logging.Filter):
    """onnxruntime logs "Please consider (to run) pre-processing before quantization" on the root
    logger for every call. Its pre-processing (shape inference, graph optimisation) is for models
    that still carry BatchNorm or need symbolic shapes; the zoo's exports need none of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _has_compute(graph: onnx.GraphProto, op_types: Sequence[str]) -> bool:
    return any(
        n.op_type in op_types or any(_has_compute(g, op_types) for _, g in G.subgraphs(n))
        for n in graph.node
    )


@dataclass
class _Split:
    main: onnx.ModelProto  # pre-If nodes; outputs: the condition and the branches' outer tensors
    branches: dict[str, onnx.ModelProto | None]  # standalone; None: nothing to quantize
    post: list[onnx.NodeProto]  # main-graph nodes after the If (kept as they are)


def _value_info(name: str, known: dict[str, onnx.ValueInfoProto]) -> onnx.ValueInfoProto:
    if name in known:
        return known[name]
    raise ValueError(f"cannot split the model at its If: no type known for tensor {name!r}")


def _split(model: onnx.ModelProto, if_node: onnx.NodeProto, op_types: Sequence[str]) -> _Split:
    g = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    ig = inferred.graph
    known = {v.name: v for v in [*ig.input, *ig.value_info, *ig.output]}
    nodes = list(g.node)
    if_out = set(if_node.output)
    post = {id(n) for n in G.downstream(g, if_out)}
    post_idx = {i for i, n in enumerate(nodes) if id(n) in post}
    pre = [n for n in nodes if n is not if_node and id(n) not in post]
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in pre if n.op_type == "Constant"}
    graph_inputs = {i.name for i in g.input}
    reads = branch_inputs(if_node)
    acts = {
        a: [n for n in names if n not in inits and n not in consts] for a, names in reads.items()
    }
    produced = {o for n in pre for o in n.output}
    boundary: dict[str, None] = {if_node.input[0]: None}
    for names in acts.values():
        boundary.update((n, None) for n in names if n not in graph_inputs)
    boundary.update((o.name, None) for o in g.output if o.name in produced)
    used = {n for node in pre for n in node.input} | {
        n for node in pre for _, sg in G.subgraphs(node) for n in G.free_names(sg)
    }
    main_graph = helper.make_graph(
        pre,
        g.name or "main",
        [i for i in g.input if i.name not in inits],
        [_value_info(n, known) for n in boundary],
        [t for t in g.initializer if t.name in used],
    )
    main = helper.make_model(main_graph, opset_imports=model.opset_import)
    main.ir_version = model.ir_version

    inferred_if = next(n for n in ig.node if n.op_type == "If" and set(n.output) == if_out)
    inferred_subs = dict(G.subgraphs(inferred_if))
    branches: dict[str, onnx.ModelProto | None] = {}
    for attr, sub in G.subgraphs(if_node):
        if not _has_compute(sub, op_types):
            branches[attr] = None
            continue
        isub = inferred_subs[attr]
        b_graph = helper.make_graph(
            [*(consts[n] for n in reads[attr] if n in consts), *sub.node],
            f"{g.name or 'main'}_{attr}",
            [_value_info(n, known) for n in acts[attr]],
            list(isub.output),
            [*(inits[n] for n in reads[attr] if n in inits), *sub.initializer],
            value_info=list(isub.value_info),
        )
        bm = helper.make_model(b_graph, opset_imports=model.opset_import)
        bm.ir_version = model.ir_version
        branches[attr] = bm
    return _Split(main, branches, [nodes[i] for i in sorted(post_idx)])


def _fresh(name: str, prefix: str, taken: set[str]) -> str:
    new = f"{prefix}/{name}"
    while new in taken:
        new += "_"
    return new


def _assemble(
    model: onnx.ModelProto,
    if_node: onnx.NodeProto,
    split: _Split,
    qmain: onnx.ModelProto,
    qbranches: dict[str, onnx.ModelProto],
) -> onnx.ModelProto:
    g, qg = model.graph, qmain.graph
    taken = (
        G.defined_names(qg, nested=True)
        | {o for n in split.post for o in n.output}
        | {o.name for o in g.output}
    )
    taken_nodes = G.node_names(qg) | {n.name for n in split.post}
    new_if = onnx.NodeProto()
    new_if.CopyFrom(if_node)
    for attr in new_if.attribute:
        if attr.type != onnx.AttributeProto.GRAPH:
            continue
        sub = onnx.GraphProto()
        if attr.name in qbranches:
            sub.CopyFrom(qbranches[attr.name].graph)
            del sub.input[:]  # the branch reads the outer tensors by name
            sub.name = attr.g.name
        else:
            sub.CopyFrom(attr.g)
        mine = G.defined_names(sub, nested=True)
        mapping = {n: _fresh(n, attr.name, taken | mine) for n in sorted(mine & taken)}
        node_map = {
            n: _fresh(n, attr.name, taken_nodes)
            for n in sorted(G.node_names(sub) & taken_nodes)
            if n
        }
        G.rename(sub, mapping, node_map)
        taken |= G.defined_names(sub, nested=True)
        taken_nodes |= G.node_names(sub)
        attr.g.CopyFrom(sub)

    nodes = [*qg.node, new_if, *split.post]
    # Outer initializers still read by an unquantized branch or a post-If node come back.
    have = {t.name for t in qg.initializer}
    free = G.free_names(helper.make_graph(nodes, "probe", [], []))
    extra = [t for t in g.initializer if t.name in free and t.name not in have]
    graph = helper.make_graph(
        _prune(nodes, {o.name for o in g.output}),
        g.name,
        [i for i in g.input if i.name not in {t.name for t in g.initializer}],
        list(g.output),
        [*qg.initializer, *extra],
        value_info=list(qg.value_info),
    )
    opsets: dict[str, int] = {}
    for m in (qmain, *qbranches.values(), model):
        for o in m.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    out = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    out.ir_version = max(model.ir_version, qmain.ir_version)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    out.metadata_props.extend(model.metadata_props)
    return out


def _prune(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop nodes none of whose outputs is read (e.g. a Constant now copied into a branch)."""
    while True:
        read = set(outputs)
        for n in nodes:
            read.update(n.input)
            for _, sub in G.subgraphs(n):
                read.update(G.free_names(sub))
        keep = [n for n in nodes if any(o in read for o in n.output if o)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep


#: per-channel Q/DQ (DequantizeLinear's ``axis``) exists from opset 13; TensorRT needs it too
QDQ_MIN_OPSET = 13


def _at_least_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` converted up to ``opset`` when it is older (tf2onnx still emits opset 11:
    onnxruntime's per-channel quantizer would write a ``DequantizeLinear`` with an ``axis`` that
    opset 11 does not have, and the checker refuses the artifact)."""
    if G.opset(model) >= opset:
        return model
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # noqa: BLE001 - the converter raises several types
        raise DataError(
            f"int8: the model is opset {G.opset(model)}, and per-channel Q/DQ needs opset "
            f"{opset}; onnx's version converter could not convert it ({exc}). Re-export the model "
            f"with opset_version={opset} or newer"
        ) from None


def to_int8_qdq(
    model: onnx.ModelProto,
    calibration: np.ndarray,
    settings: Int8Settings | None = None,
    if_name: str | None = None,
) -> onnx.ModelProto:
    """Explicit Q/DQ int8 ONNX for TensorRT, quantized inside both ``If`` branches (see module doc).

    ``calibration``: float32 NCHW images (``models.calibration.calibration_images``); NHWC models
    get them transposed.
    """
    settings = settings or Int8Settings()
    model = _named_copy(_at_least_opset(model, QDQ_MIN_OPSET))
    feeds = _calibration_feeds(model, calibration)
    if_node = G.find_if(model.graph, if_name)
    if if_node is None:
        out = quantize_qdq(model, feeds, settings)
    else:
        split = _split(model, if_node, settings.op_types)
        sess = _session(split.main)
        names = [o.name for o in split.main.graph.output]
        outer = [dict(zip(names, sess.run(names, f), strict=True)) for f in feeds]
        qmain = quantize_qdq(split.main, feeds, settings)
        qbranches = {}
        for attr, bm in split.branches.items():
            if bm is None:
                continue
            wanted = [i.name for i in bm.graph.input]
            bfeeds = [
                {n: f[n] if n in f else o[n] for n in wanted}
                for f, o in zip(feeds, outer, strict=True)
            ]
            qbranches[attr] = quantize_qdq(bm, bfeeds, settings)
        out = _assemble(model, if_node, split, qmain, qbranches)
    _stamp(out, "exitgate.precision", f"int8-qdq split-at-if {settings.calibrate_method}")
    onnx.checker.check_model(out)
    return out


# ---- cached artifacts ----
def fp16_artifact(
    cache: ArtifactCache,
    onnx_path: str | os.PathLike[str],
    settings: Fp16Settings | None = None,
    if_name: str | None = None,
) -> Path:
    """The fp16 ONNX of ``onnx_path``, built once per (source bytes, settings, converter versions)."""
    settings = settings or Fp16Settings()
    src = Path(onnx_path)
    key = {
        "source_sha256": sha256_file(src),
        "converter": "onnxconverter_common.float16.convert_float_to_float16",
        "settings": settings.key(),
        "versions": converter_versions(),
        "recipe": RECIPE_VERSION,
    }
    return cache.get_or_build(
        "fp16_onnx",
        {**key, "if": if_name},
        lambda: to_fp16(onnx.load(src), settings, if_name).SerializeToString(),
        ".onnx",
    ).path


def int8_artifact(
    cache: ArtifactCache,
    onnx_path: str | os.PathLike[str],
    calibration: np.ndarray,
    settings: Int8Settings | None = None,
    if_name: str | None = None,
) -> Path:
    """The int8 Q/DQ ONNX of ``onnx_path``, built once per (source bytes, calibration set,
    settings, converter versions)."""
    settings = settings or Int8Settings()
    src = Path(onnx_path)
    key = {
        "source_sha256": sha256_file(src),
        "calibration_sha256": calibration_hash(calibration),
        "converter": "onnxruntime.quantization.quantize_static (split at If)",
        "settings": settings.key(),
        "versions": converter_versions(),
        "recipe": RECIPE_VERSION,
    }

    def build() -> bytes:
        return to_int8_qdq(onnx.load(src), calibration, settings, if_name).SerializeToString()

    return cache.get_or_build("int8_onnx", {**key, "if": if_name}, build, ".onnx").path
