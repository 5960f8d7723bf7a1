"""The split strategies' wiring contract, on the CPU, with the real TensorRT-RTX parser and builder.

``fixtures/backends/tensorrt/halves.py`` runs a split model as two TensorRT engines: the deep engine reads every
boundary tensor straight from the trunk engine's device buffer (``set_tensor_address``), and the
conditional-graph kernel (``fixtures/gpu/cond_graph.py``) reads the trunk's ``go_deep`` to decide. That
only works if both halves agree on every boundary tensor's shape and data type and ``go_deep`` is
the float32 scalar the kernel dereferences. Running the engines needs a GPU TensorRT runs on; this
test proves the contract where it can be proved without one: for every zoo model, flag layout and
precision, both halves are split (``models.split.split_at_if``), parsed and **built** with
TensorRT-RTX, and the networks' I/O (what the plans were built from: deserialising a plan needs a
GPU) are held to the same check ``TensorRTEngine.bind_input`` applies at run time
(:func:`fixtures.backends.tensorrt.engine.wiring_problem`).

It stands in for the first run of the wiring on a device; it does not prove the bytes arrive.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest

from fixtures.backends.base import TensorSpec
from fixtures.backends.tensorrt import build as trt_build
from fixtures.backends.tensorrt import compat, plan_cache
from fixtures.backends.tensorrt import engine as trt_engine
from fixtures.gpu import cond_graph
from models import precision as prec
from models.artifacts import ArtifactCache
from models.calibration import calibration_images
from models.split import GO_DEEP, SplitModels, split_at_if
from models.structure import analyze, load_model, with_threshold_input
from models.zoo import LAYOUTS, ZOO, onnx_path
from tests.onnx_graphs import early_exit_graph

RTX_MISSING = (
    "the wiring contract builds both halves with TensorRT-RTX: pip install tensorrt-rtx-cu13 "
    "(its parser and builder run on a CPU)"
)
PRECISIONS = ("fp32", "fp16", "int8")
BUILD = {"opt_level": 0, "workspace_bytes": 1 << 28}


@pytest.fixture(scope="module")
def rtx():
    trt = pytest.importorskip("tensorrt_rtx", reason=RTX_MISSING)
    mp = pytest.MonkeyPatch()
    mp.setenv(compat.FLAVOR_ENV, "tensorrt_rtx")
    yield trt
    mp.undo()


@pytest.fixture(scope="module")
def cache():
    return ArtifactCache()  # the project cache ($EXITGATE_CACHE_DIR): zoo exports are shared


def _zoo_cases() -> list[tuple[str, str, str]]:
    return [(m, layout, p) for m in ZOO for layout in LAYOUTS for p in PRECISIONS]


def _artifact(cache, model: str, layout: str, precision: str) -> Path:
    pytest.importorskip("torch", reason="zoo exports need PyTorch: pip install -e .[zoo]")

    src = onnx_path(ZOO[model], layout, cache)
    if precision == "fp16":
        return prec.fp16_artifact(cache, src)
    if precision == "int8":
        return prec.int8_artifact(cache, src, _calibration())
    return src


@functools.cache
def _calibration() -> np.ndarray:
    return calibration_images(None)  # the default set, as the workspace uses it


def _split(path: Path, layout: str) -> SplitModels:
    model = load_model(path)
    return split_at_if(model, analyze(model, str(path), layout=layout))


def _specs(rtx, tensors: list[dict]) -> dict[str, TensorSpec]:
    """Network I/O (``network_summary``) as the TensorSpecs TensorRTEngine would make of them."""
    return {
        t["name"]: TensorSpec(
            t["name"],
            tuple(t["shape"]),
            compat.numpy_dtype(rtx, getattr(rtx.DataType, t["dtype"]), t["name"], "network I/O"),
        )
        for t in tensors
    }


def _halves(rtx, split: SplitModels, precision: str, label: str) -> dict[str, dict]:
    """Both halves parsed and built with TensorRT-RTX; their I/O specs."""
    out = {}
    for half in ("trunk", "deep"):
        data = getattr(split, half).SerializeToString()
        summary = compat.inspect_onnx(data)
        plan = trt_build.build_plan(data, precision, "strong", **BUILD)
        assert plan_cache.check_plan(rtx, plan) is None, (
            f"{label} {half}: the plan header is rejected"
        )
        assert summary["conditional_layers"]["CONDITION"] == 0, f"{label} {half} kept the If"
        out[half] = {
            "inputs": _specs(rtx, summary["inputs"]),
            "outputs": _specs(rtx, summary["outputs"]),
        }
    return out


def assert_wiring(rtx, split: SplitModels, precision: str, label: str) -> None:
    __tracebackhide__ = True
    h = _halves(rtx, split, precision, label)
    trunk_out, trunk_in = h["trunk"]["outputs"], h["trunk"]["inputs"]
    deep_in, deep_out = h["deep"]["inputs"], h["deep"]["outputs"]
    # every deep input is bound to something the trunk engine owns: nothing is left unbound
    assert sorted(deep_in) == sorted([*split.boundary, *split.passthrough]), (
        f"{label}: deep engine inputs {sorted(deep_in)} are not the boundary {split.boundary} + "
        f"passthrough {split.passthrough}"
    )
    assert split.boundary, f"{label}: a split without boundary tensors"
    for name in split.boundary:
        src = trunk_out.get(name)
        assert src is not None, f"{label}: boundary tensor {name!r} is not a trunk engine output"
        problem = trt_engine.wiring_problem(src, f"{label} trunk", deep_in[name], f"{label} deep")
        assert problem is None, problem
    for name in split.passthrough:
        problem = trt_engine.wiring_problem(
            trunk_in[name], f"{label} trunk (input)", deep_in[name], f"{label} deep"
        )
        assert problem is None, problem
    # the decision: what cond_graph's kernel and SplitHost read at the trunk's go_deep pointer
    go = trunk_out.get(GO_DEEP)
    assert go is not None, f"{label}: the trunk engine has no {GO_DEEP!r} output"
    assert (go.dtype, go.shape) == (np.dtype(np.float32), (1,)), (
        f"{label}: {GO_DEEP} is {go.dtype} {go.shape}; the conditional-node kernel reads one float32"
    )
    # read_outputs returns the deep engine's outputs or the trunk's exit outputs: same layout
    for name in split.outputs:
        assert (
            trt_engine.wiring_problem(trunk_out[name], "trunk", deep_out[name], "deep") is None
        ), (
            f"{label}: output {name!r} differs between the exit (trunk) and the deep engine: "
            f"{trunk_out[name]} vs {deep_out[name]}"
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "layout", "precision"),
    _zoo_cases(),
    ids=[f"{m}-{p}-{lay}" for m, lay, p in _zoo_cases()],
)
def test_zoo_halves_wire_up(rtx, cache, model: str, layout: str, precision: str) -> None:
    split = _split(_artifact(cache, model, layout, precision), layout)
    assert_wiring(rtx, split, precision, f"{model}-{precision}-{layout}")


@pytest.mark.parametrize(
    ("layout", "nhwc", "threshold_as_input"),
    [("concat", False, True), ("separate", False, True), ("concat", True, False)],
    ids=["concat", "separate", "concat-nhwc-baked_threshold"],
)
def test_hand_built_halves_wire_up(rtx, tmp_path, layout: str, nhwc: bool, threshold_as_input):
    model = early_exit_graph(layout, nhwc=nhwc, threshold_as_input=threshold_as_input)
    a = analyze(model, layout=layout)
    if a.threshold_input is None:
        model = with_threshold_input(model, a)
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    assert_wiring(rtx, _split(path, layout), "fp32", f"hand-built {layout}")


def test_the_kernel_reads_a_float32_decision() -> None:
    """The other side of the decision contract, from the code that reads it on the device."""
    import inspect

    src = cond_graph.KERNEL_SOURCE
    assert re.search(r"const float\*\s*decision", src), "the kernel no longer reads a float*"
    assert re.search(r"\*decision\s*>\s*0\.5f", src), "the kernel no longer compares with 0.5"
    host = inspect.getsource(cond_graph.SplitHost)
    assert "PinnedScalar(np.float32)" in host and "value > 0.5" in host


@pytest.mark.slow
def test_halves_of_different_precisions_are_refused_naming_both(rtx, cache) -> None:
    """Negative control with real networks: the trunk of the fp16 artifact and the deep half of
    the fp32 one disagree on the boundary's data type; the run-time check names both tensors."""
    fp16 = _split(_artifact(cache, "resnet8", "concat", "fp16"), "concat")
    fp32 = _split(_artifact(cache, "resnet8", "concat", "fp32"), "concat")
    trunk = _specs(rtx, compat.inspect_onnx(fp16.trunk.SerializeToString())["outputs"])
    deep = _specs(rtx, compat.inspect_onnx(fp32.deep.SerializeToString())["inputs"])
    (name,) = fp16.boundary
    problem = trt_engine.wiring_problem(
        trunk[name], "resnet8 fp16 trunk", deep[name], "resnet8 fp32 deep"
    )
    assert problem is not None
    assert f"resnet8 fp32 deep input {name!r} (float32" in problem
    assert f"resnet8 fp16 trunk tensor {name!r} (float16" in problem
    assert "data type float16 vs float32" in problem
