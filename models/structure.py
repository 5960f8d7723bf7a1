"""Find the early exit in any ONNX model and say whether it is real.

Works on what real exporters emit (tf2onnx from Keras or TFLite, TorchScript and the legacy
exporter, the dynamo exporter with dynamic shapes; see ``tests/corpus``) and on hand-built graphs.
``analyze(model)`` locates the exit ``If``, classifies its condition (data-dependent, constant,
input-independent), finds the comparison ``score OP threshold`` -- following each operand through
shape-only and reducing ops -- and so the threshold (a graph input or a baked constant), the exit
criterion (max softmax, max logit, entropy, ...) and when the model exits (``exit_when``): the early
exit is the branch with less compute, whatever the comparison's polarity. The flag layout is
guessed statically here and settled by running the model (``models.probe``): an output is the flag
only if forcing the branches makes it the constants 0 and 1.

What cannot be determined is listed with the option that supplies it. ``with_threshold_input``
turns a baked threshold into an input so the suite can drive the exit; ``reference_model`` exposes
the exit score and decision and can force one branch, for branch-aware checks.

Pure ``onnx``: no torch, no pytest, no GPU. Graph walking and renaming live in ``models.graph``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import graph as G

__all__ = [
    "EXITS_OUTPUT",
    "IMAGE_LAYOUTS",
    "LAYOUTS",
    "SCORE_OUTPUT",
    "THRESHOLD_INPUT",
    "ExitAnalysis",
    "ModelFileError",
    "Problem",
    "analyze",
    "drivable",
    "exits",
    "load_model",
    "reference_model",
    "with_threshold_input",
]

THRESHOLD_INPUT = "threshold"  # the name a baked threshold's new input gets
SCORE_OUTPUT = "exitgate_score"  # reference models: the value compared with the threshold
EXITS_OUTPUT = "exitgate_exits"  # reference models: True where the model's own condition exits
_COMPARE = {"Greater": ">", "GreaterOrEqual": ">=", "Less": "<", "LessOrEqual": "<="}
_MIRROR = {">": "<", "<": ">", ">=": "<=", "<=": ">="}  # a OP b  ==  b MIRROR[OP] a
_COMPLEMENT = {">": "<=", "<=": ">", ">=": "<", "<": ">="}  # not (a OP b)  ==  a COMPLEMENT b
_CONFIDENCE_LIKE = ("max_softmax", "max_logit", "margin")  # exit when high; entropy: when low
MIN_OPSET, MAX_OPSET = 11, 21  # If with scalar conditions from 11; onnxruntime knows up to 21+
MAX_IMAGE_BYTES = 1 << 30  # a declared float input larger than this cannot be a test image
LAYOUTS = ("concat", "separate", "none")  # how a model returns its exit flag
IMAGE_LAYOUTS = ("NCHW", "NHWC")

HOW_TO_EXPORT = (
    "Export the exit as real control flow: in PyTorch use torch.cond(pred, exit_fn, deep_fn, "
    "operands) with torch.onnx.export(..., dynamo=True), or torch.jit.script the module before "
    "torch.onnx.export; in TensorFlow use tf.cond inside a tf.function before tf2onnx. A Python "
    "`if x.item() > t` is evaluated once while tracing."
)


def exits(score: np.ndarray, exit_when: str, threshold: float) -> np.ndarray:
    """Where a model with this ``exit_when`` leaves early: ``score exit_when threshold``."""
    s = np.asarray(score)
    return {">": s > threshold, ">=": s >= threshold, "<": s < threshold, "<=": s <= threshold}[
        exit_when
    ]


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
    image_dtype: int = onnx.TensorProto.FLOAT
    image_layout: str | None = None  # NCHW | NHWC
    threshold_input: str | None = None  # graph input that carries the threshold
    threshold_constant: float | None = None  # value baked into the graph, if any
    threshold_via: list[str] = field(default_factory=list)  # ops between threshold and compare
    compare_op: str | None = None  # the comparison node's op type
    score_tensor: str | None = None  # the tensor compared with the threshold
    criterion: str | None = None  # max_softmax | max_logit | entropy | margin | other
    exit_when: str | None = None  # the model exits early when `score exit_when threshold`
    exit_branch: str | None = None  # then_branch | else_branch: the branch that leaves early
    layout: str | None = None  # concat | separate | none (settled by models.probe)
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

    @property
    def threshold_source(self) -> str | None:
        if self.threshold_input is not None:
            return f"input {self.threshold_input!r}"
        if self.threshold_constant is not None:
            return f"baked constant {self.threshold_constant:g}"
        return None

    def describe(self) -> str:
        """One line: the criterion and when the model exits, e.g. ``max_softmax > threshold``."""
        return f"{self.criterion or 'score'} {self.exit_when or '?'} threshold"

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
# analysis


def analyze(
    model: onnx.ModelProto,
    source: str = "<model>",
    *,
    layout: str | None = None,
    input_layout: str | None = None,
    flag_output: str | None = None,
) -> ExitAnalysis:
    """Analyse ``model``; options given by the user override what discovery finds.

    The deployment threshold the user gives is no option here: it does not change what is read
    from the file (a baked constant stays ``threshold_constant``); the suite runs at its value.
    """
    g = model.graph
    a = ExitAnalysis(source=source, opset=G.opset(model))
    a.outputs = [o.name for o in g.output]
    if a.opset and not MIN_OPSET <= a.opset <= MAX_OPSET:
        a.problems.append(
            Problem(
                "unsupported_opset",
                f"opset {a.opset} is not supported (supported {MIN_OPSET}-{MAX_OPSET}; TensorRT "
                "8.6 parses up to 17): re-export with opset_version=17",
            )
        )
    _check_data(a, g)
    ifs = [n for n in g.node if n.op_type == "If"]
    a.if_count = len(ifs)
    if not ifs:
        _find_image_input(a, g, input_layout, None)
        nested = _nested_ifs(g)
        if nested:
            holder, inner = nested[0]
            a.problems.append(
                Problem(
                    "nested_if",
                    f"the only If ({inner!r}) sits inside the body of {holder}: exitgate tests an "
                    "early exit in the main graph (a Loop/Scan body runs per iteration, and TensorRT "
                    "cannot import an If there as an exit). Move the exit out of the loop.",
                )
            )
        else:
            a.problems.append(
                Problem(
                    "no_if",
                    "no `If` node: the early exit was traced away (the network always runs one "
                    f"fixed path, so it never exits). {HOW_TO_EXPORT}",
                )
            )
        return a
    # The exit is the first If whose condition depends on the image; else the first If.
    threshold_guess = _threshold_candidates(g, ifs)
    _find_image_input(a, g, input_layout, threshold_guess)
    classified = [(n, _classify_condition(g, n, a.image_input)) for n in ifs]
    node, kind = next(((n, k) for n, k in classified if k == "data_dependent"), classified[0])
    a.if_node, a.condition = G.node_label(node), kind
    holds = [G.node_label(n) for _, b in G.subgraphs(node) for n in b.node if n.op_type == "If"]
    if kind == "constant":
        inner = (
            f" It holds another If ({', '.join(holds)}) in its branches: nested control "
            "flow around the exit is not supported."
            if holds
            else ""
        )
        a.problems.append(
            Problem(
                "constant_condition",
                f"If node {a.if_node!r} has a constant condition: TensorRT's ONNX parser folds it "
                "and keeps only one branch, so the model never exits. The condition must be "
                f"computed from the input.{inner} {HOW_TO_EXPORT}",
            )
        )
        return a
    if kind == "input_independent":
        a.problems.append(
            Problem(
                "input_independent_condition",
                f"If node {a.if_node!r} has a condition that does not depend on the image input "
                f"{a.image_input!r}: every input takes the same branch. The condition must compare "
                "the exit head's score with the threshold.",
            )
        )
    if not _check_branches(a, model, node):
        return a
    _find_layout(a, g, node, layout, flag_output)
    _find_exit_branch(a, node)
    _find_threshold(a, g, node)
    return a


def _check_data(a: ExitAnalysis, g: onnx.GraphProto) -> None:
    """Initializers whose data is missing (a file saved without its external data, say)."""
    for t in _all_initializers(g):
        n = math.prod(t.dims)
        if n == 0 or t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        fields = (
            t.raw_data,
            t.float_data,
            t.int32_data,
            t.int64_data,
            t.double_data,
            t.uint64_data,
            t.string_data,
        )
        if not any(len(f) for f in fields):
            a.problems.append(
                Problem(
                    "missing_data",
                    f"initializer {t.name!r} (shape {list(t.dims)}) has no data: the file was "
                    "saved without it (external data not written?). Re-export or re-save the model "
                    "with its weights (onnx.save(model, path, save_as_external_data=False)).",
                )
            )
            return


def _all_initializers(g: onnx.GraphProto):
    yield from g.initializer
    for n in g.node:
        for _, sub in G.subgraphs(n):
            yield from _all_initializers(sub)


def _nested_ifs(g: onnx.GraphProto) -> list[tuple[str, str]]:
    """(holder, If) pairs for If nodes inside Loop/Scan bodies or other subgraphs."""
    found = []
    for n in g.node:
        for _, sub in G.subgraphs(n):
            found += [
                (f"{n.op_type} node {G.node_label(n)!r}", G.node_label(m))
                for m in sub.node
                if m.op_type == "If"
            ]
            found += _nested_ifs(sub)
    return found


def _threshold_candidates(g: onnx.GraphProto, ifs: list[onnx.NodeProto]) -> set[str]:
    """Graph inputs that reach an If condition only through follow-ops (threshold-like)."""
    inputs = {i.name for i in g.input}
    prod = G.producers(g)
    found = set()
    for node in ifs:
        _, nodes = G.ancestors(g, [node.input[0]])
        for n in nodes:
            if n.op_type in _COMPARE:
                for side in n.input:
                    base, _ = G.follow(g, side, G.FOLLOW_OPS)
                    if base in inputs and base not in prod:
                        found.add(base)
    return found


def _find_image_input(
    a: ExitAnalysis, g: onnx.GraphProto, forced: str | None, thresholds: set[str] | None
) -> None:
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits and i.name not in (thresholds or ())]
    rank4 = [i for i in inputs if (d := G.dims(i)) is not None and len(d) == 4]
    if len(rank4) != 1:
        a.undetermined.append(
            f"the image input (expected one 4-D input, found {len(rank4)} among "
            f"{[i.name for i in inputs]})"
        )
        return
    a.image_input = rank4[0].name
    a.image_shape = G.dims(rank4[0])
    a.image_dtype = rank4[0].type.tensor_type.elem_type
    static = [d for d in a.image_shape[1:] if isinstance(d, int)]
    if static and math.prod(static) * 4 > MAX_IMAGE_BYTES:
        a.problems.append(
            Problem(
                "input_too_large",
                f"input {a.image_input!r} declares shape {list(a.image_shape)}: "
                f"{math.prod(static) * 4 / 2**30:.1f} GiB per image cannot be built or fed; export "
                "the model for the image size it is deployed with (32x32 for the CIFAR-style zoo)",
            )
        )
    _, d1, _, d3 = a.image_shape
    if forced:
        if forced not in IMAGE_LAYOUTS:
            raise ValueError(f"--input-layout: expected NCHW or NHWC, got {forced!r}")
        a.image_layout = forced
        expected_c = d1 if forced == "NCHW" else d3
        if isinstance(expected_c, int) and expected_c not in (1, 3):
            a.problems.append(
                Problem(
                    "layout_mismatch",
                    f"--input-layout={forced} does not match input {a.image_input!r} of shape "
                    f"{list(a.image_shape)}: its channel dimension would be {expected_c}",
                )
            )
        return
    c1, c3 = d1 in (1, 3), d3 in (1, 3)
    if c1 and not c3:
        a.image_layout = "NCHW"
    elif c3 and not c1:
        a.image_layout = "NHWC"
    elif not c1 and not c3 and _first_transpose(g, a.image_input) is not None:
        # symbolic dims everywhere: a leading Transpose (tf2onnx) says NHWC or NCHW
        a.image_layout = "NHWC" if _first_transpose(g, a.image_input) == [0, 3, 1, 2] else "NCHW"
    else:
        a.undetermined.append(
            f"whether input {a.image_input!r} {list(a.image_shape)} is NCHW or NHWC "
            "(use --input-layout=NCHW|NHWC)"
        )


def _first_transpose(g: onnx.GraphProto, name: str) -> list[int] | None:
    for n in g.node:
        if name in n.input and n.op_type == "Transpose":
            return next((list(x.ints) for x in n.attribute if x.name == "perm"), None)
    return None


def _classify_condition(g: onnx.GraphProto, node: onnx.NodeProto, image: str | None) -> str:
    reached, _ = G.ancestors(g, [node.input[0]])
    if not reached:
        return "constant"
    if image is not None and image not in reached:
        return "input_independent"
    if image is None and len(reached) == 1:
        return "input_independent"
    return "data_dependent"


def _check_branches(a: ExitAnalysis, model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    br = dict(G.subgraphs(node))
    then_g, else_g = br.get("then_branch"), br.get("else_branch")
    if then_g is None or else_g is None:
        a.problems.append(Problem("malformed_if", f"If node {a.if_node!r} lacks a branch graph"))
        return False
    if len(then_g.output) != len(else_g.output):
        a.problems.append(
            Problem(
                "branch_mismatch",
                f"If node {a.if_node!r}: the branches return {len(then_g.output)} and "
                f"{len(else_g.output)} outputs; both must return the same outputs",
            )
        )
        return False
    for i, (t, e) in enumerate(zip(then_g.output, else_g.output, strict=True)):
        tt, te = t.type.tensor_type.elem_type, e.type.tensor_type.elem_type
        if tt and te and tt != te:
            names = [helper.tensor_dtype_to_np_dtype(x).name for x in (tt, te)]
            a.problems.append(
                Problem(
                    "branch_dtype_mismatch",
                    f"If node {a.if_node!r} output {i}: the then branch returns {names[0]} and the "
                    f"else branch {names[1]} ({t.name!r} vs {e.name!r}); both must return the same "
                    "type (TensorRT and onnxruntime refuse the model)",
                )
            )
        # symbolic dims (a dynamic batch: unk__247 vs unk__248, s0, batch) are not a mismatch:
        # only two different static sizes are; the probe compares the shapes the branches
        # really produce
        dt, de = G.dims(t), G.dims(e)
        if dt is None or de is None:
            continue
        static_clash = len(dt) != len(de) or any(
            isinstance(x, int) and isinstance(y, int) and x != y and x > 0 and y > 0
            for x, y in zip(dt, de, strict=False)
        )
        if static_clash:
            a.problems.append(
                Problem(
                    "branch_shape_mismatch",
                    f"If node {a.if_node!r} output {i}: the branches yield shapes {list(dt)} and "
                    f"{list(de)}; they must be identical (different shapes make output shapes "
                    "data-dependent, which TensorRT cannot capture in a CUDA graph)",
                )
            )
    return True


def _criterion(g: onnx.GraphProto, score: str) -> str:
    """What the score is: max softmax, max logit, entropy, a top-2 margin, or other."""
    base, _ = G.follow(g, score)
    prod = G.producers(g)
    node = prod.get(base)
    if node is None:
        return "other"
    _, above = G.ancestors(g, [base])
    ops = {n.op_type for n in above}
    if ("Log" in ops and ("ReduceSum" in ops or "Sum" in ops)) or (
        "LogSoftmax" in ops and "Exp" in ops and "ReduceSum" in ops
    ):
        return "entropy"
    if node.op_type in ("ReduceMax", "Max", "ArgMax") or node.op_type == "TopK":
        src, _ = G.follow(g, node.input[0])
        p = prod.get(src)
        return "max_softmax" if p is not None and p.op_type == "Softmax" else "max_logit"
    if node.op_type == "Sub" and "TopK" in ops:
        return "margin"
    return "other"


def _find_exit_branch(a: ExitAnalysis, node: onnx.NodeProto) -> None:
    """The early exit is the branch with less compute (Conv/Gemm/MatMul, nested included)."""
    br = dict(G.subgraphs(node))
    work = {k: G.compute_count(br[k]) for k in ("then_branch", "else_branch")}
    if work["then_branch"] != work["else_branch"]:
        a.exit_branch = min(work, key=work.__getitem__)


def _find_threshold(a: ExitAnalysis, g: onnx.GraphProto, node: onnx.NodeProto) -> None:
    prod = G.producers(g)
    name, _ = G.follow(g, node.input[0])
    negate = False
    while name in prod and prod[name].op_type == "Not":
        negate = not negate
        name, _ = G.follow(g, prod[name].input[0])
    cmp = prod.get(name)
    if cmp is None or cmp.op_type not in _COMPARE:
        found = f"{cmp.op_type} node {G.node_label(cmp)!r}" if cmp else f"tensor {name!r}"
        a.problems.append(
            Problem(
                "no_threshold_comparison",
                f"the condition of If node {a.if_node!r} comes from {found}, not from a comparison "
                "of the exit score with a threshold (Greater/Less/GreaterOrEqual/LessOrEqual, "
                "optionally negated): exitgate drives the exit through that threshold. Compute the "
                "condition as `score > threshold` (or <, >=, <=).",
            )
        )
        return
    graph_inputs = {i.name for i in g.input}
    sides = []  # (rank, kind, base, value, score side, op as `score OP threshold`, via)
    for k, (side, other) in enumerate(((cmp.input[1], cmp.input[0]), (cmp.input[0], cmp.input[1]))):
        op = _COMPARE[cmp.op_type] if k == 0 else _MIRROR[_COMPARE[cmp.op_type]]
        base, chain = G.follow(g, side, G.FOLLOW_OPS)
        via = [n.op_type for n in chain]
        value = (
            G.const_value(g, base) if base not in prod or prod[base].op_type == "Constant" else None
        )
        if base in graph_inputs and base != a.image_input and base not in prod:
            sides.append((0, "input", base, None, other, op, via))
        elif value is not None and value.size >= 1 and np.all(value == value.reshape(-1)[0]):
            sides.append((1, "constant", base, float(value.reshape(-1)[0]), other, op, via))
    if not sides:
        a.undetermined.append(
            f"the threshold of comparison {G.node_label(cmp)!r} (neither side is a graph input "
            "or a constant, even through Reshape/Cast/ReduceMax/...; use --threshold=T to name "
            "its value)"
        )
        return
    _, kind, base, value, score, op, via = min(sides, key=lambda s: s[0])
    a.compare_op, a.score_tensor, a.threshold_via = cmp.op_type, score, via
    a.criterion = _criterion(g, score)
    if a.exit_branch is None:  # equal compute: a confidence exits when high, an entropy when low
        high = a.criterion in _CONFIDENCE_LIKE
        if a.criterion == "entropy" or high:
            cond_true_exits = (op in (">", ">=")) == high
            a.exit_branch = "then_branch" if cond_true_exits != negate else "else_branch"
        else:
            a.problems.append(
                Problem(
                    "exit_branch_unknown",
                    f"If node {a.if_node!r}: both branches run the same compute and the score "
                    f"({a.criterion}) does not say which one is the early exit; the exit branch "
                    "must skip work the deep branch does",
                )
            )
            return
    # exit  <=>  (cond is true) == (exit is the then branch);  cond = (score op t) xor negate
    exit_on_true = (a.exit_branch == "then_branch") != negate
    a.exit_when = op if exit_on_true else _COMPLEMENT[op]
    if kind == "input":
        a.threshold_input = base
    else:
        a.threshold_constant = value


def _find_layout(
    a: ExitAnalysis, g: onnx.GraphProto, node: onnx.NodeProto, forced, flag_output
) -> None:
    """The static view of the outputs; ``models.probe`` settles the flag by running the model."""
    from_if = []
    for o in g.output:
        _, above = G.ancestors(g, [o.name])
        if any(n is node for n in above) or o.name in node.output:
            from_if.append(o.name)
    not_from_if = [o for o in a.outputs if o not in from_if]
    if not_from_if:
        a.problems.append(
            Problem(
                "flag_outside_if",
                f"output(s) {', '.join(not_from_if)} are not produced by If node {a.if_node!r}: "
                "the exit flag and outputs must be produced inside the branches",
            )
        )
        return
    if forced is not None and forced not in LAYOUTS:
        raise ValueError(f"--flag-layout: expected one of {', '.join(LAYOUTS)}, got {forced!r}")
    if flag_output is not None and flag_output not in a.outputs:
        a.problems.append(
            Problem(
                "flag_output_mismatch",
                f"flag_output={flag_output!r} is not an output of the model (outputs: "
                f"{', '.join(a.outputs)})",
            )
        )
        return
    a.layout, a.flag_output = forced, flag_output
    out_dims = {o.name: G.dims(o) for o in g.output}
    probs = next((o for o in a.outputs if o != flag_output), a.outputs[0] if a.outputs else None)
    a.probs_output = probs
    d = out_dims.get(probs) if probs else None
    if d and isinstance(d[-1], int) and d[-1] > 1:
        a.num_classes = d[-1] - 1 if forced == "concat" else d[-1]


# --------------------------------------------------------------------------------------------
# rewrites


def _exit_if(g: onnx.GraphProto, a: ExitAnalysis) -> onnx.NodeProto:
    node = G.find_if(g, a.if_node)
    if node is None:  # pragma: no cover - find_if raises for a name it does not find
        raise ValueError(f"{a.source}: If node {a.if_node!r} not found")
    return node


def _comparison(g: onnx.GraphProto, node: onnx.NodeProto) -> onnx.NodeProto:
    prod = G.producers(g)
    name, _ = G.follow(g, node.input[0])
    while prod[name].op_type == "Not":
        name, _ = G.follow(g, prod[name].input[0])
    return prod[name]


def with_threshold_input(model: onnx.ModelProto, a: ExitAnalysis) -> onnx.ModelProto:
    """Return a copy where a baked threshold constant is replaced by a ``threshold`` input [1].

    Only the node that reads the constant on the comparison's threshold side is rewired (exporters
    share constants), through a Reshape to the constant's shape and a Cast to its type, so the
    comparison is exactly the original one for every value of the threshold; a model that already
    has a threshold input is returned unchanged.
    """
    if a.threshold_input is not None:
        return model
    if a.threshold_constant is None or a.if_node is None or a.compare_op is None:
        raise ValueError(f"{a.source}: no threshold to expose ({'; '.join(a.undetermined)})")
    m = G.copy(model)
    g = m.graph
    taken = G.defined_names(g, nested=True) | {o.name for o in g.output}
    if THRESHOLD_INPUT in {t.name for t in g.initializer}:
        # the baked constant is itself named "threshold" (tf2onnx does this): rename it first, or
        # the new input would carry an initializer, i.e. a default that some runtimes fold
        G.rename(g, {THRESHOLD_INPUT: "exitgate_threshold_baked"}, scoped=True)
        taken.discard(THRESHOLD_INPUT)
    name = THRESHOLD_INPUT if THRESHOLD_INPUT not in taken else "exitgate_threshold"
    cmp = _comparison(g, _exit_if(g, a))
    prod = G.producers(g)
    for side in (cmp.input[1], cmp.input[0]):
        base, chain = G.follow(g, side, G.FOLLOW_OPS)
        value = (
            G.const_value(g, base) if base not in prod or prod[base].op_type == "Constant" else None
        )
        if value is not None and value.size >= 1 and np.all(value == value.reshape(-1)[0]):
            break
    else:  # pragma: no cover - analyze found the constant on one side
        raise ValueError(f"{a.source}: the baked threshold of {cmp.name!r} was not found")
    reader = chain[-1] if chain else cmp
    g.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1]))
    shape_name = "exitgate_threshold_shape"
    g.initializer.append(numpy_helper.from_array(np.array(value.shape, np.int64), shape_name))
    new = "exitgate_threshold_reshaped"
    nodes = [
        helper.make_node("Reshape", [name, shape_name], [new], name="exitgate_threshold_reshape")
    ]
    if value.dtype != np.float32:
        to = helper.np_dtype_to_tensor_dtype(value.dtype)
        nodes.append(
            helper.make_node(
                "Cast", [new], ["exitgate_threshold_cast"], to=to, name="exitgate_threshold_cast"
            )
        )
        new = "exitgate_threshold_cast"
    reader.input[:] = [new if i == base else i for i in reader.input]
    pos = list(g.node).index(reader)
    for k, n in enumerate(nodes):
        g.node.insert(pos + k, n)
    return m


def drivable(model: onnx.ModelProto, a: ExitAnalysis, batch: int = 1) -> onnx.ModelProto:
    """The model as the suite runs it: a threshold input, and static input shapes (dynamic dims
    pinned: ``batch`` images of the evaluation data's 32x32x3, the threshold one value)."""
    m = with_threshold_input(model, a)
    shapes: dict[str, list[int]] = {}
    for vi in m.graph.input:
        d = G.dims(vi)
        if d is None or all(isinstance(x, int) and x > 0 for x in d):
            continue
        if vi.name == a.image_input:
            want = [batch, 3, 32, 32] if a.image_layout == "NCHW" else [batch, 32, 32, 3]
            shapes[vi.name] = [
                x if isinstance(x, int) and x > 0 else w for x, w in zip(d, want, strict=True)
            ]
        else:
            shapes[vi.name] = [x if isinstance(x, int) and x > 0 else 1 for x in d]
    return G.pin_inputs(m, shapes) if shapes else m


def reference_model(
    model: onnx.ModelProto, a: ExitAnalysis, force: str | None = None
) -> onnx.ModelProto:
    """A copy that also outputs the exit score (``exitgate_score``, float32) and the model's own
    decision (``exitgate_exits``, True = leaves early); ``force`` = "exit" | "deep" pins a branch.

    Forcing replaces the If condition with a constant, so onnxruntime runs exactly the chosen
    branch with the model's own weights (the decision output still reports the model's own
    condition): the reference for "the output at exit_always equals the exit branch's" and "at
    exit_never equals the deep branch's".
    """
    if a.if_node is None or a.score_tensor is None or a.exit_branch is None:
        raise ValueError(f"{a.source}: the exit is not analysable ({'; '.join(a.undetermined)})")
    m = G.copy(model)
    g = m.graph
    node = _exit_if(g, a)
    cond = node.input[0]
    if SCORE_OUTPUT not in a.outputs:
        g.node.extend(
            [
                helper.make_node(
                    "Cast",
                    [a.score_tensor],
                    [SCORE_OUTPUT],
                    to=onnx.TensorProto.FLOAT,
                    name="exitgate_score_out",
                ),
                helper.make_node(
                    "Identity" if a.exit_branch == "then_branch" else "Not",
                    [cond],
                    [EXITS_OUTPUT],
                    name="exitgate_exits_out",
                ),
            ]
        )
        g.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, onnx.TensorProto.FLOAT, None))
        g.output.append(helper.make_tensor_value_info(EXITS_OUTPUT, onnx.TensorProto.BOOL, None))
    if force is not None:
        if force not in ("exit", "deep"):
            raise ValueError(f"force must be 'exit' or 'deep', got {force!r}")
        take_then = (force == "exit") == (a.exit_branch == "then_branch")
        cname = f"exitgate_forced_{force}"
        g.initializer.append(numpy_helper.from_array(np.array(take_then), cname))
        node.input[0] = cname
    return m
