"""Small hand-built early-exit CNNs (onnx.helper), shaped like the zoo's exports, for self-tests.

Unlike ``tests/graphs.py`` (4x4 toys for the discovery's variations) these are real little CNNs,
CIFAR-sized, that TensorRT's parser and builder accept: a Conv trunk, an exit head outside the
``If`` (its softmax decides the exit), and an ``If`` whose then-branch is the exit and whose
else-branch runs a deeper Conv block. Seeded weights; opset 17; IR 8.

Inputs: ``input`` [1,3,32,32] float32 (``nhwc=True``: [1,32,32,3] + Transpose), ``threshold`` [1].
Outputs: ``concat``: ``output`` [1,11] (last column = exit flag); ``separate``: ``probs`` [1,10]
and ``exit_flag`` [1,1]. Flag: 0.0 = left at the exit, 1.0 = ran the deep branch.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["CLASSES", "custom_op_graph", "early_exit_graph", "no_if_graph"]

CLASSES = 10
OPSET = 17
_TRUNK, _DEEP = 8, 16  # channels


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def he(*shape: int) -> np.ndarray:
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "trunk_w": he(_TRUNK, 3, 3, 3),
        "trunk_b": (rng.standard_normal(_TRUNK) * 0.1).astype(np.float32),
        # exit head: wide logits so that max(softmax) spreads over (0.1, 1) across inputs
        "exit_w": (rng.standard_normal((_TRUNK, CLASSES)) * 4.0).astype(np.float32),
        "exit_b": np.zeros(CLASSES, np.float32),
        "deep_w": he(_DEEP, _TRUNK, 3, 3),
        "deep_b": (rng.standard_normal(_DEEP) * 0.1).astype(np.float32),
        "deep_fc_w": (rng.standard_normal((_DEEP, CLASSES)) * 2.0).astype(np.float32),
        "deep_fc_b": np.zeros(CLASSES, np.float32),
    }


def _stem(nhwc: bool, w: dict[str, np.ndarray]) -> tuple[list, list, list, str]:
    """Input, trunk and exit head; returns (nodes, inputs, initializers, trunk tensor name)."""
    shape = [1, 32, 32, 3] if nhwc else [1, 3, 32, 32]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    nodes = []
    x = "input"
    if nhwc:
        nodes.append(
            helper.make_node("Transpose", [x], ["input_nchw"], name="to_nchw", perm=[0, 3, 1, 2])
        )
        x = "input_nchw"
    nodes += [
        helper.make_node(
            "Conv", [x, "trunk_w", "trunk_b"], ["trunk_conv"], name="trunk_conv", pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["trunk_conv"], ["trunk"], name="trunk_relu"),
    ]
    return nodes, inputs, inits, "trunk"


def _deep_nodes(trunk: str, prefix: str) -> tuple[list, str]:
    """Conv + pooling + Gemm + Softmax on ``trunk``; returns (nodes, probs tensor name)."""
    p = prefix
    nodes = [
        helper.make_node("Conv", [trunk, "deep_w", "deep_b"], [p + "conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [p + "conv"], [p + "relu"]),
        helper.make_node(
            "MaxPool", [p + "relu"], [p + "pool"], kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("GlobalAveragePool", [p + "pool"], [p + "gap"]),
        helper.make_node("Flatten", [p + "gap"], [p + "feats"], axis=1),
        helper.make_node("Gemm", [p + "feats", "deep_fc_w", "deep_fc_b"], [p + "logits"]),
        helper.make_node("Softmax", [p + "logits"], [p + "probs"], axis=1),
    ]
    return nodes, p + "probs"


def _flag(name: str, value: float) -> onnx.NodeProto:
    t = helper.make_tensor(name + "_value", TensorProto.FLOAT, [1, 1], [value])
    return helper.make_node("Constant", [], [name], value=t)


def _branch(name: str, probs_nodes: list, probs: str, flag: float, layout: str) -> onnx.GraphProto:
    """A branch subgraph: ``probs`` plus the flag, as one [1,11] output or two outputs.

    Every output is produced by its own final node and named uniquely (``<name>_...``), the shape
    TensorRT 8.6's parser needs (see trt-api-facts.md §9.2)."""
    p = name + "_"
    nodes = [*probs_nodes, _flag(p + "flag_c", flag)]
    if layout == "concat":
        nodes.append(helper.make_node("Concat", [probs, p + "flag_c"], [p + "out"], axis=1))
        outs = [helper.make_tensor_value_info(p + "out", TensorProto.FLOAT, [1, CLASSES + 1])]
    else:
        nodes += [
            helper.make_node("Identity", [probs], [p + "probs_out"]),
            helper.make_node("Identity", [p + "flag_c"], [p + "flag_out"]),
        ]
        outs = [
            helper.make_tensor_value_info(p + "probs_out", TensorProto.FLOAT, [1, CLASSES]),
            helper.make_tensor_value_info(p + "flag_out", TensorProto.FLOAT, [1, 1]),
        ]
    for i, n in enumerate(nodes):
        n.name = n.name or f"{p}{n.op_type.lower()}_{i}"
    return helper.make_graph(nodes, name, [], outs)


def _outputs(layout: str) -> list:
    if layout == "concat":
        return [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, CLASSES + 1])]
    return [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, CLASSES]),
        helper.make_tensor_value_info("exit_flag", TensorProto.FLOAT, [1, 1]),
    ]


def _model(nodes: list, inputs: list, outputs: list, inits: list, name: str) -> onnx.ModelProto:
    for i, n in enumerate(nodes):
        n.name = n.name or f"{n.op_type.lower()}_{i}"
    used = {t for n in nodes for t in n.input} | {
        t for n in nodes for a in n.attribute if a.g.node for b in a.g.node for t in b.input
    }
    inits = [t for t in inits if t.name in used]  # no unused initializers (onnxruntime warns)
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = "exitgate-tests"
    onnx.checker.check_model(model, full_check=True)
    return model


def early_exit_graph(
    layout: str = "concat",
    threshold_as_input: bool = True,
    const_condition: bool = False,
    nhwc: bool = False,
    seed: int = 0,
    threshold: float = 0.9,
) -> onnx.ModelProto:
    """A BranchyNet-style CNN with a real ONNX ``If``.

    ``threshold_as_input=False`` bakes ``threshold`` in as an initializer. ``const_condition=True``
    makes the If's condition an initializer (True: always exit) -- the shape of a model whose exit
    a tracer or constant folder froze; TensorRT's parser folds such an If to one branch.
    """
    if layout not in ("concat", "separate"):
        raise ValueError(f"layout must be 'concat' or 'separate', got {layout!r}")
    w = _weights(seed)
    nodes, inputs, inits, trunk = _stem(nhwc, w)
    nodes += [
        helper.make_node("GlobalAveragePool", [trunk], ["exit_gap"], name="exit_gap"),
        helper.make_node("Flatten", ["exit_gap"], ["exit_feats"], name="exit_flatten", axis=1),
        helper.make_node(
            "Gemm", ["exit_feats", "exit_w", "exit_b"], ["exit_logits"], name="exit_fc"
        ),
        helper.make_node("Softmax", ["exit_logits"], ["exit_probs"], name="exit_softmax", axis=1),
    ]
    if threshold_as_input:
        inputs.append(helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1]))
    else:
        inits.append(numpy_helper.from_array(np.array([threshold], np.float32), "threshold"))
    if const_condition:
        inits.append(numpy_helper.from_array(np.array(True), "exit_cond"))
    else:
        nodes += [  # ReduceMax -> [], Greater with [1] -> [1], Squeeze -> the scalar If wants
            helper.make_node(
                "ReduceMax", ["exit_probs"], ["confidence"], name="confidence", keepdims=0
            ),
            helper.make_node("Greater", ["confidence", "threshold"], ["exit_cmp"], name="exit_cmp"),
            helper.make_node("Squeeze", ["exit_cmp"], ["exit_cond"], name="exit_cond"),
        ]
    exit_nodes = [helper.make_node("Identity", ["exit_probs"], ["exit_branch_probs"])]
    deep_nodes, deep_probs = _deep_nodes(trunk, "deep_")
    then_g = _branch("exit_branch", exit_nodes, "exit_branch_probs", 0.0, layout)
    else_g = _branch("deep_branch", deep_nodes, deep_probs, 1.0, layout)
    outputs = _outputs(layout)
    nodes.append(
        helper.make_node(
            "If",
            ["exit_cond"],
            [o.name for o in outputs],
            name="early_exit_if",
            then_branch=then_g,
            else_branch=else_g,
        )
    )
    return _model(nodes, inputs, outputs, inits, f"early_exit_{layout}")


def no_if_graph(layout: str = "concat", nhwc: bool = False, seed: int = 0) -> onnx.ModelProto:
    """The traced-away exit: trunk -> deep branch in a straight line, flag a constant 1.0, no
    ``threshold`` input (what the legacy tracer exports from a Python ``if``)."""
    w = _weights(seed)
    nodes, inputs, inits, trunk = _stem(nhwc, w)
    deep_nodes, probs = _deep_nodes(trunk, "deep_")
    nodes += [*deep_nodes, _flag("flag_c", 1.0)]
    if layout == "concat":
        nodes.append(helper.make_node("Concat", [probs, "flag_c"], ["output"], axis=1))
    else:
        nodes += [
            helper.make_node("Identity", [probs], ["probs"]),
            helper.make_node("Identity", ["flag_c"], ["exit_flag"]),
        ]
    return _model(nodes, inputs, _outputs(layout), inits, f"no_if_{layout}")


def custom_op_graph(op_type: str = "ExitgateMystery", node_name: str = "mystery_node"):
    """A valid ONNX model with one node of an unknown custom-domain op (parsers must reject it)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 32, 32])
    nodes = [
        helper.make_node("Relu", ["input"], ["relu_out"], name="relu_0"),
        helper.make_node(op_type, ["relu_out"], ["output"], name=node_name, domain="exitgate.test"),
    ]
    graph = helper.make_graph(nodes, "custom_op", [x], [y])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("exitgate.test", 1)],
    )
    model.ir_version = 8
    return model
