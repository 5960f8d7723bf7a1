"""ONNX graph surgery, in one place: every module that walks, renames, copies or cuts a graph
(``structure``, ``split``, ``precision``, ``audit``) uses these functions, so they agree on what a
subgraph reads from outside, which ``If`` is meant, and what lies before and after it.

Pure ``onnx`` and numpy: no onnxruntime, no torch, no pytest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = [
    "COMPUTE_OPS",
    "FOLLOW_OPS",
    "PASS_THROUGH",
    "ancestors",
    "compute_count",
    "const_value",
    "copy",
    "defined_names",
    "dims",
    "downstream",
    "find_if",
    "follow",
    "free_names",
    "node_label",
    "node_names",
    "opset",
    "pin_inputs",
    "producers",
    "rename",
    "subgraphs",
    "value_infos",
]

#: ops that change neither a value nor which value it is (only its shape or type)
PASS_THROUGH = frozenset(
    {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Cast", "CastLike", "Flatten", "Expand"}
)
#: ops a threshold may pass through on its way to the comparison: shape-only ops, reductions of a
#: one-value tensor, and a constant-index Gather (data input first in each)
FOLLOW_OPS = PASS_THROUGH | {"ReduceMax", "ReduceMin", "ReduceMean", "Gather", "Slice"}
#: the ops whose count tells the deep branch from the early exit
COMPUTE_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "LSTM",
        "GRU",
        "RNN",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
    }
)

M = TypeVar("M", onnx.ModelProto, onnx.GraphProto, onnx.NodeProto, onnx.ValueInfoProto)


def copy(msg: M) -> M:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def node_label(node: onnx.NodeProto) -> str:
    return node.name or f"<unnamed {node.op_type}>"


def subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """The graphs a node holds (``If`` branches, ``Loop``/``Scan`` bodies), by attribute name."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for i, g in enumerate(attr.graphs):
                yield f"{attr.name}[{i}]", g


def free_names(graph: onnx.GraphProto) -> list[str]:
    """Names ``graph`` (or a graph nested in it) reads but does not define: its outer-scope reads,
    in first-use order, without duplicates."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    free: dict[str, None] = {}
    for node in graph.node:
        for name in node.input:
            if name and name not in defined:
                free[name] = None
        for _, sub in subgraphs(node):
            free.update((n, None) for n in free_names(sub) if n not in defined)
        defined.update(o for o in node.output if o)
    free.update((o.name, None) for o in graph.output if o.name not in defined)
    return list(free)


def reads(node: onnx.NodeProto) -> list[str]:
    """Everything a node reads: its inputs and its subgraphs' outer-scope names."""
    names = [i for i in node.input if i]
    for _, sub in subgraphs(node):
        names += free_names(sub)
    return names


def defined_names(graph: onnx.GraphProto, *, nested: bool = False) -> set[str]:
    """Tensors ``graph`` defines (inputs, initializers, node outputs), and its subgraphs' too
    when ``nested``."""
    names = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(o for o in node.output if o)
        if nested:
            for _, sub in subgraphs(node):
                names |= defined_names(sub, nested=True)
    return names


def node_names(graph: onnx.GraphProto) -> set[str]:
    names = set()
    for node in graph.node:
        names.add(node.name)
        for _, sub in subgraphs(node):
            names |= node_names(sub)
    return names


def rename(
    graph: onnx.GraphProto,
    mapping: Mapping[str, str],
    node_map: Mapping[str, str] | None = None,
    *,
    scoped: bool = False,
) -> None:
    """Rename tensors (and nodes, with ``node_map``) everywhere in ``graph``, subgraphs included.

    ``scoped``: a subgraph that defines a name itself (an input or initializer of its own) keeps
    reading its own tensor, as ONNX scoping says; without it every occurrence is renamed (for
    names known to be unique, e.g. fresh prefixes).
    """
    node_map = node_map or {}
    for t in graph.initializer:
        t.name = mapping.get(t.name, t.name)
    for vi in (*graph.input, *graph.output, *graph.value_info):
        vi.name = mapping.get(vi.name, vi.name)
    for node in graph.node:
        node.name = node_map.get(node.name, node.name)
        node.input[:] = [mapping.get(i, i) for i in node.input]
        node.output[:] = [mapping.get(o, o) for o in node.output]
        for _, sub in subgraphs(node):
            inner = mapping
            if scoped:
                local = {t.name for t in sub.initializer} | {i.name for i in sub.input}
                inner = {k: v for k, v in mapping.items() if k not in local}
            rename(sub, inner, node_map, scoped=scoped)


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output if o}


def const_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of an initializer or ``Constant`` output named ``name``; None otherwise."""
    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in graph.node:
        if n.op_type == "Constant" and name in n.output:
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_float", "value_int"):
                    return np.array(a.f if a.name == "value_float" else a.i)
                if a.name in ("value_floats", "value_ints"):
                    return np.array(list(a.floats) if a.name == "value_floats" else list(a.ints))
    return None


def follow(
    graph: onnx.GraphProto, name: str, ops: Iterable[str] = PASS_THROUGH
) -> tuple[str, list[onnx.NodeProto]]:
    """Walk up from ``name`` through nodes of ``ops`` (following their data input); the first
    tensor another node (or nothing) produces, and the nodes passed.

    A ``Gather``/``Slice`` is passed only with constant indices; reductions only of one value.
    """
    ops = frozenset(ops)
    prod = producers(graph)
    chain: list[onnx.NodeProto] = []
    seen: set[str] = set()
    while name in prod and name not in seen and prod[name].op_type in ops:
        node = prod[name]
        if node.op_type in ("Gather", "Slice") and any(
            const_value(graph, i) is None for i in node.input[1:] if i
        ):
            break
        seen.add(name)
        chain.append(node)
        name = node.input[0]
    return name, chain


def ancestors(
    graph: onnx.GraphProto, names: Iterable[str]
) -> tuple[set[str], list[onnx.NodeProto]]:
    """(graph inputs reached, nodes visited) walking up from ``names``; an input that has an
    initializer (a default) counts as an input."""
    prod = producers(graph)
    graph_inputs = {i.name for i in graph.input}
    seen: set[str] = set()
    reached: set[str] = set()
    nodes: dict[int, onnx.NodeProto] = {}
    stack = [n for n in names if n]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in graph_inputs:
            reached.add(t)
            continue
        node = prod.get(t)
        if node is None:
            continue
        nodes[id(node)] = node
        stack.extend(reads(node))
    return reached, list(nodes.values())


def downstream(graph: onnx.GraphProto, start: Iterable[str]) -> list[onnx.NodeProto]:
    """Nodes that (transitively) consume ``start``, in graph order (graphs are topologically
    sorted, so one pass suffices)."""
    live, tail = set(start), []
    for n in graph.node:
        if live.intersection(reads(n)):
            tail.append(n)
            live.update(o for o in n.output if o)
    return tail


def find_if(graph: onnx.GraphProto, name: str | None = None) -> onnx.NodeProto | None:
    """The main graph's ``If`` named ``name`` (as :func:`node_label` prints it); without a name,
    the only one (None if there is none; an error naming them if there are several)."""
    ifs = [n for n in graph.node if n.op_type == "If"]
    if name is not None:
        for n in ifs:
            if node_label(n) == name:
                return n
        raise ValueError(f"no If node named {name!r}; the graph has {[node_label(n) for n in ifs]}")
    if len(ifs) > 1:
        raise ValueError(
            f"the graph has {len(ifs)} If nodes {[node_label(n) for n in ifs]}; name the exit's"
        )
    return ifs[0] if ifs else None


def compute_count(graph: onnx.GraphProto) -> int:
    """Conv/Gemm/MatMul-like nodes in ``graph`` and every graph nested in it."""
    return sum(
        (n.op_type in COMPUTE_OPS) + sum(compute_count(g) for _, g in subgraphs(n))
        for n in graph.node
    )


def dims(vi: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    """A value's declared shape: ints, symbolic names, or "?" for an unnamed unknown dim."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim
    )


def opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


def value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Typed value infos of the main graph: shape inference where it works, else what the file
    declares."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - onnx raises several types; fall back to declarations
        inferred = model
    g = inferred.graph
    return {vi.name: vi for vi in (*g.value_info, *g.input, *g.output)}


def pin_inputs(model: onnx.ModelProto, shapes: Mapping[str, Iterable[int]]) -> onnx.ModelProto:
    """A copy whose named inputs have the given static shapes (symbolic dims pinned)."""
    m = copy(model)
    for vi in m.graph.input:
        if vi.name not in shapes:
            continue
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for d in shapes[vi.name]:
            shape.dim.add().dim_value = int(d)
    return m
