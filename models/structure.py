"""Find the early exit in any ONNX model and say whether it is real.

Works on models the suite has never seen (zoo exports, tf2onnx exports with NHWC input and a baked
threshold, hand-built graphs). ``analyze(model)`` locates the ``If``, classifies its condition
(data-dependent, constant, input-independent), finds the comparison ``confidence > threshold`` and
the threshold (a graph input or a baked constant), the flag layout and which branch is the early exit.
What cannot be determined is listed with the option that supplies it. ``with_threshold_input`` turns
a baked threshold into an input so the suite can drive the exit; ``reference_model`` adds the
confidence as an output and can force one branch, for branch-aware checks.

Pure ``onnx``: no torch, no pytest, no GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = [
    "CONFIDENCE_OUTPUT",
    "THRESHOLD_INPUT",
    "ExitAnalysis",
    "ModelFileError",
    "Problem",
    "analyze",
    "load_model",
    "reference_model",
    "with_threshold_input",
]

THRESHOLD_INPUT = "threshold"
CONFIDENCE_OUTPUT = "exitgate_confidence"
_PASS_THROUGH = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Cast", "Flatten", "Expand"}
_COMPARE = {"Greater": ">", "GreaterOrEqual": ">=", "Less": "<", "LessOrEqual": "<="}
_MIRROR = {"Greater": "Less", "Less": "Greater", "GreaterOrEqual": "LessOrEqual",
           "LessOrEqual": "GreaterOrEqual"}  # fmt: skip
MIN_OPSET, MAX_OPSET = 11, 21  # If with scalar conditions from 11; onnxruntime knows up to 21+

HOW_TO_EXPORT = (
    "Export the exit as real control flow: in PyTorch use torch.cond(pred, exit_fn, deep_fn, "
    "operands) with torch.onnx.export(..., dynamo=True); in TensorFlow use tf.cond inside a "
    "tf.function before tf2onnx. A Python `if x.item() > t` is evaluated once while tracing."
)


class ModelFileError(ValueError):
    """The model file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Problem:
    code: str  # no_if | constant_condition | input_independent_condition | branch_mismatch | ...
    message: str


@dataclass
class ExitAnalysis:
    """What ``analyze`` found. ``ok`` means the exit is real and drivable."""

    source: str
    opset: int
    if_node: str | None = None
    if_count: int = 0
    condition: str | None = None  # data_dependent | constant | input_independent
    image_input: str | None = None
    image_shape: tuple[int | str, ...] | None = None
    image_layout: str | None = None  # NCHW | NHWC
    threshold_input: str | None = None  # graph input that carries the threshold
    threshold_constant: float | None = None  # value baked into the graph, if any
    compare_op: str | None = None
    confidence_tensor: str | None = None  # the tensor compared with the threshold
    exit_branch: str | None = None  # then_branch | else_branch: the branch that leaves early
    layout: str | None = None  # concat | separate
    outputs: list[str] = field(default_factory=list)
    flag_output: str | None = None
    probs_output: str | None = None
    num_classes: int | None = None
    problems: list[Problem] = field(default_factory=list)
    undetermined: list[str] = field(default_factory=list)  # "<what> (use --option)"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def deep_branch(self) -> str | None:
        if self.exit_branch is None:
            return None
        return "else_branch" if self.exit_branch == "then_branch" else "then_branch"

    def explain(self) -> str:
        lines = [f"{self.source}:"]
        lines += [f"  - {p.message}" for p in self.problems]
        lines += [f"  - could not determine {u}" for u in self.undetermined]
        return "\n".join(lines)


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load an ONNX file with an error that names the file and says what is wrong."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file (check --model / the manifest entry)")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, expected an .onnx file")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(f"{p}: file is empty (an interrupted download or export?)")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf DecodeError, truncated external data, ...
        raise ModelFileError(
            f"{p}: not a readable ONNX model ({type(exc).__name__}: {exc}); "
            "the file may be truncated or not ONNX at all"
        ) from exc
    if not model.graph.node:
        raise ModelFileError(f"{p}: not an ONNX model (no graph nodes; truncated or other format?)")
    return model


# --------------------------------------------------------------------------------------------
# graph helpers


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output if o}


def _const_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
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


def _subgraph_inputs(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph reads from its enclosing scope."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for n in graph.node:
        used.update(i for i in n.input if i)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                used |= _subgraph_inputs(a.g)
        defined.update(o for o in n.output if o)
    used.update(o.name for o in graph.output)
    return used - defined


def _ancestors(graph: onnx.GraphProto, names: Iterable[str]) -> tuple[set[str], set[str]]:
    """(graph inputs reached, nodes visited) walking up from ``names``."""
    prod = _producers(graph)
    graph_inputs = {i.name for i in graph.input}
    inits = {t.name for t in graph.initializer}
    seen_t: set[str] = set()
    reached: set[str] = set()
    nodes: set[str] = set()
    stack = [n for n in names if n]
    while stack:
        t = stack.pop()
        if t in seen_t:
            continue
        seen_t.add(t)
        if t in graph_inputs and t not in inits:
            reached.add(t)
            continue
        node = prod.get(t)
        if node is None:
            continue
        nodes.add(node.name or f"#{id(node)}")
        stack.extend(i for i in node.input if i)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                stack.extend(_subgraph_inputs(a.g))
    return reached, nodes


def _skip_pass_through(graph: onnx.GraphProto, name: str) -> tuple[str, list[onnx.NodeProto]]:
    """Walk up through shape/cast-only nodes; return the first other tensor and the chain."""
    prod = _producers(graph)
    chain: list[onnx.NodeProto] = []
    while name in prod and prod[name].op_type in _PASS_THROUGH:
        chain.append(prod[name])
        name = prod[name].input[0]
    return name, chain


def _dims(vi: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in tt.shape.dim)  # fmt: skip


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


# --------------------------------------------------------------------------------------------
# analysis


def analyze(
    model: onnx.ModelProto,
    source: str = "<model>",
    *,
    layout: str | None = None,
    input_layout: str | None = None,
    threshold: float | None = None,
) -> ExitAnalysis:
    """Analyse ``model``; options given by the user override what discovery finds."""
    g = model.graph
    a = ExitAnalysis(source=source, opset=_opset(model))
    a.outputs = [o.name for o in g.output]
    if a.opset and not MIN_OPSET <= a.opset <= MAX_OPSET:
        a.problems.append(
            Problem(
                "unsupported_opset",
                f"opset {a.opset} is not supported (supported {MIN_OPSET}-{MAX_OPSET}; TensorRT "
                "8.6 parses up to 17): re-export with opset_version=17",
            )
        )
    inits = {t.name for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    _find_image_input(a, real_inputs, input_layout)

    ifs = [n for n in g.node if n.op_type == "If"]
    a.if_count = len(ifs)
    if not ifs:
        a.problems.append(
            Problem(
                "no_if",
                "no `If` node: the early exit was traced away (the network always runs one "
                f"fixed path, so it never exits). {HOW_TO_EXPORT}",
            )
        )
        return a
    # The exit is the first If whose condition depends on the image; else the first If.
    classified = [(n, _classify_condition(g, n, a.image_input)) for n in ifs]
    node, kind = next(((n, k) for n, k in classified if k == "data_dependent"), classified[0])
    a.if_node, a.condition = node.name or "<unnamed If>", kind
    if kind == "constant":
        a.problems.append(
            Problem(
                "constant_condition",
                f"If node {a.if_node!r} has a constant condition: TensorRT's ONNX parser folds it "
                "and keeps only one branch, so the model never exits. The condition must be "
                f"computed from the input. {HOW_TO_EXPORT}",
            )
        )
    elif kind == "input_independent":
        a.problems.append(
            Problem(
                "input_independent_condition",
                f"If node {a.if_node!r} has a condition that does not depend on the image input "
                f"{a.image_input!r}: every input takes the same branch. The condition must compare "
                "the exit head's confidence with the threshold.",
            )
        )
    _find_threshold(a, g, node, threshold)
    _check_branches(a, g, node)
    _find_layout(a, g, node, layout)
    return a


def _find_image_input(a: ExitAnalysis, inputs: list[onnx.ValueInfoProto], forced: str | None):
    rank4 = [i for i in inputs if (d := _dims(i)) is not None and len(d) == 4]
    if len(rank4) != 1:
        a.undetermined.append("the image input (expected one 4-D input; use --input-layout)")
        return
    a.image_input = rank4[0].name
    a.image_shape = _dims(rank4[0])
    if forced:
        if forced not in ("NCHW", "NHWC"):
            raise ValueError(f"--input-layout: expected NCHW or NHWC, got {forced!r}")
        a.image_layout = forced
        _, c1, _, c3 = a.image_shape
        expected_c = c1 if forced == "NCHW" else c3
        if isinstance(expected_c, int) and expected_c not in (1, 3):
            a.problems.append(
                Problem(
                    "layout_mismatch",
                    f"--input-layout={forced} does not match input {a.image_input!r} of shape "
                    f"{list(a.image_shape)}: its channel dimension would be {expected_c}",
                )
            )
        return
    _, d1, _, d3 = a.image_shape
    if d1 in (1, 3) and d3 not in (1, 3):
        a.image_layout = "NCHW"
    elif d3 in (1, 3) and d1 not in (1, 3):
        a.image_layout = "NHWC"
    else:
        a.undetermined.append(
            f"whether input {a.image_input!r} {list(a.image_shape)} is NCHW or NHWC "
            "(use --input-layout=NCHW|NHWC)"
        )


def _classify_condition(g: onnx.GraphProto, node: onnx.NodeProto, image: str | None) -> str:
    reached, _ = _ancestors(g, [node.input[0]])
    if not reached:
        return "constant"
    if image is not None and image not in reached:
        return "input_independent"
    if image is None and len(reached) == 1 and THRESHOLD_INPUT in reached:
        return "input_independent"
    return "data_dependent"


def _find_threshold(a: ExitAnalysis, g: onnx.GraphProto, node: onnx.NodeProto, forced):
    prod = _producers(g)
    name, chain = _skip_pass_through(g, node.input[0])
    negate = False
    while name in prod and prod[name].op_type == "Not":
        negate = not negate
        name, more = _skip_pass_through(g, prod[name].input[0])
        chain += more
    cmp = prod.get(name)
    if cmp is None or cmp.op_type not in _COMPARE:
        a.undetermined.append(
            "the threshold comparison (the If condition is not `confidence > threshold`; "
            "use --threshold-input or --threshold)"
        )
        return
    lhs, rhs = cmp.input[0], cmp.input[1]
    sides = []
    for side, other, op in ((rhs, lhs, cmp.op_type), (lhs, rhs, _MIRROR[cmp.op_type])):
        base, _ = _skip_pass_through(g, side)
        value = _const_value(g, base)
        is_input = base in {i.name for i in g.input} and value is None
        if value is not None and value.size == 1:
            sides.append(("constant", base, float(value.reshape(-1)[0]), other, op))
        elif is_input:
            sides.append(("input", base, None, other, op))
    if not sides:
        a.undetermined.append(
            f"the threshold of comparison {cmp.name!r} (neither side is a graph input or a "
            "scalar constant; use --threshold)"
        )
        return
    kind, base, value, other, op = sides[0]
    # Normalise to `confidence OP threshold`; OP in {>, >=} means "true = leave early".
    a.compare_op = op
    a.confidence_tensor = other
    exits_when_true = op in ("Greater", "GreaterOrEqual")
    if negate:
        exits_when_true = not exits_when_true
    a.exit_branch = "then_branch" if exits_when_true else "else_branch"
    if kind == "input":
        a.threshold_input = base
    else:
        a.threshold_constant = value
    if forced is not None:
        a.threshold_constant = float(forced)


def _branch_outputs(node: onnx.NodeProto) -> dict[str, onnx.GraphProto]:
    return {attr.name: attr.g for attr in node.attribute if attr.type == onnx.AttributeProto.GRAPH}


def _check_branches(a: ExitAnalysis, g: onnx.GraphProto, node: onnx.NodeProto) -> None:
    br = _branch_outputs(node)
    then_g, else_g = br.get("then_branch"), br.get("else_branch")
    if then_g is None or else_g is None:
        a.problems.append(Problem("malformed_if", f"If node {a.if_node!r} lacks a branch graph"))
        return
    if len(then_g.output) != len(else_g.output):
        a.problems.append(
            Problem(
                "branch_mismatch",
                f"If node {a.if_node!r}: the branches return {len(then_g.output)} and "
                f"{len(else_g.output)} outputs; both must return the same outputs",
            )
        )
        return
    for i, (t, e) in enumerate(zip(then_g.output, else_g.output, strict=True)):
        dt, de = _dims(t), _dims(e)
        if dt is not None and de is not None and dt != de:
            a.problems.append(
                Problem(
                    "branch_shape_mismatch",
                    f"If node {a.if_node!r} output {i}: the branches yield shapes {list(dt)} and "
                    f"{list(de)}; they must be identical (different shapes make output shapes "
                    "data-dependent, which TensorRT cannot capture in a CUDA graph)",
                )
            )


def _find_layout(a: ExitAnalysis, g: onnx.GraphProto, node: onnx.NodeProto, forced):
    # Which graph outputs come from the If (directly or through pass-through nodes)?
    if_outs = list(node.output)
    from_if: dict[str, int] = {}
    for o in g.output:
        base, _ = _skip_pass_through(g, o.name)
        if base in if_outs:
            from_if[o.name] = if_outs.index(base)
    not_from_if = [o.name for o in g.output if o.name not in from_if]
    out_dims = {o.name: _dims(o) for o in g.output}
    if len(if_outs) == 1 and len(from_if) == 1:
        found = "concat"
    elif len(if_outs) >= 2 and len(from_if) >= 2:
        found = "separate"
    else:
        found = None
    if not_from_if and found is not None:
        a.problems.append(
            Problem(
                "flag_outside_if",
                f"output(s) {', '.join(not_from_if)} are not produced by If node {a.if_node!r}: "
                "the exit flag and outputs must be produced inside the branches",
            )
        )
    if forced and found and forced != found:
        a.problems.append(
            Problem(
                "layout_mismatch",
                f"--flag-layout={forced} does not match the model: If node {a.if_node!r} has "
                f"{len(if_outs)} output(s) reaching the graph outputs, i.e. the {found} layout",
            )
        )
    layout = forced or found
    if layout is None:
        a.undetermined.append("the flag layout (use --flag-layout=concat|separate)")
        return
    a.layout = layout
    if layout == "concat":
        out = next(iter(from_if), a.outputs[0] if a.outputs else None)
        a.flag_output = a.probs_output = out
        dims = out_dims.get(out) if out else None
        if dims and isinstance(dims[-1], int) and dims[-1] > 1:
            a.num_classes = dims[-1] - 1
    else:
        cands = list(from_if) or a.outputs
        flagish = [n for n in cands if "flag" in n.lower()]
        ones = [n for n in cands if (d := out_dims.get(n)) and d[-1] == 1]
        flag = (flagish or ones or [None])[0]
        probs = next((n for n in cands if n != flag), None)
        if flag is None or probs is None:
            a.undetermined.append("which output is the exit flag (use --flag-output=NAME)")
            return
        a.flag_output, a.probs_output = flag, probs
        dims = out_dims.get(probs)
        if dims and isinstance(dims[-1], int):
            a.num_classes = dims[-1]


# --------------------------------------------------------------------------------------------
# rewrites


def with_threshold_input(model: onnx.ModelProto, a: ExitAnalysis) -> onnx.ModelProto:
    """Return a copy where a baked threshold constant is replaced by a ``threshold`` input [1].

    The new input is reshaped to the constant's shape, so the comparison is exactly the original
    one for every value of the threshold; a model that already has a threshold input is returned
    unchanged.
    """
    if a.threshold_input is not None:
        return model
    if a.threshold_constant is None or a.if_node is None:
        raise ValueError(f"{a.source}: no threshold to expose ({'; '.join(a.undetermined)})")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    prod = _producers(g)
    node = next(n for n in g.node if (n.name or "<unnamed If>") == a.if_node and n.op_type == "If")
    name, _ = _skip_pass_through(g, node.input[0])
    while prod[name].op_type == "Not":
        name, _ = _skip_pass_through(g, prod[name].input[0])
    cmp = prod[name]
    idx = next(
        i for i, s in enumerate(cmp.input)
        if (v := _const_value(g, _skip_pass_through(g, s)[0])) is not None and v.size == 1
    )  # fmt: skip
    const = _const_value(g, _skip_pass_through(g, cmp.input[idx])[0])
    assert const is not None
    if THRESHOLD_INPUT in {t.name for t in g.initializer}:
        # the baked constant is itself named "threshold" (tf2onnx does this): rename it first, or
        # the new input would carry an initializer, i.e. a default that some runtimes fold
        _rename_tensor(g, THRESHOLD_INPUT, "exitgate_threshold_baked")
    g.input.append(helper.make_tensor_value_info(THRESHOLD_INPUT, onnx.TensorProto.FLOAT, [1]))
    shape_name = "exitgate_threshold_shape"
    g.initializer.append(numpy_helper.from_array(np.array(const.shape, np.int64), shape_name))
    reshaped = "exitgate_threshold_reshaped"
    new_nodes = [helper.make_node("Reshape", [THRESHOLD_INPUT, shape_name], [reshaped],
                                  name="exitgate_threshold_reshape")]  # fmt: skip
    if const.dtype != np.float32:
        cast = "exitgate_threshold_cast"
        to = onnx.helper.np_dtype_to_tensor_dtype(const.dtype)
        new_nodes.append(helper.make_node("Cast", [reshaped], [cast], to=to,
                                          name="exitgate_threshold_cast"))  # fmt: skip
        reshaped = cast
    cmp.input[idx] = reshaped
    pos = list(g.node).index(cmp)
    for k, n in enumerate(new_nodes):
        g.node.insert(pos + k, n)
    return m


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it is defined or read, subgraphs included (unless shadowed)."""
    for t in graph.initializer:
        if t.name == old:
            t.name = new
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                local = {t.name for t in attr.g.initializer} | {i.name for i in attr.g.input}
                if old not in local:
                    _rename_tensor(attr.g, old, new)
    for o in graph.output:
        if o.name == old:
            o.name = new


def reference_model(
    model: onnx.ModelProto, a: ExitAnalysis, force: str | None = None
) -> onnx.ModelProto:
    """A copy that also outputs the confidence; ``force`` = "exit" | "deep" pins one branch.

    Forcing replaces the If condition with a constant, so onnxruntime runs exactly the chosen
    branch with the model's own weights: the reference for "the output at exit_always equals the
    exit head's output" and "at exit_never equals the deep branch's".
    """
    if a.if_node is None or a.confidence_tensor is None or a.exit_branch is None:
        raise ValueError(f"{a.source}: the exit is not analysable ({'; '.join(a.undetermined)})")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if CONFIDENCE_OUTPUT not in {o.name for o in g.output}:
        g.node.append(helper.make_node("Identity", [a.confidence_tensor], [CONFIDENCE_OUTPUT],
                                       name="exitgate_confidence_out"))  # fmt: skip
        vi = onnx.ValueInfoProto()
        vi.name = CONFIDENCE_OUTPUT
        vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        g.output.append(vi)
    if force is not None:
        if force not in ("exit", "deep"):
            raise ValueError(f"force must be 'exit' or 'deep', got {force!r}")
        take_then = (force == "exit") == (a.exit_branch == "then_branch")
        node = next(n for n in g.node if (n.name or "<unnamed If>") == a.if_node)
        cname = f"exitgate_forced_{force}"
        g.initializer.append(numpy_helper.from_array(np.array(take_then), cname))
        node.input[0] = cname
    return m
