"""ONNX export of the zoo: a real data-dependent ``If`` at opset 17, and the traced negative control.

``torch.cond`` through the current (dynamo) exporter gives a real ``If`` whose condition is computed
from the input and whose ``threshold`` stays a runtime input. The exporter emits opset 18 and its down
conversion to 17 (the newest opset TensorRT 8.6 on JetPack 6.0 parses) stops at ``Reduce*`` nodes
inside ``If`` branches whose ``axes`` constant lives in the outer graph; we copy such constants into
the branch (a pure, semantics-preserving move) and then let ``onnx.version_converter`` do the
conversion. The result is checked with ``onnx.checker`` in full mode.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx

from ._io import atomic_write_bytes

__all__ = ["OPSET", "export_early_exit", "export_plain", "export_traced_control", "to_opset"]

OPSET = 17
_REDUCE_OPS = {
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
}


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = node.attribute[0].t
    return consts


def _localize_reduce_axes(graph: onnx.GraphProto, outer: dict[str, onnx.TensorProto]) -> None:
    """Copy outer-scope ``axes`` constants of Reduce* nodes into each subgraph that uses them."""
    scope = {**outer, **_constants(graph)}
    local = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type in _REDUCE_OPS and len(node.input) > 1 and node.input[1]:
            axes = node.input[1]
            if axes not in local and axes in scope:
                copy = onnx.TensorProto()
                copy.CopyFrom(scope[axes])
                copy.name = axes
                graph.initializer.append(copy)
                local.add(axes)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _localize_reduce_axes(attr.g, scope)


def _drop_default_noop_attr(graph: onnx.GraphProto) -> None:
    """The converter keeps ``noop_with_empty_axes=0`` (opset 18) on Reduce* nodes; before 18 only
    ReduceSum knows it. Dropping it is exact when it holds the default 0."""
    for node in graph.node:
        if node.op_type in _REDUCE_OPS - {"ReduceSum"}:
            for attr in list(node.attribute):
                if attr.name == "noop_with_empty_axes":
                    if attr.i != 0:
                        raise ValueError(
                            f"node {node.name!r} ({node.op_type}) uses noop_with_empty_axes=1, "
                            "which has no equivalent before opset 18"
                        )
                    node.attribute.remove(attr)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _drop_default_noop_attr(attr.g)


def to_opset(model: onnx.ModelProto, opset: int = OPSET) -> onnx.ModelProto:
    """Convert an exporter's model to ``opset`` (default 17) and check it."""
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current != opset:
        for attr_graph in (a.g for n in model.graph.node for a in n.attribute if a.type == 5):
            _localize_reduce_axes(attr_graph, _constants(model.graph))
        model = onnx.version_converter.convert_version(model, opset)
        if opset < 18:
            _drop_default_noop_attr(model.graph)
    onnx.checker.check_model(model, full_check=True)
    return model


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings to stdout/stderr; keep the test log readable."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _example_inputs():
    import torch

    return torch.zeros(1, 3, 32, 32), torch.tensor([0.5], dtype=torch.float32)


def _dynamo_export(module, args, input_names, output_names) -> onnx.ModelProto:
    import torch

    with _quiet():
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            opset_version=18,
            input_names=input_names,
            output_names=output_names,
            optimize=True,
            verify=False,
        )
    model = program.model_proto
    return to_opset(model, OPSET)


def output_names_for(layout: str) -> list[str]:
    return ["output"] if layout == "concat" else ["probs", "exit_flag"]


def export_early_exit(backbone, layout: str) -> onnx.ModelProto:
    """Export ``EarlyExitNet(backbone, layout)`` with a real ``If`` (torch.cond, dynamo)."""
    from .nets import EarlyExitNet

    module = EarlyExitNet(backbone, layout)
    return _dynamo_export(
        module, _example_inputs(), ["input", "threshold"], output_names_for(layout)
    )


def export_plain(backbone) -> onnx.ModelProto:
    """Export the no-exit twin (trunk + deep branch), output ``probs``."""
    from .nets import PlainNet

    return _dynamo_export(PlainNet(backbone), (_example_inputs()[0],), ["input"], ["probs"])


def export_traced_control(backbone, example: np.ndarray | None = None) -> onnx.ModelProto:
    """Export the forum user's model the way they did: legacy tracing of a Python ``if``.

    The branch taken for ``example`` is frozen into the graph, and ``threshold`` disappears.
    """
    import torch

    from .nets import TracedExitNet

    x, t = _example_inputs()
    if example is not None:
        x = torch.from_numpy(np.asarray(example, np.float32).reshape(1, 3, 32, 32))
    buf = io.BytesIO()
    with _quiet():
        torch.onnx.export(
            TracedExitNet(backbone).eval(),
            (x, t),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input", "threshold"],
            output_names=["output"],
        )
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    return atomic_write_bytes(path, model.SerializeToString())
