"""Small hand-built early-exit ONNX graphs with every variation the discovery must handle.

Each graph is tiny (a 4x4 image, MatMul heads) so that thousands can be built and run in seconds:
used by the discovery self-tests and the property-based tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.probe import settle as settle_model
from models.structure import analyze

C = 10


@dataclass(frozen=True)
class Spec:
    layout: str = "concat"  # concat | separate | none (probs only) | scalar (separate, flag [])
    threshold: str = "input"  # input | constant
    threshold_value: float = 0.9
    nhwc: bool = False
    condition: str = "data"  # data | constant | threshold_only
    compare: str = "Greater"  # Greater | GreaterOrEqual | Less (mirrored: Less(t, conf))
    negate: bool = False  # a Not before the If (branches swapped to keep the semantics)
    branch_mismatch: bool = False  # the deep branch returns a different width
    flag_outside: bool = False  # the flag is computed outside the If
    with_if: bool = True
    opset: int = 17
    seed: int = 0
    score: str = "max_softmax"  # max_softmax | max_logit | entropy (exits when entropy < t)
    threshold_via: tuple[str, ...] = ()  # ops between the threshold input and the comparison
    batch: str = "static"  # static | dynamic (symbolic batch dims, different in each branch)


def build(spec: Spec) -> onnx.ModelProto:
    rng = np.random.default_rng(spec.seed)
    w_exit = numpy_helper.from_array((rng.standard_normal((3, C)) * 3).astype(np.float32), "w_exit")
    w_deep = numpy_helper.from_array((rng.standard_normal((3, C)) * 3).astype(np.float32), "w_deep")
    inits = [w_exit, w_deep]
    nodes = []
    n = "batch" if spec.batch == "dynamic" else 1
    shape = [n, 4, 4, 3] if spec.nhwc else [n, 3, 4, 4]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)]
    x = "image"
    if spec.nhwc:
        nodes.append(helper.make_node("Transpose", [x], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    nodes += [
        helper.make_node("ReduceMean", [x], ["pooled4"], axes=[2, 3], keepdims=1),
        helper.make_node("Flatten", ["pooled4"], ["feats"], axis=1),
        helper.make_node("MatMul", ["feats", "w_exit"], ["exit_logits"]),
        helper.make_node("Softmax", ["exit_logits"], ["exit_probs"], axis=1),
    ]
    if spec.score == "entropy":  # BranchyNet: -sum(p log p), exit when low
        nodes += [
            helper.make_node("Log", ["exit_probs"], ["logp"]),
            helper.make_node("Mul", ["exit_probs", "logp"], ["plogp"]),
            helper.make_node("ReduceSum", ["plogp", "ax1"], ["neg_ent"], keepdims=0),
            helper.make_node("Neg", ["neg_ent"], ["conf"]),
        ]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
    else:
        src = "exit_logits" if spec.score == "max_logit" else "exit_probs"
        nodes.append(helper.make_node("ReduceMax", [src], ["conf"], keepdims=0))
    if spec.threshold == "input":
        inputs.append(helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1]))
        thr = "threshold"
        for k, op in enumerate(spec.threshold_via):  # e.g. ReduceMax, Cast, Reshape
            attrs = {"to": TensorProto.FLOAT} if op == "Cast" else {}
            ins = [thr, "scalar_shape"] if op == "Reshape" else [thr]
            if op == "ReduceMax":
                attrs["keepdims"] = 0
            nodes.append(helper.make_node(op, ins, [f"thr_{k}"], **attrs))
            thr = f"thr_{k}"
    else:
        inits.append(numpy_helper.from_array(np.array([spec.threshold_value], np.float32), "thr_c"))
        thr = "thr_c"
    if spec.condition == "constant":
        inits.append(numpy_helper.from_array(np.array(True), "cond"))
    else:
        lhs = "conf" if spec.condition == "data" else thr
        if spec.score == "entropy" and spec.condition == "data":
            nodes.append(helper.make_node("Less", [lhs, thr], ["cmp"]))
        elif spec.compare == "Less":
            nodes.append(helper.make_node("Less", [thr, lhs], ["cmp"]))
        else:
            nodes.append(helper.make_node(spec.compare, [lhs, thr], ["cmp"]))
        nodes.append(helper.make_node("Reshape", ["cmp", "scalar_shape"], ["cmp_s"]))
        inits.append(numpy_helper.from_array(np.array([], np.int64), "scalar_shape"))
        if spec.negate:
            nodes.append(helper.make_node("Not", ["cmp_s"], ["cond"]))
        else:
            nodes.append(helper.make_node("Identity", ["cmp_s"], ["cond"]))
    outputs = []
    if not spec.with_if:  # traced-away exit: always the deep branch
        nodes += [
            helper.make_node("MatMul", ["feats", "w_deep"], ["dl"]),
            helper.make_node("Softmax", ["dl"], ["probs"], axis=1),
        ]
        outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, C])]
        return _model(nodes, inputs, outputs, inits, spec.opset)

    def branch(name: str, deep: bool) -> onnx.GraphProto:
        p = f"br_{name}_"
        width = C + 1 if (deep and spec.branch_mismatch) else C
        bn = []
        if deep:
            w = "w_deep" if width == C else "w_deep_wide"
            bn += [
                helper.make_node("MatMul", ["feats", w], [p + "logits"]),
                helper.make_node("Softmax", [p + "logits"], [p + "probs"], axis=1),
            ]
        else:
            bn.append(helper.make_node("Identity", ["exit_probs"], [p + "probs"]))
        flag = helper.make_tensor(p + "flagv", TensorProto.FLOAT, [1, 1], [1.0 if deep else 0.0])
        bn.append(helper.make_node("Constant", [], [p + "flag"], value=flag))
        outs = []
        bdim = f"{p}n" if spec.batch == "dynamic" else 1
        if spec.layout in ("none", "scalar") and not spec.flag_outside:
            outs.append(
                helper.make_tensor_value_info(p + "probs", TensorProto.FLOAT, [bdim, width])
            )
            if spec.layout == "scalar":
                bn.append(
                    helper.make_node(
                        "Constant",
                        [],
                        [p + "flag0"],
                        value=helper.make_tensor(
                            p + "flag0v", TensorProto.FLOAT, [], [1.0 if deep else 0.0]
                        ),
                    )
                )
                outs.append(helper.make_tensor_value_info(p + "flag0", TensorProto.FLOAT, []))
            return helper.make_graph(bn, name, [], outs)
        if spec.flag_outside:
            outs.append(helper.make_tensor_value_info(p + "probs", TensorProto.FLOAT, [1, width]))
        elif spec.layout == "concat":
            bn.append(helper.make_node("Concat", [p + "probs", p + "flag"], [p + "out"], axis=1))
            outs.append(
                helper.make_tensor_value_info(p + "out", TensorProto.FLOAT, [bdim, width + 1])
            )
        else:
            outs += [
                helper.make_tensor_value_info(p + "probs", TensorProto.FLOAT, [1, width]),
                helper.make_tensor_value_info(p + "flag", TensorProto.FLOAT, [1, 1]),
            ]
        return helper.make_graph(bn, name, [], outs)

    if spec.branch_mismatch:
        inits.append(numpy_helper.from_array(np.zeros((3, C + 1), np.float32), "w_deep_wide"))
    exit_when_true = not spec.negate  # Less is built mirrored, Less(t, conf): also "conf > t"
    then_g, else_g = (branch("exit", False), branch("deep", True))
    if not exit_when_true:
        then_g, else_g = else_g, then_g
    if spec.flag_outside:
        nodes.append(
            helper.make_node("If", ["cond"], ["probs"], then_branch=then_g, else_branch=else_g)
        )
        nodes += [
            helper.make_node("Cast", ["cond"], ["cond_f"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["cond_f", "flag_shape"], ["exit_flag"]),
        ]
        inits.append(numpy_helper.from_array(np.array([1, 1], np.int64), "flag_shape"))
        outputs = [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, C]),
            helper.make_tensor_value_info("exit_flag", TensorProto.FLOAT, [1, 1]),
        ]
    elif spec.layout in ("none", "scalar"):
        names = ["probs"] if spec.layout == "none" else ["probs", "exit_flag"]
        nodes.append(
            helper.make_node("If", ["cond"], names, then_branch=then_g, else_branch=else_g)
        )
        outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [n, C])]
        if spec.layout == "scalar":
            outputs.append(helper.make_tensor_value_info("exit_flag", TensorProto.FLOAT, []))
    elif spec.layout == "concat":
        nodes.append(
            helper.make_node("If", ["cond"], ["output"], then_branch=then_g, else_branch=else_g)
        )
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [n, C + 1])]
    else:
        nodes.append(
            helper.make_node(
                "If", ["cond"], ["probs", "exit_flag"], then_branch=then_g, else_branch=else_g
            )
        )
        outputs = [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, C]),
            helper.make_tensor_value_info("exit_flag", TensorProto.FLOAT, [1, 1]),
        ]
    return _model(nodes, inputs, outputs, inits, spec.opset)


def _model(nodes, inputs, outputs, inits, opset: int) -> onnx.ModelProto:
    for i, n in enumerate(nodes):
        n.name = n.name or f"{n.op_type.lower()}_{i}"
    g = helper.make_graph(nodes, "early_exit", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def settle(model: onnx.ModelProto, default: float = 0.5, n: int = 4, **opts):
    """Static analysis, then :func:`models.probe.settle` (the drivable rewrite and the probe) on
    ``n`` random images, as the suite does them: (drivable model, settled analysis, exit paths)."""
    a = analyze(model, "g", **opts)
    assert a.ok and not a.undetermined, a.explain()
    c, h, w = (int(d) for d in a.image_shape[1:])  # type: ignore[index]
    if a.image_layout == "NHWC":
        h, w, c = c, h, w
    images = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)
    s = settle_model(model, a, list(images), default)
    return s.model, s.analysis, s.paths
