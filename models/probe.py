"""Settle by running what the graph alone cannot say: which output is the exit flag, the class
count, and the thresholds that force each exit path.

Exporters differ in what they return from an ``If``: the probabilities only (no flag), a flag
output (a scalar, ``[1]`` or ``[N,1]``), or the flag concatenated as the last column. An output is
the flag only if forcing the exit branch makes it the constant 0 and forcing the deep branch the
constant 1; otherwise the path an input took is read by matching the output against the two
forced branches (layout ``none``). The exit paths are defined by the model's own comparison:
``exit_always`` and ``exit_never`` drive the threshold to values that force each branch for that
comparison (``-inf``/``+inf``, the other way round for a ``<`` exit), verified here by running.

onnxruntime on the CPU; no torch, no pytest, no GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper

from . import graph as G
from .structure import (
    EXITS_OUTPUT,
    SCORE_OUTPUT,
    ExitAnalysis,
    Problem,
    analyze,
    drivable,
    exits,
    reference_model,
)

__all__ = ["EXIT_PATHS", "ExitPath", "Settled", "feed", "ort_errors", "probe", "session", "settle"]

EXIT_PATHS = ("exit_always", "exit_never", "exit_default")


@dataclass(frozen=True)
class ExitPath:
    """How the suite drives one exit path: the threshold, and what it must produce."""

    name: str  # exit_always | exit_never | exit_default
    threshold: float
    flag: (
        float | None
    )  # 0.0 = every input leaves early, 1.0 = every input runs deep, None = per input
    branch: str | None  # the branch forced: "exit" | "deep" | None (the model decides)


@dataclass(frozen=True)
class Settled:
    """A model as the suite runs it: the drivable rewrite, its analysis settled by running it
    (check ``analysis.ok``), and how each exit path is driven (empty unless ``ok``)."""

    model: onnx.ModelProto
    analysis: ExitAnalysis
    paths: dict[str, ExitPath]


def settle(
    model: onnx.ModelProto,
    a: ExitAnalysis,
    images: Sequence[np.ndarray],
    default_threshold: float,
    batch: int = 1,
) -> Settled:
    """The one preparation sequence: ``model`` (analysed as ``a``, with the user's options) made
    drivable (:func:`models.structure.drivable`), analysed again, and probed on ``images``.

    ``images`` are NCHW (one image ``(C,H,W)`` or one batch ``(N,C,H,W)`` per run); they are
    transposed here for an NHWC model. ``a`` must be sound (``ok``, nothing undetermined). What
    onnxruntime raises for a model it cannot run (:func:`ort_errors`) is left to the caller.
    """
    if not a.ok or a.undetermined:
        raise ValueError(f"{a.source}: settle needs a sound analysis:\n{a.explain()}")
    runnable = drivable(model, a, batch=batch)
    # the options the user forced are what the static analysis recorded (layout, flag output)
    again = analyze(
        runnable, a.source, layout=a.layout, input_layout=a.image_layout, flag_output=a.flag_output
    )
    if not again.ok or again.undetermined:  # pragma: no cover - the rewrite keeps what was found
        return Settled(runnable, again, {})
    if again.image_layout == "NHWC":
        images = [np.ascontiguousarray(np.moveaxis(x, -3, -1)) for x in images]
    settled, paths = probe(runnable, again, images, default_threshold)
    return Settled(runnable, settled, paths)


def ort_errors() -> tuple[type[Exception], ...]:
    """What onnxruntime raises for a model it cannot load or run (its own classes derive from
    Exception directly), to be turned into one message naming the model."""
    from onnxruntime.capi import onnxruntime_pybind11_state as st

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NotImplemented",
        "RuntimeException",
    )
    return tuple(getattr(st, n) for n in names if hasattr(st, n))


def session(model: onnx.ModelProto):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def feed(
    model: onnx.ModelProto, a: ExitAnalysis, image: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """Inputs for one image (in the model's layout; a batch dim is added unless present)."""
    inputs = {i.name: i for i in model.graph.input}
    out = {}
    if a.image_input is not None:
        dtype = helper.tensor_dtype_to_np_dtype(a.image_dtype)
        batched = image if image.ndim == len(a.image_shape or ()) else image[None]
        out[a.image_input] = np.ascontiguousarray(batched).astype(dtype, copy=False)
    if a.threshold_input is not None:
        vi = inputs[a.threshold_input]
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in (G.dims(vi) or (1,))]
        out[a.threshold_input] = np.full(shape, threshold, dtype)
    return out


def _forcing(exit_when: str) -> list[tuple[float, float]]:
    """(threshold that forces the exit, threshold that forces the deep branch), best first."""
    sign = -1.0 if exit_when in (">", ">=") else 1.0
    return [(sign * math.inf, -sign * math.inf), (sign * 1e6, -sign * 1e6)]


def probe(
    model: onnx.ModelProto,
    a: ExitAnalysis,
    images: Sequence[np.ndarray],
    default_threshold: float,
) -> tuple[ExitAnalysis, dict[str, ExitPath]]:
    """Run the (drivable) model on a few images; the completed analysis and the exit paths.

    Problems found by running are added to the returned analysis (check ``ok``).
    """
    a = replace(a, problems=list(a.problems), undetermined=list(a.undetermined))
    if a.exit_when is None or a.threshold_input is None:
        raise ValueError(f"{a.source}: probe needs an analysed, drivable model")
    names = [o.name for o in model.graph.output]
    runs = {}
    for force in (None, "exit", "deep"):
        s = session(reference_model(model, a, force))
        cols = [o.name for o in s.get_outputs()]
        rows = [
            dict(zip(cols, s.run(None, feed(model, a, x, default_threshold)), strict=True))
            for x in images
        ]
        runs[force] = rows
    ex, dp = runs["exit"], runs["deep"]
    for o in names:
        se, sd = np.shape(ex[0][o]), np.shape(dp[0][o])
        if se != sd:
            a.problems.append(
                Problem(
                    "branch_shape_mismatch",
                    f"If node {a.if_node!r} output {o!r}: the branches yield shapes {list(se)} (exit) "
                    f"and {list(sd)} (deep) when run; they must be identical (different shapes make "
                    "output shapes data-dependent, which TensorRT cannot capture in a CUDA graph)",
                )
            )
    if a.problems:
        return a, {}
    _settle_flag(a, names, ex, dp)
    if a.problems:
        return a, {}
    # the model's own decision agrees with what discovery read from the graph
    score = np.array([float(np.asarray(r[SCORE_OUTPUT]).reshape(-1)[0]) for r in runs[None]])
    own = np.array([bool(np.asarray(r[EXITS_OUTPUT]).reshape(-1)[0]) for r in runs[None]])
    read = exits(score, a.exit_when, default_threshold)
    clear = np.abs(score - default_threshold) > 1e-6
    if np.any(clear & (own != read)):
        a.problems.append(
            Problem(
                "comparison_misread",
                f"If node {a.if_node!r}: the model exits where `{a.describe()}` says it does not "
                f"(scores {score.round(4).tolist()}, model exits {own.tolist()}): exitgate misread the "
                "comparison; please report this model",
            )
        )
        return a, {}
    paths = _forcing_paths(model, a, images, default_threshold)
    return a, paths


def _settle_flag(a: ExitAnalysis, names: list[str], ex: list[dict], dp: list[dict]) -> None:
    def const(rows: list[dict], o: str, value: float, column: bool) -> bool:
        for r in rows:
            v = np.asarray(r[o], dtype=np.float64)
            v = v.reshape(v.shape[0] if v.ndim > 1 else 1, -1)[:, -1] if column else v.reshape(-1)
            if v.size == 0 or not np.all(v == value):
                return False
        return True

    sizes = {o: int(np.asarray(ex[0][o]).size) for o in names}
    # the outputs that are the flag when the branches are forced, by layout (best first; the
    # layout "none", which reads the path by matching outputs, is always possible)
    flags: dict[str, list[str | None]] = {
        "separate": [
            o
            for o in names
            if len(names) >= 2
            and sizes[o] == 1
            and const(ex, o, 0.0, False)
            and const(dp, o, 1.0, False)
        ],
        "concat": [
            o for o in names if sizes[o] > 2 and const(ex, o, 0.0, True) and const(dp, o, 1.0, True)
        ],
        "none": [None],
    }
    found = next(k for k, v in flags.items() if v)
    flag = flags[found][0]
    # what the user forced is checked against that: a named flag must be one (and fixes the
    # layout); a named layout must be "none" (the flag ignored) or one the model has
    layouts = {k for k, v in flags.items() if v}
    if a.flag_output is not None:
        named = [k for k, v in flags.items() if a.flag_output in v]
        if not named:
            a.problems.append(
                Problem(
                    "flag_output_mismatch",
                    f"flag_output={a.flag_output!r}: forcing the branches does not make that output 0 "
                    "(exit) and 1 (deep); "
                    + (
                        f"the flag is {flag!r} ({found} layout)"
                        if flag
                        else "the model has no flag"
                    ),
                )
            )
            return
        found, flag, layouts = named[0], a.flag_output, {named[0]}
    if a.layout is not None and a.layout != found:
        if a.layout not in layouts:
            a.problems.append(
                Problem(
                    "layout_mismatch",
                    f"--flag-layout={a.layout} does not match the model: forcing the branches shows "
                    f"the {found} layout" + (f" (flag {flag!r})" if flag else " (no flag output)"),
                )
            )
            return
        found, flag = a.layout, flags[a.layout][0]
    a.layout, a.flag_output = found, flag
    probs = flag if found == "concat" else next((o for o in names if o != flag), None)
    a.probs_output = probs
    width = int(np.asarray(ex[0][probs]).reshape(1, -1).shape[1]) if probs else 0
    a.num_classes = width - 1 if found == "concat" else width


def _forcing_paths(
    model: onnx.ModelProto, a: ExitAnalysis, images: Sequence[np.ndarray], default: float
) -> dict[str, ExitPath]:
    s = session(reference_model(model, a))

    def decisions(t: float) -> np.ndarray:
        return np.array(
            [
                bool(np.asarray(s.run([EXITS_OUTPUT], feed(model, a, x, t))[0]).reshape(-1)[0])
                for x in images
            ]
        )

    assert a.exit_when is not None
    for t_exit, t_deep in _forcing(a.exit_when):
        if decisions(t_exit).all() and not decisions(t_deep).any():
            return {
                "exit_always": ExitPath("exit_always", t_exit, 0.0, "exit"),
                "exit_never": ExitPath("exit_never", t_deep, 1.0, "deep"),
                "exit_default": ExitPath("exit_default", default, None, None),
            }
    a.problems.append(
        Problem(
            "not_driven",
            f"the exit is not driven by threshold input {a.threshold_input!r}: at thresholds "
            f"{_forcing(a.exit_when)[0]} (which must force the exit and the deep branch for "
            f"`{a.describe()}`) the model's condition still decides otherwise",
        )
    )
    return {}
