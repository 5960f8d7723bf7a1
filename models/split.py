"""Split an early-exit ONNX model at its ``If`` into two models: the trunk and the deep branch.

``split_at_if(model, analysis)`` works on any model :func:`models.structure.analyze` understands
(zoo exports, hand-built graphs, NHWC inputs, either flag layout, a baked or an input threshold):

- **trunk**: the main graph with the ``If`` replaced by the early-exit branch, inlined. Its outputs
  are the fused model's outputs *as the early exit computes them* (probs + flag 0), the outer-scope
  tensors the deep branch reads (``boundary``), and ``go_deep``: float32 ``[1]``, 1.0 = run the deep
  branch, 0.0 = the exit outputs are final. ``go_deep`` is the If's own condition (negated when the
  exit is the then-branch), so it follows the threshold exactly as the fused model does.
- **deep**: the deep branch as a standalone model. Inputs: ``boundary`` (from the trunk) and any
  graph input the branch reads directly (``passthrough``). Outputs: the fused model's outputs with
  their names and shapes (flag 1), i.e. the flag layout is preserved.

Nodes after the ``If`` (pass-through nodes on its outputs) are kept in both halves. Running
``trunk`` and then, if ``go_deep``, ``deep`` reproduces the fused model (:func:`run_split`).

Pure ``onnx``: no torch, no pytest, no GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from . import graph as G
from .structure import ExitAnalysis

__all__ = ["GO_DEEP", "SplitError", "SplitModels", "run_split", "split_at_if"]

GO_DEEP = "go_deep"
_EXIT_PREFIX = "exitgate_exit/"


class SplitError(ValueError):
    """The model cannot be split at its exit; the message says why."""


@dataclass
class SplitModels:
    """The two halves of an early-exit model and how they connect."""

    trunk: onnx.ModelProto
    deep: onnx.ModelProto
    outputs: list[str]  # the fused model's output names (trunk: exit values; deep: deep values)
    boundary: list[str]  # trunk outputs the deep model reads (outer-scope tensors of the branch)
    passthrough: list[str] = field(default_factory=list)  # graph inputs the deep model reads
    go_deep: str = GO_DEEP
    exit_branch: str = "then_branch"

    @property
    def deep_inputs(self) -> list[str]:
        return [i.name for i in self.deep.graph.input]


def _defined_in(g: onnx.GraphProto) -> set[str]:
    return {t.name for t in g.initializer} | {o for n in g.node for o in n.output if o}


def _find_if(g: onnx.GraphProto, a: ExitAnalysis) -> onnx.NodeProto:
    try:
        node = G.find_if(g, a.if_node)
    except ValueError as exc:
        raise SplitError(f"{a.source}: {exc} (analysis of another model?)") from None
    assert node is not None
    return node


def split_at_if(model: onnx.ModelProto, analysis: ExitAnalysis) -> SplitModels:
    """Split ``model`` at the exit ``If`` found by ``analysis`` (see the module docstring)."""
    a = analysis
    if a.if_node is None or a.exit_branch is None:
        raise SplitError(f"{a.source}: the exit is not analysable:\n{a.explain()}")
    if a.problems:
        raise SplitError(f"{a.source}: cannot split a model whose exit is not real:\n{a.explain()}")
    g = model.graph
    node = _find_if(g, a)
    branches = {x.name: x.g for x in node.attribute if x.type == onnx.AttributeProto.GRAPH}
    exit_g, deep_g = branches[a.exit_branch], branches[a.deep_branch or ""]
    if_outs = list(node.output)
    tail = G.downstream(g, {o for o in if_outs if o})
    tail_ids = {id(n) for n in tail}
    main_nodes = [n for n in g.node if n is not node and id(n) not in tail_ids]
    outputs = [o.name for o in g.output]
    vis = G.value_infos(model)
    inits = {t.name: t for t in g.initializer}
    graph_inputs = list(g.input)  # an input with an initializer is an overridable input
    opsets = list(model.opset_import)

    # ---- trunk: main graph, the exit branch inlined in place of the If, the decision ----
    exit_copy = onnx.GraphProto()
    exit_copy.CopyFrom(exit_g)
    G.rename(exit_copy, {n: _EXIT_PREFIX + n for n in _defined_in(exit_copy)})
    inlined = list(exit_copy.node)
    for i, (src, dst) in enumerate(zip(exit_copy.output, if_outs, strict=True)):
        if dst:
            inlined.append(
                helper.make_node("Identity", [src.name], [dst], name=f"exitgate_exit_out_{i}")
            )
    cond = node.input[0]
    decision: list[onnx.NodeProto] = []
    if a.exit_branch == "then_branch":  # cond true = exit: go deep = not cond
        decision.append(
            helper.make_node("Not", [cond], ["exitgate_not_cond"], name="exitgate_not_cond")
        )
        cond = "exitgate_not_cond"
    decision += [
        helper.make_node(
            "Cast",
            [cond],
            ["exitgate_go_deep_f"],
            to=onnx.TensorProto.FLOAT,
            name="exitgate_go_deep_cast",
        ),
        helper.make_node(
            "Reshape",
            ["exitgate_go_deep_f", "exitgate_shape_1"],
            [GO_DEEP],
            name="exitgate_go_deep_reshape",
        ),
    ]

    # ---- deep: the deep branch, standalone ----
    deep_copy = onnx.GraphProto()
    deep_copy.CopyFrom(deep_g)
    deep_nodes = list(deep_copy.node)
    for i, (src, dst) in enumerate(zip(deep_copy.output, if_outs, strict=True)):
        if dst:
            deep_nodes.append(
                helper.make_node("Identity", [src.name], [dst], name=f"exitgate_deep_out_{i}")
            )
    deep_nodes += [G.copy(n) for n in tail]
    probe = helper.make_graph(deep_nodes, "probe", [], [])
    for o in outputs:
        probe.output.append(helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None))
    free = set(G.free_names(probe)) - _defined_in(deep_copy)
    prod = {o: n for n in main_nodes for o in n.output if o}
    input_names = {i.name for i in graph_inputs}
    deep_inits = list(deep_copy.initializer)
    const_nodes: list[onnx.NodeProto] = []
    boundary, passthrough = [], []
    for name in sorted(free):
        if name in input_names:
            passthrough.append(name)
            if name in inits:
                deep_inits.append(inits[name])
        elif name in inits:
            deep_inits.append(inits[name])
        elif name in prod and prod[name].op_type == "Constant":
            const_nodes.append(G.copy(prod[name]))
        elif name in prod:
            boundary.append(name)
        else:
            raise SplitError(
                f"{a.source}: the deep branch reads {name!r}, which is defined "
                "neither in the main graph nor as one of its inputs"
            )
    boundary_vis = [_typed(vis, n, a.source) for n in boundary]
    deep_inputs = [*boundary_vis, *[i for i in graph_inputs if i.name in passthrough]]
    deep_graph = helper.make_graph(
        [*const_nodes, *deep_nodes],
        f"{g.name or 'model'}_deep",
        deep_inputs,
        [G.copy(o) for o in g.output],
        deep_inits,
    )
    deep = _model_like(model, deep_graph, opsets)

    trunk_nodes = [*main_nodes, *inlined, *[G.copy(n) for n in tail], *decision]
    trunk_inits = [*g.initializer, *exit_copy.initializer]
    trunk_inits.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "exitgate_shape_1"))
    used = {i for n in trunk_nodes for i in n.input} | {
        i
        for n in trunk_nodes
        for x in n.attribute
        if x.type == onnx.AttributeProto.GRAPH
        for i in G.free_names(x.g)
    }
    trunk_outputs = [G.copy(o) for o in g.output] + boundary_vis
    trunk_outputs.append(helper.make_tensor_value_info(GO_DEEP, onnx.TensorProto.FLOAT, [1]))
    trunk_graph = helper.make_graph(
        trunk_nodes,
        f"{g.name or 'model'}_trunk",
        [G.copy(i) for i in graph_inputs],
        trunk_outputs,
        [t for t in trunk_inits if t.name in used],
    )
    trunk = _model_like(model, trunk_graph, opsets)
    for m in (trunk, deep):
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception as exc:
            raise SplitError(f"{a.source}: a split half is not valid ONNX: {exc}") from exc
    return SplitModels(trunk, deep, outputs, boundary, passthrough, GO_DEEP, a.exit_branch)


def _typed(vis: dict[str, onnx.ValueInfoProto], name: str, source: str) -> onnx.ValueInfoProto:
    vi = vis.get(name)
    if vi is None or not vi.type.tensor_type.elem_type:
        raise SplitError(
            f"{source}: no type for tensor {name!r} (shape inference failed); "
            "run onnx.shape_inference on the model and save it with value_info"
        )
    return G.copy(vi)


def _model_like(model: onnx.ModelProto, graph: onnx.GraphProto, opsets) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = model.ir_version
    m.producer_name = "exitgate-split"
    return m


def run_split(
    split: SplitModels,
    run_trunk: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    run_deep: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    feeds: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Host orchestration: trunk, then the deep model if ``go_deep`` > 0.5; the fused outputs."""
    t = run_trunk(dict(feeds))
    if float(np.asarray(t[split.go_deep]).reshape(-1)[0]) > 0.5:
        deep_feeds = {n: t[n] for n in split.boundary}
        deep_feeds.update({n: feeds[n] for n in split.passthrough})
        d = run_deep(deep_feeds)
        return {o: np.asarray(d[o]) for o in split.outputs}
    return {o: np.asarray(t[o]) for o in split.outputs}
