#!/usr/bin/env python3
"""Make the corpus of early-exit ONNX models with the real exporters, and verify it (issue 11).

Every model is a tiny convnet (trunk, exit head, deep branch; 8-16 channels) trained for a few
seeded epochs on the project's synthetic dataset, wrapped in an early exit written the way users
write it, and exported by the real toolchain: TensorFlow/Keras -> TFLite -> tf2onnx, tf2onnx from a
tf.function / Keras model / SavedModel, ``torch.jit.script`` + the legacy exporter, ``torch.cond`` +
the dynamo exporter. Each model's threshold is the median of its exit score over
``dataset.eval_split(256)``, so about half of the inputs exit.

Each export is verified on onnxruntime against the framework that made it (1e-4) for a few eval
images: at the model's own threshold, and (threshold inputs) at thresholds that force either branch.
The expected outputs go to ``reference.json`` so that ``--check`` re-verifies the committed files
with onnxruntime alone. ``corpus.toml`` describes each model and what discovery must find.

    python3 -m venv /tmp/exporters && /tmp/exporters/bin/pip install -e '.[exporters]'
    TF_USE_LEGACY_KERAS=1 /tmp/exporters/bin/python tests/corpus/make_corpus.py
    python3 tests/corpus/make_corpus.py --check          # onnx + onnxruntime + numpy only

Files are written only into this folder, each atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before any TensorFlow import (Keras 2)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
from models import dataset  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SEED = 20261211
N_TRAIN = 4000
EPOCHS = 4
N_EVAL = 256  # the threshold is the median exit score over eval_split(N_EVAL)
N_PER_BRANCH = 3  # eval images checked per branch
OPSET = 17
ATOL = 1e-4
FORCE = 1e9  # a threshold beyond any score: forces one branch whatever the criterion
TOML, REFERENCE = HERE / "corpus.toml", HERE / "reference.json"
VERDICTS = ("ok", "no_if", "constant_condition", "branch_shape_mismatch")
CRITERIA = ("max_softmax", "max_logit", "entropy")
COMPARISONS = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}

log = logging.getLogger("make_corpus")


class CorpusError(AssertionError):
    """A corpus model does not behave as its record says; the message names it and the case."""


# --------------------------------------------------------------------------- small utilities


def atomic_write(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one (temp file in the same folder, fsync, rename)."""
    if path.parent != HERE:
        raise ValueError(f"refusing to write outside {HERE}: {path}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=HERE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def nhwc(x: np.ndarray) -> np.ndarray:
    """NCHW images (the dataset's) as the NHWC the TensorFlow models take."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def v(dist: str) -> str:
    return version(dist).split("+")[0]


@contextlib.contextmanager
def quiet():
    """Exporters print progress and warnings; keep the log readable (errors still raise)."""
    buf = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield buf


def opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def iter_nodes(graph: onnx.GraphProto, prefix: str = ""):
    for node in graph.node:
        yield prefix, node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g, f"{prefix}{node.name or node.op_type}/{attr.name}/")


def if_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for _, n in iter_nodes(model.graph) if n.op_type == "If"]


def dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return ["?"]
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim] or []


def condition_expr(model: onnx.ModelProto, depth: int = 5) -> str:
    """The top-level ``If`` condition written as nested ops down to inputs/initializers."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name for t in g.initializer}
    inputs = {i.name for i in g.input}
    ifs = [n for n in g.node if n.op_type == "If"]
    if not ifs:
        return "(no top-level If)"

    def const(arr: np.ndarray) -> str:
        if arr.size > 4:
            return f"const{list(arr.shape)}"
        vals = [round(x, 6) if isinstance(x, float) else x for x in arr.ravel().tolist()]
        return f"const{list(arr.shape)}={vals}"

    def render(name: str, d: int) -> str:
        if name in inputs:
            return f"input:{name}"
        if name in inits:
            return const(
                onnx.numpy_helper.to_array(next(t for t in g.initializer if t.name == name))
            )
        node = producer.get(name)
        if node is None:
            return f"?{name}"
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return "Constant:" + const(onnx.numpy_helper.to_array(node.attribute[0].t))
        if d == 0:
            return f"{node.op_type}(…)"
        args = ", ".join(render(i, d - 1) for i in node.input if i)
        return f"{node.op_type}({args})"

    return render(ifs[0].input[0], depth)


def describe(model: onnx.ModelProto) -> str:
    """A node listing with subgraphs (what ``--show`` prints)."""
    lines = [
        f"opset {opset_of(model)}; producer {model.producer_name} {model.producer_version}",
        *(f"  input  {i.name} {dims(i)}" for i in model.graph.input),
        *(f"  output {o.name} {dims(o)}" for o in model.graph.output),
        f"  condition: {condition_expr(model)}",
    ]
    for prefix, n in iter_nodes(model.graph):
        lines.append(f"  {prefix}{n.op_type} {list(n.input)} -> {list(n.output)}")
    for n in if_nodes(model):
        for attr in n.attribute:
            outs = [(o.name, dims(o)) for o in attr.g.output]
            lines.append(f"  If {n.name} {attr.name} outputs {outs}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- scores and cases


def score_of(criterion: str, logits: np.ndarray) -> float:
    """The exit score of a batch as the models compute it (reduced over the whole batch)."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if criterion == "max_softmax":
        return float(p.max())
    if criterion == "max_logit":
        return float(z.max())
    if criterion == "entropy":
        return float(-(p * np.log(p)).sum())
    raise ValueError(f"unknown criterion {criterion!r}")


def forcing(exit_when: str) -> dict[str, float]:
    """Thresholds that force the exit branch and the deep branch for this comparison."""
    lo, hi = -FORCE, FORCE
    return {"exit": lo, "deep": hi} if exit_when in (">", ">=") else {"exit": hi, "deep": lo}


@dataclass
class Source:
    """What the source code decides: exit when ``criterion(exit head) <exit_when> threshold``."""

    criterion: str
    exit_when: str
    threshold: float
    threshold_input: str | None  # None: baked into the graph
    batch_dynamic: bool
    nhwc: bool


@dataclass
class Built:
    """One exported model and its framework twin."""

    onnx: onnx.ModelProto
    exporter: str
    expect: dict
    source: Source
    # the framework's output for NCHW images and a threshold (ignored where it is baked)
    run: Callable[[np.ndarray, float], list[np.ndarray]]
    family: str  # tf | torch: the trained net it wraps
    notes: list[str] = field(default_factory=list)
    # negative controls whose graph does not compute what the source does: the branch it always takes
    frozen_branch: str | None = None
    # the exporter's output fails onnx.checker (recorded, and re-checked, rather than a failure)
    checker_fails: bool = False
    # an extra check of the framework side (e.g. the TFLite interpreter), given the cases
    extra_check: Callable[[list[dict]], list[str]] | None = None


class Ctx:
    """Trained networks (lazily, once per framework) and the eval images."""

    def __init__(self) -> None:
        self.eval = dataset.eval_split(N_EVAL)
        self._torch = self._tf = None

    def train_data(self):
        return dataset.train_split(N_TRAIN)

    @property
    def torch(self):
        if self._torch is None:
            import _torch_models as tm
            import torch

            torch.set_num_threads(2)
            d = self.train_data()
            t0 = time.perf_counter()
            self._torch = tm.train(d.x, d.y, SEED, EPOCHS)
            self.report("torch", time.perf_counter() - t0)
        return self._torch

    @property
    def tf(self):
        if self._tf is None:
            import _tf_models as tfm

            d = self.train_data()
            t0 = time.perf_counter()
            self._tf = tfm.train(nhwc(d.x), d.y, SEED, EPOCHS)
            self.report("tf", time.perf_counter() - t0)
        return self._tf

    def report(self, family: str, seconds: float) -> None:
        _, p_exit, p_deep = self.components(family, self.eval.x)
        acc = [float((p.argmax(1) == self.eval.y).mean()) for p in (p_exit, p_deep)]
        log.info(
            "trained the %s net in %.1f s: eval accuracy exit head %.3f, deep %.3f",
            family,
            seconds,
            *acc,
        )

    def components(self, family: str, x: np.ndarray):
        if family == "torch":
            import _torch_models as tm

            return tm.components(self.torch, x)
        import _tf_models as tfm

        return tfm.components(self.tf, nhwc(x))

    def median_threshold(self, family: str, criterion: str) -> float:
        logits = self.components(family, self.eval.x)[0]
        scores = [score_of(criterion, logits[i : i + 1]) for i in range(len(logits))]
        return round(float(np.median(scores)), 4)


# --------------------------------------------------------------------------- the models
#
# Every model is one row of SPECS: an exporter route (ROUTES) and how the source writes the exit.
# The expectations, the framework twin and the notes all follow from the row; a route only exports.


@dataclass(frozen=True)
class Spec:
    """One corpus model: the exporter route and how its source code writes the early exit.

    ``compare`` is how the source states the exit (``_tf_models``/``_torch_models`` vocabulary:
    gt, ge, le, lt, lt_swapped, not_le, le_deep_first, const_true); ``exit_when`` is what it means
    (the model exits early when ``score <exit_when> threshold``).
    """

    route: str  # a key of ROUTES
    note: str  # the source, as the record's notes say it ({frozen}, {threshold}: traced only)
    criterion: str = "max_softmax"
    compare: str = "gt"
    exit_when: str = ">"
    layout: str = "concat"  # none | separate | concat | concat_mismatch (1 vs 2 flag columns)
    flag_shape: str = "column"  # separate layout: scalar | [1] | [N,1]
    baked: bool = False  # the graph takes no threshold input (a constant, or frozen by tracing)
    access: str | None = None  # how the source reads the threshold input (the module's default)
    dynamic: str = ""  # "": batch 1; else a dynamic batch (torch.cond: "named" | "auto" Dim)
    verdict: str = "ok"
    opset: int = OPSET
    module: str = ""  # script/traced: the _torch_models class
    optimize: bool = True  # torch.cond: the dynamo exporter's optimize
    checker_fails: bool = False  # the exporter's output fails onnx.checker (recorded)


@dataclass
class Exported:
    """What a route gives back: the file, the framework twin, and what it found out."""

    model: onnx.ModelProto
    run: Callable[[np.ndarray, float], list[np.ndarray]]
    notes: list[str] = field(default_factory=list)
    frozen_branch: str | None = None
    extra_check: Callable[[list[dict]], list[str]] | None = None


@dataclass(frozen=True)
class Route:
    family: str  # tf | torch: which trained net
    exporter: Callable[[Spec], str]  # the record's exporter string
    export: Callable[[Ctx, Spec, float], Exported]


def expect_of(s: Spec, family: str, thr: float) -> dict:
    """What correct discovery finds (``[model.expect]``): criterion only for ``ok``, exit_when and
    threshold wherever the exit is real (ok, branch_shape_mismatch)."""
    real_exit = s.verdict in ("ok", "branch_shape_mismatch")
    e = {
        "verdict": s.verdict,
        "criterion": s.criterion if s.verdict == "ok" else None,
        "exit_when": s.exit_when if real_exit else None,
        "threshold": (f"baked:{thr}" if s.baked else "input:threshold") if real_exit else None,
        "flag_layout": "concat" if s.layout.startswith("concat") else s.layout,
        "flag_shape": s.flag_shape,
        "num_classes": 10,
        "input_layout": "NHWC" if family == "tf" else "NCHW",
        "batch": "dynamic" if s.dynamic else "1",
    }
    return {k: val for k, val in e.items() if val is not None}


def build(ctx: Ctx, s: Spec) -> Built:
    route = ROUTES[s.route]
    thr = ctx.median_threshold(route.family, s.criterion)
    out = route.export(ctx, s, thr)
    frozen = out.frozen_branch or ("exit" if s.compare == "const_true" else None)
    notes = [*out.notes, s.note.format(frozen=frozen, threshold=thr)]
    if route.family == "tf" and deep_style(s) == "const":
        notes.append(DEEP_CONST_NOTE)
    return Built(
        out.model,
        route.exporter(s),
        expect_of(s, route.family, thr),
        Source(
            s.criterion,
            s.exit_when,
            thr,
            None if s.baked else "threshold",
            bool(s.dynamic),
            route.family == "tf",
        ),
        out.run,
        family=route.family,
        notes=notes,
        frozen_branch=frozen,
        checker_fails=s.checker_fails,
        extra_check=out.extra_check,
    )


# ----- TensorFlow / Keras


def tf_exporter(route: str) -> Callable[[Spec], str]:
    def exporter(s: Spec) -> str:
        at = f", opset {s.opset}" if s.opset != OPSET else ""
        return (
            f"tf2onnx {v('tf2onnx')} {route}{at} "
            f"(tensorflow {v('tensorflow')}, Keras 2 tf-keras {v('tf-keras')})"
        )

    return exporter


DEEP_CONST_NOTE = (
    "The deep branch is written with tf.nn ops on tf.constant weights created inside the branch "
    "(the trained Keras weights): with the Keras layers themselves in the branch, tf2onnx 1.17 "
    "cannot convert the branch's Conv (README findings)."
)


def deep_style(s: Spec) -> str:
    """TFLite inlines the weights itself; the graph routes need ``const`` (README finding 10)."""
    return "keras" if s.route == "tflite" else "const"


def exit_kw(s: Spec) -> dict:
    """How the exit is written, as ``_tf_models`` takes it."""
    return dict(
        criterion=s.criterion,
        compare=s.compare,
        layout=s.layout,
        flag_shape=s.flag_shape,
        deep_style=deep_style(s),
    )


def tf_function(ctx: Ctx, s: Spec, thr: float):
    import _tf_models as tfm

    access = {"threshold_access": s.access} if s.access else {}
    return tfm.make_function(
        ctx.tf,
        **exit_kw(s),
        baked=thr if s.baked else None,
        batch=None if s.dynamic else 1,
        **access,
    )


def tf_run(fn, baked: bool):
    import _tf_models as tfm

    def run(x: np.ndarray, t: float) -> list[np.ndarray]:
        if baked:
            return tfm.as_numpy(fn(nhwc(x)))
        return tfm.as_numpy(fn(nhwc(x), np.array([t], np.float32)))

    return run


def export_tflite(ctx: Ctx, s: Spec, thr: float) -> Exported:
    """The forum pipeline: Keras -> TFLite -> tf2onnx; the .tflite itself is checked too."""
    import _tf_models as tfm
    import tf2onnx

    fn = tf_function(ctx, s, thr)
    tflite = tfm.to_tflite(ctx.tf, fn)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.tflite"
        path.write_bytes(tflite)
        with quiet():
            model, _ = tf2onnx.convert.from_tflite(str(path), opset=s.opset)

    def tflite_check(cases: list[dict]) -> list[str]:
        problems = []
        for c in cases:
            got = tfm.run_tflite(tflite, nhwc(ctx.eval.x[c["images"]]))
            want = c["source_outputs"]
            if sorted(g.shape for g in got) != sorted(w.shape for w in want):
                problems.append(f"{c['id']}: TFLite shapes {[g.shape for g in got]}")
                continue
            for w in want:
                g = next(g for g in got if g.shape == w.shape)
                if not np.allclose(g, w, atol=ATOL):
                    problems.append(f"{c['id']}: TFLite interpreter differs from TF")
        return problems

    return Exported(model, tf_run(fn, s.baked), extra_check=tflite_check)


def export_from_function(ctx: Ctx, s: Spec, thr: float) -> Exported:
    import tf2onnx

    fn = tf_function(ctx, s, thr)
    with quiet():
        model, _ = tf2onnx.convert.from_function(
            fn, input_signature=fn.input_signature, opset=s.opset
        )
    return Exported(model, tf_run(fn, s.baked))


def export_from_keras(ctx: Ctx, s: Spec, thr: float) -> Exported:
    """A Keras model whose custom layer holds the tf.cond (threshold baked)."""
    import _tf_models as tfm
    import tf2onnx

    km = tfm.make_keras_model(ctx.tf, thr, **exit_kw(s))
    with quiet():
        model, _ = tf2onnx.convert.from_keras(
            km, input_signature=[tfm.image_spec(None)], opset=s.opset
        )

    def run(x: np.ndarray, t: float | None) -> list[np.ndarray]:
        return tfm.as_numpy(km(nhwc(x), training=False))

    return Exported(model, run)


def export_saved_model(ctx: Ctx, s: Spec, thr: float) -> Exported:
    """SavedModel -> ``python -m tf2onnx.convert --saved-model``."""
    import _tf_models as tfm

    fn = tf_function(ctx, s, thr)
    with tempfile.TemporaryDirectory() as d:
        tfm.save_model(ctx.tf, fn, f"{d}/saved")
        # relative paths: tf2onnx writes "converted from <path>" into the graph's doc_string
        cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", "saved"]
        cmd += ["--opset", str(s.opset), "--output", "model.onnx"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=d)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        model = onnx.load(f"{d}/model.onnx")
    return Exported(model, tf_run(fn, s.baked))


# ----- PyTorch


def torch_run(module):
    import _torch_models as tm
    import torch

    def run(x: np.ndarray, t: float | None) -> list[np.ndarray]:
        with torch.no_grad():
            return tm.as_numpy(module(torch.from_numpy(x), torch.tensor([t], dtype=torch.float32)))

    return run


def output_names(layout: str) -> list[str]:
    if layout.startswith("concat"):
        return ["output"]
    return ["probs"] if layout == "none" else ["probs", "exit_flag"]


def torch_example(ctx: Ctx, s: Spec, thr: float):
    import torch

    n = 2 if s.dynamic else 1
    return torch.from_numpy(ctx.eval.x[:n]), torch.tensor([thr])


def legacy_export(module, example, names: list[str]) -> onnx.ModelProto:
    import torch

    buf = io.BytesIO()
    with quiet():
        torch.onnx.export(
            module,
            example,
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input", "threshold"],
            output_names=names,
        )
    return onnx.load_from_string(buf.getvalue())


def export_script(ctx: Ctx, s: Spec, thr: float) -> Exported:
    """``torch.jit.script`` of a ``_torch_models`` class + the legacy exporter."""
    import _torch_models as tm
    import torch

    scripted = torch.jit.script(getattr(tm, s.module)(ctx.torch).eval())
    model = legacy_export(scripted, torch_example(ctx, s, thr), output_names(s.layout))
    return Exported(model, torch_run(scripted))


def export_traced(ctx: Ctx, s: Spec, thr: float) -> Exported:
    """The legacy exporter *tracing* an eager module: the branch eval image 0 takes is frozen."""
    import _torch_models as tm
    import torch

    eager = getattr(tm, s.module)(ctx.torch).eval()
    example = torch_example(ctx, s, thr)
    with torch.no_grad():
        score = eager.exit_head(eager.trunk(example[0])).softmax(1).max()
    model = legacy_export(eager, example, output_names(s.layout))
    return Exported(model, torch_run(eager), frozen_branch="exit" if score > thr else "deep")


def dynamo_export(
    module, example, names: list[str], *, dynamic: str, optimize: bool = True
) -> tuple[onnx.ModelProto, list]:
    """torch.onnx.export(dynamo=True), asking for opset 17 first; returns (model, notes).

    ``dynamic``: "" (static), "named" (``Dim("batch")``) or "auto" (``Dim.DYNAMIC``, named by torch).
    """
    import torch

    notes = []
    kw = {}
    if dynamic:
        dim = (
            torch.export.Dim("batch", min=1, max=1024)
            if dynamic == "named"
            else torch.export.Dim.DYNAMIC
        )
        kw["dynamic_shapes"] = {"x": {0: dim}, "threshold": None}
    for opset in (OPSET, None):
        try:
            with quiet():
                prog = torch.onnx.export(
                    module,
                    example,
                    dynamo=True,
                    input_names=["input", "threshold"],
                    output_names=names,
                    optimize=optimize,
                    verify=False,
                    **({"opset_version": opset} if opset else {}),
                    **kw,
                )
            model = prog.model_proto
            break
        except Exception as exc:
            if opset is None:
                raise
            first = str(exc).strip().splitlines()[0][:300]
            notes.append(
                f"The dynamo exporter refused opset {opset} ({type(exc).__name__}: {first})."
            )
    return model, notes


def export_cond(ctx: Ctx, s: Spec, thr: float) -> Exported:
    """``torch.cond`` (``_torch_models.CondExit``) + the dynamo exporter."""
    import _torch_models as tm

    access = {"threshold_access": s.access} if s.access else {}
    module = tm.CondExit(
        ctx.torch,
        criterion=s.criterion,
        compare=s.compare,
        layout=s.layout,
        flag_shape=s.flag_shape,
        **access,
    ).eval()
    model, notes = dynamo_export(
        module,
        torch_example(ctx, s, thr),
        output_names(s.layout),
        dynamic=s.dynamic,
        optimize=s.optimize,
    )
    return Exported(model, torch_run(module), notes=notes)


def torch_exporter(how: str, *, onnxscript: bool = False) -> Callable[[Spec], str]:
    def exporter(s: Spec) -> str:
        return f"torch {v('torch')} {how}" + (
            f", onnxscript {v('onnxscript')}" if onnxscript else ""
        )

    return exporter


ROUTES: dict[str, Route] = {
    "tflite": Route("tf", tf_exporter("--tflite"), export_tflite),
    "from_function": Route("tf", tf_exporter("convert.from_function"), export_from_function),
    "from_keras": Route("tf", tf_exporter("convert.from_keras"), export_from_keras),
    "saved_model": Route("tf", tf_exporter("--saved-model (CLI)"), export_saved_model),
    "script": Route(
        "torch",
        torch_exporter("torch.jit.script + torch.onnx.export(dynamo=False)"),
        export_script,
    ),
    "traced": Route(
        "torch", torch_exporter("torch.onnx.export(dynamo=False) tracing"), export_traced
    ),
    "cond": Route(
        "torch",
        torch_exporter("torch.cond + torch.onnx.export(dynamo=True)", onnxscript=True),
        export_cond,
    ),
}

_TFLITE = dict(route="tflite", baked=True, dynamic="dynamic")

# The corpus, in the order of --list and corpus.toml.
SPECS: dict[str, Spec] = {
    # --- TensorFlow / Keras
    "tflite_probs_only": Spec(
        **_TFLITE,
        layout="none",
        flag_shape="none",
        note="The forum user's first model: the If returns the probabilities only, no flag; the "
        "path taken shows only in which branch's probabilities come out.",
    ),
    "tflite_separate_flag": Spec(
        **_TFLITE,
        layout="separate",
        flag_shape="[1]",
        note="tf.cond returns (probs, tf.constant([flag])): two outputs, flag shape [1].",
    ),
    "tflite_concat_flag": Spec(
        **_TFLITE,
        note="The forum workaround: each branch concatenates a flag column, one output [N, 11].",
    ),
    "tflite_shape_mismatch": Spec(
        **_TFLITE,
        layout="concat_mismatch",
        verdict="branch_shape_mismatch",
        checker_fails=True,
        note="Negative control: tf.cond branches return [N, 11] (exit) and [N, 12] (deep); "
        "TensorFlow accepts it (output shape [None, None]). tf2onnx declares no shape on either "
        "branch output ('missing output shape' warnings): the mismatch shows only after pinning "
        "the batch and onnx.shape_inference.infer_shapes(data_prop=True), which gives [1, 11] vs "
        "[1, 12].",
    ),
    "tf_function_concat_dynamic": Spec(
        route="from_function",
        access="index",
        dynamic="dynamic",
        note="Source: tf.cond(reduce_max(softmax) > threshold[0], exit, deep).",
    ),
    "tf_keras_ge_nflag": Spec(
        route="from_keras",
        compare="ge",
        exit_when=">=",
        layout="separate",
        flag_shape="[N,1]",
        baked=True,
        dynamic="dynamic",
        note="Source: a Keras layer holding tf.cond(reduce_max(softmax) >= threshold, exit, deep), "
        "threshold a Python float.",
    ),
    "tf_savedmodel_entropy_le": Spec(
        route="saved_model",
        criterion="entropy",
        compare="le",
        exit_when="<=",
        layout="separate",
        flag_shape="scalar",
        access="squeeze",
        note="Source: tf.cond(-reduce_sum(p * log p) <= squeeze(threshold), exit, deep) "
        "(BranchyNet's entropy criterion); flag a scalar tf.constant per branch.",
    ),
    "tf_function_not_le_logit": Spec(
        route="from_function",
        criterion="max_logit",
        compare="not_le",
        layout="none",
        flag_shape="none",
        baked=True,
        note="Source: tf.cond(tf.logical_not(reduce_max(logits) <= threshold), exit, deep), "
        "threshold a Python float; the If returns the probabilities only.",
    ),
    "tf_function_ge_opset11": Spec(
        route="from_function",
        compare="ge",
        exit_when=">=",
        access="squeeze",
        opset=11,
        note="Source: tf.cond(reduce_max(softmax) >= tf.squeeze(threshold), exit, deep), exported "
        "at opset 11 (the lowest the corpus uses): tf2onnx writes GreaterEqual as Not(Less) below "
        "opset 12, and Squeeze/Reduce* take attributes, not inputs.",
    ),
    "tflite_constant_folded": Spec(
        **_TFLITE,
        compare="const_true",
        verdict="no_if",
        note="Source: tf.cond(tf.constant(True), exit, deep). The TFLite converter folds the "
        "constant condition: the .tflite has no IF op and no deep-branch weights, so tf2onnx "
        "emits a plain graph (the same source through tf2onnx.convert.from_function keeps an "
        "If on a constant but its dead branch is broken: see README findings).",
    ),
    "tf_constant_condition": Spec(
        route="from_function",
        compare="const_true",
        baked=True,
        verdict="constant_condition",
        note="Source: tf.cond(tf.constant(True), exit, deep). Grappler's constant folding in "
        "tf2onnx does not remove the If: its condition is a constant initializer.",
    ),
    # --- PyTorch: torch.jit.script + the legacy exporter
    "script_reducemax_concat": Spec(
        route="script",
        module="ScriptReduceMaxConcat",
        note="Source: if bool(p.max() > threshold.max()): the threshold behind a ReduceMax.",
    ),
    "script_reshape_separate": Spec(
        route="script",
        module="ScriptReshapeSeparate",
        layout="separate",
        flag_shape="[1]",
        note="Source: if bool(p.max() > threshold.reshape(())); flag torch.zeros(1)/ones(1).",
    ),
    "script_scalar_flag": Spec(
        route="script",
        module="ScriptScalarFlag",
        layout="separate",
        flag_shape="scalar",
        note="Source: if bool(p.max() > threshold[0]); flag torch.tensor(0.0)/(1.0), a scalar "
        "constant per branch.",
    ),
    "script_shape_mismatch": Spec(
        route="script",
        module="ScriptShapeMismatch",
        verdict="branch_shape_mismatch",
        note="Negative control: the exit branch returns [N, 11], the deep branch [N, 12] "
        "(torch.ones(N, 2) appended).",
    ),
    "traced_item_control": Spec(
        route="traced",
        module="TracedItem",
        baked=True,
        verdict="no_if",
        note="Traced on eval image 0, which takes the {frozen} branch at threshold {threshold}: "
        "that branch is frozen into the graph.",
    ),
    # --- PyTorch: torch.cond + the dynamo exporter
    "cond_static_concat": Spec(
        route="cond",
        access="as_is",
        note="Source: torch.cond(p.max() > threshold, exit, deep) with threshold of shape [1].",
    ),
    "cond_dynamic_separate": Spec(
        route="cond",
        layout="separate",
        flag_shape="[N,1]",
        dynamic="named",
        note="Source: torch.cond(p.max() > threshold.reshape(()), exit, deep), dynamic_shapes "
        'Dim("batch"); outputs probs [N,10] and exit_flag [N,1].',
    ),
    "cond_ge": Spec(
        route="cond",
        compare="ge",
        exit_when=">=",
        note="Source: torch.cond(p.max() >= threshold.reshape(()), exit, deep).",
    ),
    "cond_lt_swapped": Spec(
        route="cond",
        compare="lt_swapped",
        layout="separate",
        flag_shape="scalar",
        note="Source: torch.cond(threshold.reshape(()) < p.max(), exit, deep): the comparison is "
        "Less with the threshold on the left; exits when the score is greater. Scalar flag output.",
    ),
    "cond_not_le": Spec(
        route="cond",
        compare="not_le",
        layout="separate",
        flag_shape="[1]",
        note="Source: torch.cond(torch.logical_not(p.max() <= threshold.reshape(())), exit, deep); "
        "flag of shape [1].",
    ),
    "cond_branches_swapped": Spec(
        route="cond",
        compare="le_deep_first",
        dynamic="auto",
        note="Source: torch.cond(p.max() <= threshold.reshape(()), deep, exit): the If's "
        "then-branch is the deep one; the model still exits when the score is greater than the "
        "threshold. dynamic_shapes Dim.DYNAMIC (torch names the dimension).",
    ),
    "cond_entropy": Spec(
        route="cond",
        criterion="entropy",
        compare="lt",
        exit_when="<",
        note="Source: torch.cond(-(p * torch.log(p)).sum() < threshold.reshape(()), exit, deep) "
        "(BranchyNet's entropy criterion).",
    ),
    "cond_logit_max": Spec(
        route="cond",
        criterion="max_logit",
        layout="none",
        flag_shape="none",
        note="Source: torch.cond(logits.max() > threshold.reshape(()), exit, deep): no softmax "
        "before the comparison; the If returns the probabilities only (no flag).",
    ),
    "cond_shape_mismatch": Spec(
        route="cond",
        layout="concat_mismatch",
        verdict="branch_shape_mismatch",
        note="Negative control: torch.cond branches return [1, 11] (exit) and [1, 12] (deep). "
        "torch.cond accepts branches of different sizes (the output gets an unbacked symbolic "
        "dim, 'u0' here) and the dynamo exporter writes the If with static branch outputs "
        "[1, 11] and [1, 12].",
    ),
    "cond_constant_condition": Spec(
        route="cond",
        compare="const_true",
        optimize=False,
        verdict="constant_condition",
        note="Source: torch.cond(torch.tensor(True), exit, deep), exported with optimize=False: "
        "the If stays, its condition an Identity of a constant True initializer. With the default "
        "optimize=True the onnxscript optimizer folds the If away (see cond_constant_folded).",
    ),
    "cond_constant_folded": Spec(
        route="cond",
        compare="const_true",
        verdict="no_if",
        note="Source: torch.cond(torch.tensor(True), exit, deep) with the default optimize=True: "
        "the onnxscript optimizer folds the If (no If, no deep branch), yet the threshold input "
        "stays in the graph, unused.",
    ),
}


# --------------------------------------------------------------------------- verification


def ort_session(model_bytes: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def feeds_for(sess, image_input: str, x: np.ndarray, is_nhwc: bool, thr_input: str | None, t):
    feeds = {image_input: nhwc(x) if is_nhwc else np.ascontiguousarray(x)}
    if thr_input is not None:
        meta = next(i for i in sess.get_inputs() if i.name == thr_input)
        shape = [d if isinstance(d, int) else 1 for d in meta.shape]
        feeds[thr_input] = np.full(shape, t, np.float32)
    return feeds


def probs_part(outputs: list[np.ndarray]) -> np.ndarray:
    return outputs[0][..., :10]


def which_branch(outputs, p_exit: np.ndarray, p_deep: np.ndarray) -> str:
    got = probs_part(outputs)
    if got.shape == p_exit.shape and np.allclose(got, p_exit, atol=1e-5):
        return "exit"
    if got.shape == p_deep.shape and np.allclose(got, p_deep, atol=1e-5):
        return "deep"
    return "neither"


def match_outputs(onnx_out: list[np.ndarray], want: list[np.ndarray]) -> list[int]:
    """Index into ``want`` for each ONNX output (exporters may reorder outputs: matched by shape)."""
    if [o.shape for o in onnx_out] == [w.shape for w in want]:
        return list(range(len(want)))
    order = []
    for o in onnx_out:
        cands = [i for i, w in enumerate(want) if w.shape == o.shape and i not in order]
        if len(cands) != 1:
            raise CorpusError(
                f"cannot match ONNX outputs {[o.shape for o in onnx_out]} to the framework's "
                f"{[w.shape for w in want]}"
            )
        order.append(cands[0])
    return order


def make_cases(ctx: Ctx, b: Built) -> list[dict]:
    """Eval images on both sides of the threshold, each at the model's threshold and forced."""
    s = b.source
    cmp = COMPARISONS[s.exit_when]
    logits, p_exit, p_deep = ctx.components(b.family, ctx.eval.x)
    picked: dict[str, list[int]] = {"exit": [], "deep": []}
    for i in range(len(logits)):
        sc = score_of(s.criterion, logits[i : i + 1])
        if abs(sc - s.threshold) < 1e-3 * max(1.0, abs(s.threshold)):
            continue  # too close to call across frameworks
        side = "exit" if cmp(sc, s.threshold) else "deep"
        if len(picked[side]) < N_PER_BRANCH:
            picked[side].append(i)
    images = sorted(picked["exit"] + picked["deep"])
    settings = {"default": s.threshold}
    if s.threshold_input:
        settings |= forcing(s.exit_when)
    groups = [[i] for i in images] + ([images] if s.batch_dynamic else [])
    cases = []
    for setting, t in settings.items():
        for g in groups:
            x = ctx.eval.x[g]
            src = b.run(x, t)
            branch = which_branch(src, p_exit[g], p_deep[g])
            decided = "exit" if cmp(score_of(s.criterion, logits[g]), t) else "deep"
            if b.expect["verdict"] == "ok" and branch != decided:
                raise CorpusError(
                    f"{g} at {t}: the source took {branch}, its criterion says {decided}"
                )
            if b.frozen_branch is None:
                onnx_branch, want = branch, src
            else:  # the graph always computes one branch: it must output that branch's result
                onnx_branch = b.frozen_branch
                want = src if branch == onnx_branch else b.run(x, forcing(">")[onnx_branch])
            cases.append(
                {
                    "id": f"{'batch' if len(g) > 1 else f'i{g[0]}'}-{setting}",
                    "images": g,
                    "threshold": t if s.threshold_input else None,
                    "setting": setting,
                    "source_branch": branch,
                    "branch": onnx_branch,
                    "source_outputs": src,
                    "outputs": want,
                }
            )
    return cases


def structural_problems(model: onnx.ModelProto, e: dict, thr_input: str | None) -> list[str]:
    """What the file must show for its verdict (checked on every make and --check)."""
    p = []
    if not 11 <= opset_of(model) <= 21:
        p.append(f"opset {opset_of(model)} is outside 11..21")
    ifs = if_nodes(model)
    names = {i.name for i in model.graph.input}
    verdict = e["verdict"]
    if verdict == "no_if":
        if ifs:
            p.append("a no_if control contains an If")
    elif not ifs:
        p.append(f"verdict {verdict} but the graph has no If")
    if verdict == "ok" and thr_input and thr_input not in names:
        p.append(f"threshold input {thr_input!r} is not a graph input")
    if verdict == "constant_condition" and ifs:
        producer = {o: n for n in model.graph.node for o in n.output}
        consts = {t.name for t in model.graph.initializer}
        cond = ifs[0].input[0]
        while cond in producer and producer[cond].op_type in ("Identity", "Cast"):
            cond = producer[cond].input[0]
        if cond not in consts and getattr(producer.get(cond), "op_type", "") != "Constant":
            p.append("constant_condition control: the If condition is not a constant")
    if verdict == "branch_shape_mismatch" and ifs:
        shapes = inferred_branch_dims(model)
        if shapes.get("then_branch") == shapes.get("else_branch"):
            p.append(f"branch_shape_mismatch control: branch outputs agree {shapes}")
    if e["batch"] == "dynamic":
        d0 = dims(model.graph.input[0])[0]
        if not isinstance(d0, str) or not d0:
            p.append(f"batch 'dynamic' but the image input's first dim is {d0!r}")
    return p


def inferred_branch_dims(model: onnx.ModelProto) -> dict[str, list]:
    """The top-level If's branch output dims after pinning dynamic input dims to 1 and running
    ONNX shape inference with data propagation (declared dims where inference adds nothing)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    node = next(n for n in m.graph.node if n.op_type == "If")
    return {a.name: [dims(o) for o in a.g.output] for a in node.attribute}


def flag_problems(e: dict, outputs: list[np.ndarray], branch: str, cid: str) -> list[str]:
    want = 0.0 if branch == "exit" else 1.0
    layout = e["flag_layout"]
    if layout == "none":
        return []
    probs = next(o for o in outputs if o.ndim == 2 and o.shape[-1] >= 10)
    if layout == "concat":
        flag = probs[..., -1]
    else:
        flag = next(o for o in outputs if o is not probs)
        shape = {"scalar": (), "[1]": (1,), "[N,1]": (probs.shape[0], 1)}[e["flag_shape"]]
        if flag.shape != shape:
            return [f"{cid}: flag shape {flag.shape}, expected {e['flag_shape']}"]
    if not np.all(flag == want):
        return [f"{cid}: flag {flag.ravel().tolist()} on the {branch} branch, expected {want}"]
    return []


def checker_error(model: onnx.ModelProto) -> str | None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        return str(exc).strip().splitlines()[0].rstrip(".")
    return None


def verify(
    name: str,
    model_bytes: bytes,
    e: dict,
    nhwc: bool,
    thr_input: str | None,
    cases: list[dict],
    checker: str | None = None,
) -> list[str]:
    """onnxruntime on the file against the expected outputs of every case; returns problems.

    ``checker``: the onnx.checker error this file is known to raise (None: it must pass).
    """
    model = onnx.load_from_string(model_bytes)
    problems = []
    if (got := checker_error(model)) != checker:
        problems.append(f"onnx.checker: {got or 'passes'}; expected {checker or 'a pass'}")
    problems += structural_problems(model, e, thr_input)
    sess = ort_session(model_bytes)
    image_input = model.graph.input[0].name
    seen = set()
    for c in cases:
        x = dataset_eval().x[c["images"]]
        feeds = feeds_for(sess, image_input, x, nhwc, thr_input, c["threshold"])
        got = sess.run(None, feeds)
        want = [np.asarray(w, np.float32) for w in c["outputs"]]
        order = match_outputs(got, want)
        for k, g in zip(order, got, strict=True):
            if g.shape != want[k].shape or not np.allclose(g, want[k], atol=ATOL, rtol=0):
                err = np.abs(g - want[k]).max() if g.shape == want[k].shape else "shape"
                problems.append(f"{c['id']}: output {k} differs from the source (max err {err})")
        problems += flag_problems(e, got, c["branch"], c["id"])
        seen.add((c["setting"], c["branch"]))
        if (
            c["setting"] in ("exit", "deep")
            and c["branch"] != c["setting"]
            and e["verdict"] == "ok"
        ):
            problems.append(f"{c['id']}: forcing the {c['setting']} branch took {c['branch']}")
    if e["verdict"] == "ok" and not {("default", "exit"), ("default", "deep")} <= seen:
        problems.append("the model's own threshold does not send inputs both ways")
    return [f"{name}: {p}" for p in problems]


_EVAL = None


def dataset_eval():
    global _EVAL
    if _EVAL is None:
        _EVAL = dataset.eval_split(N_EVAL)
    return _EVAL


# --------------------------------------------------------------------------- records


def toml_value(val) -> str:
    if isinstance(val, str):
        return json.dumps(val, ensure_ascii=False)
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, int):
        return str(val)
    if isinstance(val, float):
        return repr(val)
    raise TypeError(val)


def write_toml(records: list[dict]) -> None:
    lines = [
        "# The exitgate corpus: early-exit ONNX models made by real exporters.",
        "# Generated by tests/corpus/make_corpus.py (do not edit by hand; see README.md).",
        "# expect.* is what correct discovery must find: exit_when is the model's true semantics",
        "# (it exits early when `score <exit_when> threshold`).",
    ]
    for r in records:
        lines += ["", "[[model]]"]
        for k in ("name", "path", "exporter", "suite_threshold", "notes"):
            if r.get(k) is not None:
                lines.append(f"{k} = {toml_value(r[k])}")
        lines.append("[model.expect]")
        for k, val in r["expect"].items():
            lines.append(f"{k} = {toml_value(val)}")
    atomic_write(TOML, ("\n".join(lines) + "\n").encode())


def load_records() -> tuple[list[dict], dict]:
    records = tomllib.loads(TOML.read_text())["model"] if TOML.exists() else []
    refs = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
    return records, refs


def write_reference(refs: dict) -> None:
    """One model per line (diffable), keys sorted (deterministic)."""
    body = ",\n".join(
        f"{json.dumps(k)}: {json.dumps(refs[k], sort_keys=True)}" for k in sorted(refs)
    )
    atomic_write(REFERENCE, ("{\n" + body + "\n}\n").encode())


def f32_list(a: np.ndarray):
    """float32 values as JSON (9 significant digits round-trip a float32)."""
    a = np.asarray(a, np.float32)
    return {"shape": list(a.shape), "data": [float(f"{x:.9g}") for x in a.ravel().tolist()]}


def from_f32(d) -> np.ndarray:
    return np.asarray(d["data"], np.float32).reshape(d["shape"])


# --------------------------------------------------------------------------- main


def make(names: list[str], show: bool) -> int:
    ctx = Ctx()
    records, refs = load_records()
    by_name = {r["name"]: r for r in records}
    failures = []
    for name in names:
        t0 = time.perf_counter()
        b = build(ctx, SPECS[name])
        model_bytes = b.onnx.SerializeToString()
        if show:
            print(f"== {name}\n{describe(b.onnx)}")
        cases = make_cases(ctx, b)
        s = b.source
        graph_inputs = {i.name for i in b.onnx.graph.input}
        thr_input = s.threshold_input if s.threshold_input in graph_inputs else None
        if s.threshold_input and not thr_input:
            b.notes.append(f"The exporter dropped the {s.threshold_input!r} input.")
        checker = checker_error(b.onnx) if b.checker_fails else None
        if b.checker_fails and checker:
            b.notes.append(
                f"onnx.checker.check_model rejects the file: {checker}; onnxruntime runs it."
            )
        problems = verify(name, model_bytes, b.expect, s.nhwc, thr_input, cases, checker)
        if b.extra_check:
            problems += [f"{name}: {p}" for p in b.extra_check(cases)]
        if b.frozen_branch is not None:
            differ = sum(c["source_branch"] != c["branch"] for c in cases)
            b.notes.append(
                f"The graph always computes the {b.frozen_branch} branch"
                + (
                    f"; the source model took the other one on {differ} of the {len(cases)} "
                    "checked cases."
                    if differ
                    else ", as the source does."
                )
            )
        if opset_of(b.onnx) != OPSET and "opset" not in b.exporter:
            b.notes.append(f"Exported at opset {opset_of(b.onnx)} (asked for {OPSET}).")
        b.notes.append(f"Condition as exported: {condition_expr(b.onnx)}.")
        if problems:
            failures += problems
            log.error("%s: NOT written:\n  %s", name, "\n  ".join(problems))
            continue
        path = HERE / f"{name}.onnx"
        atomic_write(path, model_bytes)
        by_name[name] = {
            "name": name,
            "path": path.name,
            "exporter": b.exporter,
            "suite_threshold": s.threshold if thr_input else None,
            "notes": " ".join(b.notes),
            "expect": b.expect,
        }
        refs[name] = {
            "sha256": sha256(model_bytes),
            "nhwc": s.nhwc,
            "threshold_input": thr_input,
            "checker": checker,
            "cases": [
                {
                    k: ([f32_list(o) for o in c[k]] if k == "outputs" else c[k])
                    for k in ("id", "images", "threshold", "setting", "branch", "outputs")
                }
                for c in cases
            ],
        }
        write_reference(refs)
        write_toml([by_name[n] for n in sorted(by_name, key=order_key)])
        log.info(
            "%s: %d bytes, opset %d, %d cases verified (%.1f s)",
            name,
            len(model_bytes),
            opset_of(b.onnx),
            len(cases),
            time.perf_counter() - t0,
        )
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


def order_key(name: str) -> int:
    return list(SPECS).index(name) if name in SPECS else len(SPECS)


def check(names: list[str] | None) -> int:
    records, refs = load_records()
    problems = []
    for r in records:
        if names and r["name"] not in names:
            continue
        data = (HERE / r["path"]).read_bytes()
        ref = refs.get(r["name"])
        if ref is None:
            problems.append(f"{r['name']}: no reference outputs in {REFERENCE.name}")
            continue
        if sha256(data) != ref["sha256"]:
            problems.append(f"{r['name']}: {r['path']} changed since its references were made")
            continue
        cases = [{**c, "outputs": [from_f32(o) for o in c["outputs"]]} for c in ref["cases"]]
        problems += verify(
            r["name"],
            data,
            r["expect"],
            ref["nhwc"],
            ref["threshold_input"],
            cases,
            ref.get("checker"),
        )
        print(f"ok  {r['name']:<28} {len(cases)} cases", flush=True)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated model names (default: all)")
    ap.add_argument("--check", action="store_true", help="verify the committed files only")
    ap.add_argument("--show", action="store_true", help="print each exported graph")
    ap.add_argument("--list", action="store_true", help="list the model names")
    args = ap.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # TensorFlow puts a handler on the root logger
    for noisy in (
        "torch.onnx",
        "torch.export",
        "torch._dynamo",
        "onnxscript",
        "onnx_ir",
        "tf2onnx",
    ):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if args.list:
        print("\n".join(SPECS))
        return 0
    names = None
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in SPECS]
        if unknown:
            ap.error(f"--only: unknown model(s) {unknown}; known: {', '.join(SPECS)}")
    if args.check:
        return check(names)
    return make(names or list(SPECS), args.show)


if __name__ == "__main__":
    sys.exit(main())
