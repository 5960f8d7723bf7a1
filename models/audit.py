"""Per-branch precision audit of an ONNX artifact: which Conv/Gemm/MatMul run in the target precision.

An "FP16" or "INT8" early-exit model can silently carry a full-precision deep branch (converters
that skip ``If`` subgraphs do exactly that), so the audit counts per branch:

* **deep**: the ``If`` branch that runs the full network (the branch that is not ``exit_branch``);
* **exit**: the early-exit ``If`` branch plus the main-graph nodes that only feed the exit decision
  or the exit branch (the exit head);
* **trunk**: the main-graph nodes whose outputs the deep branch consumes (ancestors of the outer
  tensors it reads) and any other main-graph node (e.g. after the ``If``). A model without an
  ``If`` is all trunk.

A compute node runs in **fp16** when its data input and weight are float16-typed (types from ONNX
shape inference, initializers and ``value_info``, subgraphs included, outer scopes visible); in
**int8** when both come from a ``DequantizeLinear`` whose quantized input is int8; in **fp32** when
both are float32. Pure ``onnx``: no onnxruntime, no TensorRT.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import onnx
from onnx import TensorProto

from . import graph as G

__all__ = [
    "BRANCHES",
    "COMPUTE_OPS",
    "ELEM_TYPES",
    "BranchAudit",
    "PrecisionAudit",
    "audit",
    "branch_inputs",
]

COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
BRANCHES = ("trunk", "exit", "deep")
# the element type a precision's weights have: its keys are the precisions exitgate makes artifacts
# in (models.precision.PRECISIONS)
ELEM_TYPES = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16, "int8": TensorProto.INT8}


def branch_inputs(if_node: onnx.NodeProto) -> dict[str, list[str]]:
    """Outer-scope names each branch of ``if_node`` reads, by attribute name."""
    return {name: G.free_names(g) for name, g in G.subgraphs(if_node)}


def _ancestors(nodes: list[onnx.NodeProto], targets: Iterable[str]) -> set[int]:
    """Indices of ``nodes`` that (transitively) produce any of ``targets``."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    seen: set[int] = set()
    stack = [producer[t] for t in targets if t in producer]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(producer[t] for t in G.reads(nodes[i]) if t in producer)
    return seen


# ---- typed scopes ----
class _Scope:
    """Element types and producers of the names visible in one graph (outer scopes chained)."""

    def __init__(self, graph: onnx.GraphProto, outer: _Scope | None = None) -> None:
        self.outer = outer
        self.types: dict[str, int] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consts: dict[str, TensorProto] = {}
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                self.types[vi.name] = vi.type.tensor_type.elem_type
        for t in graph.initializer:
            self.types[t.name] = t.data_type
            self.consts[t.name] = t
        for node in graph.node:
            for o in node.output:
                if o:
                    self.producer[o] = node
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        self.types[node.output[0]] = a.t.data_type
                        self.consts[node.output[0]] = a.t

    def _lookup(self, table: str, name: str):
        scope: _Scope | None = self
        while scope is not None:
            hit = getattr(scope, table).get(name)
            if hit is not None:
                return hit
            scope = scope.outer
        return None

    def elem_type(self, name: str) -> int | None:
        t = self._lookup("types", name)
        if t is not None:
            return t
        node = self.producer_of(name)
        if node is not None and node.op_type == "QuantizeLinear":
            # QuantizeLinear's output type is its zero point's type; uint8 without one.
            if len(node.input) > 2 and node.input[2]:
                return self.elem_type(node.input[2])
            return TensorProto.UINT8
        return None

    def producer_of(self, name: str) -> onnx.NodeProto | None:
        return self._lookup("producer", name)

    def runs_in(self, name: str, precision: str) -> bool:
        """Whether the tensor ``name`` feeds a compute op in ``precision``."""
        if precision == "int8":
            node = self.producer_of(name)
            return (
                node is not None
                and node.op_type == "DequantizeLinear"
                and self.elem_type(node.input[0]) == TensorProto.INT8
            )
        return self.elem_type(name) == ELEM_TYPES[precision]


# ---- the audit ----
@dataclass(frozen=True)
class BranchAudit:
    """Counts for one branch. ``left_fp32``: it has compute ops and none runs in the target."""

    branch: str  # trunk | exit | deep
    precision: str  # the target: fp32 | fp16 | int8
    total: int
    converted: int
    op_types: tuple[str, ...]  # compute op types present, in COMPUTE_OPS order
    unconverted: tuple[str, ...]  # names (or op types) of the compute nodes not in the target
    left_fp32: bool

    @property
    def complete(self) -> bool:
        return self.converted == self.total

    def text(self) -> str:
        ops = "/".join(self.op_types or COMPUTE_OPS)
        line = f"{self.branch}: {self.converted}/{self.total} {ops} in {self.precision}"
        if self.left_fp32:
            line += " (left in fp32)"
        elif not self.complete:
            line += f" (not converted: {', '.join(self.unconverted)})"
        return line


@dataclass(frozen=True)
class PrecisionAudit:
    precision: str
    has_if: bool
    branches: dict[str, BranchAudit]  # keys: BRANCHES

    def __getitem__(self, branch: str) -> BranchAudit:
        return self.branches[branch]

    @property
    def left_fp32(self) -> list[str]:
        """Branches that have compute ops of which none runs in the target precision."""
        return [b for b in BRANCHES if self.branches[b].left_fp32]

    def lines(self) -> list[str]:
        return [self.branches[b].text() for b in BRANCHES]

    def text(self) -> str:
        return "\n".join(self.lines())


def _compute_nodes(
    graph: onnx.GraphProto, scope: _Scope
) -> Iterator[tuple[onnx.NodeProto, _Scope]]:
    """Compute nodes of ``graph`` and of graphs nested in it, each with its scope."""
    for node in graph.node:
        if node.op_type in COMPUTE_OPS:
            yield node, scope
        for _, sub in G.subgraphs(node):
            yield from _compute_nodes(sub, _Scope(sub, scope))


def _count(branch: str, found: list[tuple[onnx.NodeProto, _Scope]], precision: str) -> BranchAudit:
    done, missing = 0, []
    for node, scope in found:
        data_ok = scope.runs_in(node.input[0], precision)
        weight_ok = len(node.input) < 2 or scope.runs_in(node.input[1], precision)
        if data_ok and weight_ok:
            done += 1
        else:
            missing.append(node.name or node.op_type)
    present = {n.op_type for n, _ in found}
    ops = tuple(op for op in COMPUTE_OPS if op in present)
    total = len(found)
    left = precision != "fp32" and total > 0 and done == 0
    return BranchAudit(branch, precision, total, done, ops, tuple(missing), left)


def audit(
    model: onnx.ModelProto | str | os.PathLike[str],
    precision: str,
    exit_branch: str = "then_branch",
    if_name: str | None = None,
) -> PrecisionAudit:
    """Count, per branch, the Conv/Gemm/MatMul nodes and how many run in ``precision``.

    ``exit_branch`` names the ``If`` attribute that holds the early exit (``then_branch`` for the
    zoo; the structure analysis supplies it for other models).
    """
    if precision not in ELEM_TYPES:
        raise ValueError(f"unknown precision {precision!r}: expected one of {list(ELEM_TYPES)}")
    if exit_branch not in ("then_branch", "else_branch"):
        raise ValueError(f"exit_branch must be then_branch or else_branch, got {exit_branch!r}")
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    top = _Scope(graph)
    nodes = list(graph.node)
    if_node = G.find_if(graph, if_name)
    sections: dict[str, list[tuple[onnx.NodeProto, _Scope]]] = {b: [] for b in BRANCHES}
    if if_node is None:
        sections["trunk"] = [(n, s) for n, s in _compute_nodes(graph, top)]
    else:
        deep_branch = "else_branch" if exit_branch == "then_branch" else "then_branch"
        reads = branch_inputs(if_node)
        subs = dict(G.subgraphs(if_node))
        trunk = _ancestors(nodes, reads.get(deep_branch, []))
        exit_head = _ancestors(nodes, [*if_node.input[:1], *reads.get(exit_branch, [])]) - trunk
        for i, node in enumerate(nodes):
            if node.op_type == "If" and tuple(node.output) == tuple(if_node.output):
                continue
            section = "exit" if i in exit_head else "trunk"
            if node.op_type in COMPUTE_OPS:
                sections[section].append((node, top))
            for _, sub in G.subgraphs(node):
                sections[section].extend(_compute_nodes(sub, _Scope(sub, top)))
        for attr, section in ((exit_branch, "exit"), (deep_branch, "deep")):
            sub = subs[attr]
            sections[section].extend(_compute_nodes(sub, _Scope(sub, top)))
    branches = {b: _count(b, sections[b], precision) for b in BRANCHES}
    return PrecisionAudit(precision, if_node is not None, branches)
