"""Turn a zoo export into the kinds of early-exit ONNX users bring (for self-tests).

``tf2onnx_like``: NHWC input followed by a ``Transpose`` (what tf2onnx emits for Keras models), the
threshold baked in as a constant (``ReduceMax -> Greater(0.9) -> If``), flag concatenated.
``constant_condition``: the ``If`` condition replaced by a constant (what constant folding leaves).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def tf2onnx_like(model: onnx.ModelProto, threshold: float = 0.9) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    image = next(i for i in g.input if i.name == "input")
    image.name = "input_1"  # Keras-style name
    dims = image.type.tensor_type.shape.dim
    n, c, h, w = (d.dim_value for d in dims)
    for d, v in zip(dims, (n, h, w, c), strict=True):
        d.dim_value = v
    g.node.insert(
        0,
        helper.make_node(
            "Transpose",
            ["input_1"],
            ["input"],
            perm=[0, 3, 1, 2],
            name="StatefulPartitionedCall/transpose",
        ),
    )
    thr = next(i for i in g.input if i.name == "threshold")
    g.input.remove(thr)
    g.initializer.append(numpy_helper.from_array(np.array([threshold], np.float32), "threshold"))
    m.graph.name = "tf2onnx"
    onnx.checker.check_model(m)
    return m


def constant_condition(model: onnx.ModelProto, value: bool = False) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.op_type == "If")
    m.graph.initializer.append(numpy_helper.from_array(np.array(value), "folded_cond"))
    node.input[0] = "folded_cond"
    return m
