"""Self-tests of the TensorRT backend (fixtures/backends/tensorrt/).

Real TensorRT for RTX (``tensorrt_rtx``) wherever it runs: its ONNX parser and builder work on a
CPU-only machine, so parsing, conditional-layer detection, building, the plan cache and header
validation are exercised for real. What needs a GPU (deserialising, the inspector, running) is
tested on a GPU machine and skips with the reason elsewhere. Versions that cannot be installed
here (8.6, 10.x, 11.x) are covered through **stand-ins**, each labelled as one.
"""

from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import json
import multiprocessing
import os
import subprocess
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fixtures.backends.base import BackendUnavailable, Engine, TensorSpec, get_backend
from fixtures.backends.onnxruntime import session
from fixtures.backends.tensorrt import build as trt_build
from fixtures.backends.tensorrt import calibrator as calib
from fixtures.backends.tensorrt import compat, plan_cache
from fixtures.backends.tensorrt import engine as trt_engine
from fixtures.backends.tensorrt import inspector as trt_inspector
from fixtures.devices import load_profile
from fixtures.gpu import cuda
from models._io import atomic_write_text, sha256_bytes
from models.artifacts import ArtifactCache
from models.artifacts import ArtifactCache as Cache
from tests.onnx_graphs import custom_op_graph, early_exit_graph, no_if_graph

REPO = Path(__file__).resolve().parent.parent
RTX_MISSING = (
    "TensorRT for RTX is not installed: pip install tensorrt-rtx-cu13 (CPU parser+builder)"
)
CPU_DEVICE = {"name": "cpu-only build host", "compute_capability": None}
OPTS = {"workspace_bytes": 1 << 28, "opt_level": 0}


@pytest.fixture
def rtx(monkeypatch: pytest.MonkeyPatch):
    """The real ``tensorrt_rtx`` module, selected for exitgate (and spawned workers) by env."""
    trt = pytest.importorskip("tensorrt_rtx", reason=RTX_MISSING)
    monkeypatch.setenv(compat.FLAVOR_ENV, "tensorrt_rtx")
    return trt


@pytest.fixture
def onnx_file(tmp_path: Path):
    def write(model, name: str = "model") -> Path:
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        return path

    return write


def _no_gpu_reason() -> str | None:
    return cuda.available()


# ---- import ---------------------------------------------------------------------------------------


def test_importing_the_backend_loads_no_tensorrt() -> None:
    code = (
        "import sys, fixtures.backends.tensorrt.engine, fixtures.backends.tensorrt.inspector, "
        "fixtures.backends.tensorrt.halves; "
        "print(sorted(m for m in ('tensorrt', 'tensorrt_rtx', 'onnx') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_flavor_follows_the_environment(rtx, monkeypatch: pytest.MonkeyPatch) -> None:
    assert compat.import_tensorrt() == (rtx, "tensorrt_rtx")
    monkeypatch.delenv(compat.FLAVOR_ENV)
    monkeypatch.setenv("POLYGRAPHY_USE_TENSORRT_RTX", "1")
    assert compat.import_tensorrt()[1] == "tensorrt_rtx"
    monkeypatch.setenv(compat.FLAVOR_ENV, "tensorrt-rtx")
    with pytest.raises(BackendUnavailable, match="EXITGATE_TRT_FLAVOR='tensorrt-rtx': expected"):
        compat.import_tensorrt()


def test_missing_tensorrt_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules is Python's own way to make an import fail (ModuleNotFoundError): the
    # message is checked whether or not a real tensorrt is installed here
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setenv(compat.FLAVOR_ENV, "tensorrt")
    with pytest.raises(BackendUnavailable) as info:
        compat.import_tensorrt()
    msg = str(info.value)
    assert "tensorrt: ModuleNotFoundError" in msg
    assert "pip install tensorrt-rtx-cu13" in msg and "--system-site-packages" in msg


class _StubsOnly(importlib.abc.MetaPathFinder):
    """Resolves ``tensorrt`` from one folder only, so a real tensorrt elsewhere cannot win."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def find_spec(self, name, path=None, target=None):
        if name != "tensorrt":
            return None
        return importlib.machinery.PathFinder.find_spec(name, [self.folder])


@pytest.fixture
def stubs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding ``tensorrt/__init__.pyi`` only, as ``pip install tensorrt-stubs`` leaves in
    site-packages, that ``import tensorrt`` resolves to (ahead of any real tensorrt installed): it
    yields an empty namespace package (measured-here.md)."""
    folder = tmp_path / "site"
    (folder / "tensorrt").mkdir(parents=True)
    (folder / "tensorrt" / "__init__.pyi").write_text("class Builder: ...\n")
    monkeypatch.setattr(sys, "meta_path", [_StubsOnly(folder), *sys.meta_path])
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.delenv(compat.FLAVOR_ENV, raising=False)
    monkeypatch.delenv("POLYGRAPHY_USE_TENSORRT_RTX", raising=False)
    return folder


def test_stubs_only_tensorrt_falls_through_to_rtx(rtx, stubs_folder: Path) -> None:
    assert (
        compat.FLAVOR_ENV not in os.environ
    )  # the default order: tensorrt first, then tensorrt_rtx
    import tensorrt  # the crash condition: this succeeds, as an empty namespace package

    assert tensorrt.__file__ is None and not hasattr(tensorrt, "ILogger")
    assert compat.import_tensorrt() == (rtx, "tensorrt_rtx")


def test_stubs_only_tensorrt_is_named_when_it_is_the_only_one(stubs_folder: Path, monkeypatch):
    monkeypatch.setenv(compat.FLAVOR_ENV, "tensorrt")
    with pytest.raises(BackendUnavailable) as info:
        compat.import_tensorrt()
    msg = str(info.value)
    assert f"an empty namespace package at {stubs_folder / 'tensorrt'}" in msg
    assert "without Builder, ILogger, Runtime, OnnxParser" in msg
    assert "pip uninstall tensorrt-stubs" in msg and "pip install tensorrt-rtx-cu13" in msg


def test_stubs_only_tensorrt_in_a_fresh_interpreter(rtx, stubs_folder: Path) -> None:
    """The same from a new process with the folder on PYTHONPATH (as an installed package)."""
    code = (
        "import tensorrt, fixtures.backends.tensorrt.compat as c; "
        "print(tensorrt.__file__, c.import_tensorrt()[1], c.inspect_onnx.__name__)"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (compat.FLAVOR_ENV, "POLYGRAPHY_USE_TENSORRT_RTX")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(stubs_folder), str(REPO)])
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "tensorrt_rtx", "inspect_onnx"], out.stdout + out.stderr


# ---- network flags and precision modes ------------------------------------------------------------


class _Flags86(enum.IntEnum):
    """STAND-IN for TensorRT 8.6's NetworkDefinitionCreationFlag (trt-api-facts.md §0/§2)."""

    EXPLICIT_BATCH = 0
    EXPLICIT_PRECISION = 1


class _Flags10(enum.IntEnum):
    """STAND-IN for TensorRT 10.x's NetworkDefinitionCreationFlag (10.3 NvInfer.h)."""

    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class _Flags11(enum.IntEnum):
    """STAND-IN for TensorRT 11.x's NetworkDefinitionCreationFlag (EXPLICIT_BATCH is gone)."""

    STRONGLY_TYPED = 0
    PREFER_JIT_PYTHON_PLUGINS = 1
    PREFER_AOT_PYTHON_PLUGINS = 2


class _Builder86(enum.IntEnum):
    """STAND-IN for BuilderFlag of 8.6 / 10.x (FP16 and INT8 exist)."""

    FP16 = 0
    INT8 = 1
    TF32 = 7


class _Builder11(enum.IntEnum):
    """STAND-IN for BuilderFlag of 11.x (precision flags removed)."""

    TF32 = 5


def _standin(name: str, flags: type, builder: type) -> SimpleNamespace:
    """A STAND-IN tensorrt module: only the enums the flag/mode logic reads."""
    return SimpleNamespace(
        __name__=name,
        __version__="stand-in",
        NetworkDefinitionCreationFlag=flags,
        BuilderFlag=builder,
    )


STANDINS = {
    "8.6": _standin("tensorrt (8.6 stand-in)", _Flags86, _Builder86),
    "10.x": _standin("tensorrt (10.x stand-in)", _Flags10, _Builder86),
    "11.x": _standin("tensorrt (11.x stand-in)", _Flags11, _Builder11),
}


@pytest.mark.parametrize(
    ("version", "strong", "weak"),
    [("8.6", 1, 1), ("10.x", 2, 0), ("11.x", 1, 0)],
    ids=["trt8_6", "trt10", "trt11"],
)
def test_network_flags_on_standin_enums(version: str, strong: int, weak: int) -> None:
    """8.6: EXPLICIT_BATCH (bit 0) always; 10.x: STRONGLY_TYPED is bit 1, EXPLICIT_BATCH left out
    (ignored there); 11.x: STRONGLY_TYPED is bit 0 and bit 1 would be PREFER_JIT_PYTHON_PLUGINS."""
    trt = STANDINS[version]
    assert (compat.network_flags(trt, strong=True), compat.network_flags(trt, strong=False)) == (
        strong,
        weak,
    )


def test_network_flags_on_real_rtx(rtx) -> None:
    assert not hasattr(rtx.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert int(rtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
    assert (compat.network_flags(rtx, strong=True), compat.network_flags(rtx, strong=False)) == (
        1,
        0,
    )


@pytest.mark.parametrize(
    ("version", "auto", "weak_ok", "strong_ok"),
    [("8.6", "weak", True, False), ("10.x", "strong", True, True), ("11.x", "strong", False, True)],
    ids=["trt8_6", "trt10", "trt11"],
)
def test_precision_modes_on_standins(version: str, auto: str, weak_ok: bool, strong_ok: bool):
    trt = STANDINS[version]
    assert compat.resolve_mode(trt, "auto", "int8") == auto
    for mode, ok in (("weak", weak_ok), ("strong", strong_ok)):
        if ok:
            assert compat.resolve_mode(trt, mode, "fp16") == mode
        else:
            with pytest.raises(compat.PrecisionModeError, match=f"--precision-mode={mode} needs"):
                compat.resolve_mode(trt, mode, "fp16")


def test_weak_mode_is_refused_by_rtx(rtx) -> None:
    assert compat.resolve_mode(rtx, "auto", "fp16") == "strong"
    with pytest.raises(compat.PrecisionModeError) as info:
        compat.resolve_mode(rtx, "weak", "int8")
    assert "tensorrt_rtx 1." in str(info.value) and "--precision-mode=strong" in str(info.value)
    with pytest.raises(compat.PrecisionModeError, match="got 'fast'"):
        compat.resolve_mode(rtx, "fast", "fp32")


# ---- parsing and the conditional ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "nhwc", "outputs"),
    [("concat", False, 1), ("separate", False, 2), ("concat", True, 1)],
    ids=["concat", "separate", "concat-nhwc"],
)
def test_parser_keeps_the_conditional(rtx, onnx_file, layout: str, nhwc: bool, outputs: int):
    summary = compat.inspect_onnx(onnx_file(early_exit_graph(layout, nhwc=nhwc)))
    assert summary["flavor"] == "tensorrt_rtx"
    assert summary["conditional_layers"] == {
        "CONDITION": 1,
        "CONDITIONAL_INPUT": 2,
        "CONDITIONAL_OUTPUT": outputs,
    }
    assert [o["name"] for o in summary["outputs"]] == (
        ["output"] if layout == "concat" else ["probs", "exit_flag"]
    )
    b = summary["branches"]
    assert (b["trunk_conv"], b["exit_branch_identity_0"], b["deep_branch_conv_0"]) == (
        "trunk",
        "exit",
        "deep",
    )
    assert b["deep_fc_w"] == "deep"  # a branch's weights (CONSTANT layers) belong to the branch
    assert summary["layers_per_branch"]["boundary"] == 1 + 2 + outputs


def test_baked_threshold_still_a_conditional(rtx) -> None:
    summary = compat.inspect_onnx(early_exit_graph(threshold_as_input=False).SerializeToString())
    assert summary["conditional_layers"]["CONDITION"] == 1
    assert [i["name"] for i in summary["inputs"]] == ["input"]


def test_constant_condition_is_folded_by_the_parser(rtx) -> None:
    """Recorded with tensorrt-rtx 1.7.1: an If on a constant condition is imported as the taken
    branch only (no CONDITION layer): the early exit silently disappears from the engine."""
    folded = compat.inspect_onnx(early_exit_graph(const_condition=True).SerializeToString())
    assert folded["conditional_layers"] == dict.fromkeys(compat.CONDITIONAL_LAYER_TYPES, 0)
    assert (
        "CONVOLUTION" in folded["layers"] and folded["layers"]["CONVOLUTION"] == 1
    )  # no deep conv
    assert set(folded["layers_per_branch"]) == {"trunk"}


def test_traced_away_exit_has_no_conditional(rtx) -> None:
    summary = compat.inspect_onnx(no_if_graph().SerializeToString())
    assert summary["conditional_layers"] == dict.fromkeys(compat.CONDITIONAL_LAYER_TYPES, 0)
    assert summary["layers"]["CONVOLUTION"] == 2


def test_parser_error_names_node_operator_and_description(rtx, onnx_file) -> None:
    path = onnx_file(custom_op_graph(), "mystery")
    with pytest.raises(compat.TrtParseError) as info:
        compat.inspect_onnx(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "node 1 'mystery_node' (ExitgateMystery): INVALID_NODE:" in msg
    assert "Plugin not found" in msg and "hint: an operator is neither" in msg
    assert info.value.errors[0]["node_operator"] == "ExitgateMystery"


def _int32_bias_model():
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.arange(4, dtype=np.int32), "bias_q"),
        numpy_helper.from_array(np.array(0.5, np.float32), "bias_scale"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["bias_q", "bias_scale"], ["bias"], name="bias_dq"),
        helper.make_node("Add", ["x", "bias"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "int32_dq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_int32_dequantize_gets_the_quantize_bias_hint(rtx) -> None:
    """Real RTX parser error for an int32 DequantizeLinear (onnxruntime's quantized bias)."""
    with pytest.raises(compat.TrtParseError) as info:
        compat.inspect_onnx(_int32_bias_model().SerializeToString())
    msg = str(info.value)
    assert "'bias_dq' (DequantizeLinear)" in msg and "Int32" in msg
    assert "QuantizeBias=False" in msg


class _ParserError86:
    """STAND-IN for a TensorRT 8.6 ``ParserError``: code/desc/node/file/line/func, and no
    node_name/node_operator (those arrived in 10.x). 8.6 cannot be installed here."""

    def __init__(self, desc: str, node: int = 30) -> None:
        self._desc, self._node = desc, node

    def code(self):
        return SimpleNamespace(name="UNSUPPORTED_NODE")

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def file(self) -> str:
        return "ModelImporter.cpp"

    def line(self) -> int:
        return 223

    def func(self) -> str:
        return "importModel"


MULTI_IF_DESC = (
    "Assertion failed: (node.output().size() <= static_cast<int32_t>(outputs.size())) && \
Node has more output tensors than TRT expected."
)


def test_multi_output_if_gets_the_trt86_hint() -> None:
    err = compat.format_parser_errors(
        [_ParserError86(MULTI_IF_DESC)], early_exit_graph("separate").SerializeToString()
    )
    msg = str(err)
    assert "node 30: UNSUPPORTED_NODE: Assertion failed" in msg
    assert "[ModelImporter.cpp:223 importModel]" in msg
    assert "If with more than one output (early_exit_if)" in msg
    assert "`concat` flag layout" in msg and "fixed in the 10.0 parser" in msg
    assert len(err.hints) == 1
    # the same text on a model whose If has one output is another problem: no such hint
    single = compat.format_parser_errors(
        [_ParserError86(MULTI_IF_DESC)], early_exit_graph("concat").SerializeToString()
    )
    assert not any("multi-output" in h or "more than one output" in h for h in single.hints)


def test_new_opset_gets_a_hint() -> None:
    model = custom_op_graph()
    model.opset_import[0].version = 21
    err = compat.format_parser_errors(
        [{"node": 3, "code": "UNSUPPORTED_NODE", "desc": "No importer registered for op: Foo"}],
        model.SerializeToString(),
    )
    assert "node 3: UNSUPPORTED_NODE: No importer registered for op: Foo" in str(err)
    assert "opset (21)" in str(err) and "opset_version=17" in str(err)


# ---- building -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["concat", "separate"])
def test_build_fp32_plan_on_cpu(rtx, onnx_file, tmp_path: Path, layout: str) -> None:
    timing_cache = tmp_path / "timing.cache"
    plan = trt_build.build_plan(
        onnx_file(early_exit_graph(layout)),
        "fp32",
        "auto",
        workspace_bytes=1 << 28,
        opt_level=0,
        timing_cache_path=timing_cache,
    )
    assert isinstance(plan, bytes) and len(plan) > 10_000
    assert plan_cache.check_plan(rtx, plan) is None
    # TensorRT-RTX keeps the timing-cache API only as deprecated no-ops: exitgate skips it
    assert not timing_cache.exists()


def test_build_targets_one_rtx_architecture(rtx) -> None:
    data = early_exit_graph().SerializeToString()
    assert trt_build.build_plan(data, "fp32", "strong", compute_capability="8.6", opt_level=0)
    with pytest.raises(BackendUnavailable, match=r"cannot build for compute capability 9\.0"):
        trt_build.build_plan(data, "fp32", "strong", compute_capability="9.0")


def test_rtx_plans_require_user_allocation(rtx) -> None:
    """TensorRT-RTX needs BuilderFlag.REQUIRE_USER_ALLOCATION for CUDA stream capture (RTX 1.2
    release notes). Real RTX builder: the flag is set by default and changes the plan (builds are
    otherwise deterministic), and asking for it where it does not exist is an error."""
    assert hasattr(rtx.BuilderFlag, "REQUIRE_USER_ALLOCATION")
    data = early_exit_graph().SerializeToString()
    default, again = (trt_build.build_plan(data, "fp32", "strong", opt_level=0) for _ in range(2))
    with_flag = trt_build.build_plan(data, "fp32", "strong", opt_level=0, user_allocation=True)
    without = trt_build.build_plan(data, "fp32", "strong", opt_level=0, user_allocation=False)
    assert default == again == with_flag != without


def test_user_allocation_needs_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full TensorRT (8.6-11.x) has no REQUIRE_USER_ALLOCATION: asking for it says so before any
    parsing (STAND-IN 10.x module: only the enums read before the refusal)."""
    standin = STANDINS["10.x"]
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: (standin, "tensorrt"))
    data = early_exit_graph().SerializeToString()
    with pytest.raises(trt_build.TrtBuildError) as info:
        trt_build.build_plan(data, "fp32", "strong", user_allocation=True)
    assert "needs BuilderFlag.REQUIRE_USER_ALLOCATION, which tensorrt stand-in" in str(info.value)


def test_build_failure_carries_the_builders_log(rtx) -> None:
    """Real RTX: a zero workspace fails the build; the error has the log and the hint."""
    with pytest.raises(trt_build.TrtBuildError) as info:
        trt_build.build_plan(
            early_exit_graph().SerializeToString(), "fp32", "strong", workspace_bytes=0
        )
    msg = str(info.value)
    assert "[ERROR]" in msg and "workspace" in msg.lower()
    assert "hint: the build ran out of memory; the builder workspace limit is 0 MiB" in msg


def test_strong_mode_refuses_a_mislabelled_artifact(rtx) -> None:
    fp32 = early_exit_graph().SerializeToString()
    with pytest.raises(compat.PrecisionModeError, match="has no float16 tensors"):
        trt_build.build_plan(fp32, "fp16", "strong")
    with pytest.raises(compat.PrecisionModeError, match="no QuantizeLinear/DequantizeLinear"):
        trt_build.build_plan(fp32, "int8", "auto")
    assert trt_build.onnx_precision_markers(_int32_bias_model().SerializeToString()) == {
        "float16": False,
        "qdq": True,
    }


# ---- INT8 calibrator (weak mode; 8.x/10.x only) ---------------------------------------------------


class _FakeMemory:
    """STAND-IN for fixtures.gpu.cuda's malloc/memcpy_htod/free (no GPU here): records the copies."""

    def __init__(self) -> None:
        self.next, self.live, self.copies = 0x1000, set(), []

    def malloc(self, nbytes: int) -> int:
        self.next += 0x1000
        self.live.add(self.next)
        return self.next

    def memcpy_htod(self, ptr: int, array: np.ndarray) -> None:
        assert ptr in self.live
        self.copies.append((ptr, array.copy()))

    def free(self, ptr: int) -> None:
        self.live.remove(ptr)


def test_entropy_calibrator_on_a_standin_base(tmp_path: Path) -> None:
    """The calibrator's logic against a STAND-IN ``IInt8EntropyCalibrator2`` (a plain class: the
    real one exists only in 8.x/10.x, and feeding it needs device memory)."""
    trt = SimpleNamespace(
        __name__="tensorrt (stand-in)",
        __version__="stand-in",
        IInt8EntropyCalibrator2=type("Base", (), {"__init__": lambda s: None}),
    )
    images = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    inputs = {
        "input": ((1, 32, 32, 3), np.dtype(np.float32)),  # an NHWC model
        "threshold": ((1,), np.dtype(np.float32)),
    }
    mem, cache = _FakeMemory(), tmp_path / "calib" / "model.cache"
    cal = calib.entropy_calibrator(trt, images, cache, inputs, memory=mem)
    assert cal.get_batch_size() == 1 and cal.read_calibration_cache() is None
    served = [cal.get_batch(["input", "threshold"]) for _ in range(5)]
    assert all(len(p) == 2 for p in served) and cal.get_batch(["input", "threshold"]) is None
    assert cal.error is None and cal.batches_served == 5 and not mem.live  # freed at the end
    np.testing.assert_array_equal(mem.copies[2][1], images[1:2].transpose(0, 2, 3, 1))
    assert mem.copies[1][1].tolist() == [1.0]  # threshold 1.0: every image runs the deep branch
    cal.write_calibration_cache(memoryview(b"TRT-8601-EntropyCalibration2\n"))
    assert cache.read_bytes() == cal.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\n"
    bad = calib.entropy_calibrator(trt, images[:, :, :16], None, inputs, memory=_FakeMemory())
    assert bad.get_batch(["input", "threshold"]) is None and "must be float32 NCHW" in str(
        bad.error
    )


def test_rtx_has_no_calibrator(rtx) -> None:
    with pytest.raises(compat.PrecisionModeError, match="no IInt8EntropyCalibrator2"):
        calib.entropy_calibrator_class(rtx)


# ---- plan cache -----------------------------------------------------------------------------------


def _cache_worker(root: str, onnx_paths: list[str], barrier, queue) -> None:
    try:
        cache = Cache(root)
        barrier.wait(timeout=120)
        paths = [
            str(plan_cache.cached_plan(cache, p, "fp32", "auto", OPTS, CPU_DEVICE))
            for p in onnx_paths
        ]
        queue.put((cache.builds.get(plan_cache.PLAN_KIND, 0), paths, None))
    except BaseException:  # noqa: BLE001 - reported to the parent
        queue.put((0, [], traceback.format_exc()))


def test_parallel_workers_build_each_plan_once(rtx, onnx_file, tmp_path: Path) -> None:
    sources = [str(onnx_file(early_exit_graph(lay), lay)) for lay in ("concat", "separate")]
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_cache_worker, args=(str(tmp_path / "cache"), sources, barrier, queue))
        for _ in range(4)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=180) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert [r[2] for r in results if r[2]] == []
    assert sum(r[0] for r in results) == 2, f"builds per worker: {[r[0] for r in results]}"
    assert len({tuple(r[1]) for r in results}) == 1  # everyone got the same two entries
    cache = ArtifactCache(tmp_path / "cache")
    for path in results[0][1]:
        assert plan_cache.check_plan(rtx, plan_cache.load_plan(cache, path)) is None


def test_damaged_entries_are_rebuilt(rtx, onnx_file, tmp_path: Path) -> None:
    cache, src = ArtifactCache(tmp_path / "cache"), onnx_file(early_exit_graph())
    path = plan_cache.cached_plan(cache, src, "fp32", "strong", OPTS, CPU_DEVICE)
    size = path.stat().st_size
    assert plan_cache.cached_plan(cache, src, "fp32", "strong", OPTS, CPU_DEVICE) == path
    assert cache.builds == {plan_cache.PLAN_KIND: 1}
    # 1. truncated: the checksum record no longer matches
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(plan_cache.PlanCacheError, match="does not match its checksum record"):
        plan_cache.load_plan(cache, path)
    assert plan_cache.cached_plan(cache, src, "fp32", "strong", OPTS, CPU_DEVICE) == path
    assert cache.builds == {plan_cache.PLAN_KIND: 2} and path.stat().st_size == size
    # 2. garbage with a consistent record: TensorRT's header check (get_engine_validity) says so

    garbage = b"not a TensorRT plan " * 64
    meta_path = path.with_name(path.stem + ".meta.json")
    meta = json.loads(meta_path.read_text())
    path.write_bytes(garbage)
    atomic_write_text(
        meta_path, json.dumps({**meta, "size": len(garbage), "sha256": sha256_bytes(garbage)})
    )
    assert "MALFORMED_ENGINE" in (plan_cache.check_plan(rtx, path) or "")
    assert plan_cache.cached_plan(cache, src, "fp32", "strong", OPTS, CPU_DEVICE) == path
    assert cache.builds == {plan_cache.PLAN_KIND: 3} and plan_cache.check_plan(rtx, path) is None


def test_full_tensorrt_has_no_plan_header_check() -> None:
    """``Runtime.get_engine_validity`` is TensorRT-RTX only (absent from NVIDIA's binding sources
    through 11.1: tests/test_trt_conformance.py): on full TensorRT (STAND-IN 10.x module, which
    has neither it nor EngineInvalidityDiagnostics) only emptiness is checked."""
    standin = STANDINS["10.x"]
    assert not hasattr(standin, "Runtime")  # never reached: the feature check comes first
    assert plan_cache.check_plan(standin, b"not a plan") is None
    assert plan_cache.check_plan(standin, b"") == "the plan is empty"


def test_plans_load_only_from_inside_the_cache(rtx, onnx_file, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    path = plan_cache.cached_plan(
        cache, onnx_file(early_exit_graph()), "fp32", "strong", OPTS, CPU_DEVICE
    )
    assert plan_cache.load_plan(cache, path) == path.read_bytes()
    outside = tmp_path / "elsewhere" / path.name
    outside.parent.mkdir()
    outside.write_bytes(path.read_bytes())
    with pytest.raises(plan_cache.PlanCacheError) as info:
        plan_cache.load_plan(cache, outside)
    assert f"refusing to load the TensorRT plan {outside}" in str(info.value)
    assert f"outside the engine cache {cache.root}" in str(info.value)
    link = (
        cache.root / plan_cache.PLAN_KIND / "link.plan"
    )  # a link inside the cache to a file outside
    link.symlink_to(outside)
    with pytest.raises(plan_cache.PlanCacheError, match="outside the engine cache"):
        plan_cache.load_plan(cache, link)


def test_plan_key_covers_what_the_plan_depends_on(rtx, onnx_file) -> None:
    a, b = onnx_file(early_exit_graph(), "a"), onnx_file(early_exit_graph(seed=1), "b")
    base = plan_cache.plan_key(rtx, "tensorrt_rtx", a, "fp32", "strong", OPTS, CPU_DEVICE)
    assert base["tensorrt"] == rtx.__version__ and base["flavor"] == "tensorrt_rtx"
    variants = [
        plan_cache.plan_key(rtx, "tensorrt_rtx", b, "fp32", "strong", OPTS, CPU_DEVICE),
        plan_cache.plan_key(rtx, "tensorrt_rtx", a, "fp16", "strong", OPTS, CPU_DEVICE),
        plan_cache.plan_key(
            rtx, "tensorrt_rtx", a, "fp32", "strong", {**OPTS, "opt_level": 3}, CPU_DEVICE
        ),
        plan_cache.plan_key(
            rtx,
            "tensorrt_rtx",
            a,
            "fp32",
            "strong",
            OPTS,
            {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"},
        ),
        plan_cache.plan_key(
            rtx,
            "tensorrt_rtx",
            a,
            "fp32",
            "strong",
            {**OPTS, "calibration": np.zeros((2, 3, 32, 32), np.float32)},
            CPU_DEVICE,
        ),
    ]
    assert all(v != base for v in variants)
    same = plan_cache.plan_key(
        rtx,
        "tensorrt_rtx",
        a,
        "fp32",
        "strong",
        {**OPTS, "timing_cache_path": "/x/t.cache"},
        CPU_DEVICE,
    )
    assert same == base  # side caches do not change what the plan computes
    json.dumps(variants[-1])  # arrays are keyed by hash: the key stays JSON


# ---- engine inspector audit -----------------------------------------------------------------------

# STAND-IN inspector documents, shaped like TensorRT 10.x (Format/Datatype) and 11.x (split fields)
# engine information (trt-api-facts.md §7); real ones need a deserialised engine, i.e. a GPU.
INSPECTOR_10 = {
    "Layers": [
        {
            "Name": "trunk_conv + trunk_relu",
            "LayerType": "CaskConvolution",
            "Outputs": [
                {
                    "Name": "trunk",
                    "Format/Datatype": "Channel major FP16 format where channel % 8 == 0",
                }
            ],
            "Metadata": "[ONNX Layer: trunk_conv]\x1f[ONNX Layer: trunk_relu]",
        },
        {"Name": "(Unnamed Layer* 15) [IfCondition]", "LayerType": "IfConditional", "Outputs": []},
        {
            "Name": "deep_branch_conv_0 + deep_branch_relu_1",
            "LayerType": "CaskConvolution",
            "Outputs": [{"Name": "deep_relu", "Format/Datatype": "Row major linear FP32"}],
            "Metadata": "[ONNX Layer: deep_branch_conv_0 | deep_branch (else_branch) | early_exit_if (If)]",
        },
        {
            "Name": "{ForeignNode[exit_branch_identity_0...exit_branch_concat_2]}",
            "LayerType": "Myelin",
            "Outputs": [{"Name": "exit_branch_out", "Format/Datatype": "Row major linear FP32"}],
        },
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to deep_branch_maxpool_2",
            "LayerType": "Reformat",
            "Outputs": [{"Name": "x", "Format/Datatype": "Row major linear Half"}],
        },
        {
            "Name": "early_exit_if_OutputLayer",
            "LayerType": "IfConditionalOutput",
            "Outputs": [{"Name": "output", "Format/Datatype": "Row major linear FP32"}],
        },
        {"Name": "mystery", "LayerType": "Shuffle", "Outputs": [{"Name": "m", "Dimensions": [1]}]},
    ],
    "Bindings": ["input", "threshold", "output"],
}
INSPECTOR_11 = {
    "Layers": [
        {
            "Name": "trunk_conv + trunk_relu",
            "LayerType": "CaskConvolution",
            "Outputs": [{"Name": "trunk", "Format": "Channel major 8-wide", "DataType": "Int8"}],
        },
        {
            "Name": "deep_branch_conv_0",
            "LayerType": "CaskConvolution",
            "Outputs": [{"Name": "deep_conv", "Format": "Row major linear", "DataType": "Float"}],
        },
    ],
    "I/O Tensors": [{"Name": "input", "IOMode": "Input", "DataType": "Float"}],
}


def test_inspector_json_is_parsed_defensively() -> None:
    v10 = trt_inspector.parse_engine_information(INSPECTOR_10)
    assert v10[0] == trt_inspector.LayerPrecision(
        "trunk_conv + trunk_relu", "CaskConvolution", ("fp16",), ("trunk_conv", "trunk_relu")
    )
    assert [lp.output_dtypes for lp in v10[1:]] == [
        (),
        ("fp32",),
        ("fp32",),
        ("fp16",),
        ("fp32",),
        ("?",),
    ]
    v11 = trt_inspector.parse_engine_information(INSPECTOR_11)
    assert [lp.output_dtypes for lp in v11] == [("int8",), ("fp32",)]
    assert trt_inspector.parse_engine_information({"Layers": ["a", "b"]})[
        1
    ] == trt_inspector.LayerPrecision("b", "", ())


def test_audit_groups_engine_layers_by_branch(rtx) -> None:
    branches = compat.inspect_onnx(early_exit_graph().SerializeToString())["branches"]
    audit = trt_inspector.audit_by_branch(
        trt_inspector.parse_engine_information(INSPECTOR_10), branches
    )
    assert audit["trunk"] == {"layers": ["trunk_conv + trunk_relu"], "dtypes": {"fp16": 1}}
    assert audit["deep"]["layers"] == [
        "deep_branch_conv_0 + deep_branch_relu_1",
        "Reformatting CopyNode for Input Tensor 0 to deep_branch_maxpool_2",
    ]
    assert audit["deep"]["dtypes"] == {"fp32": 1, "fp16": 1}
    assert audit["exit"]["layers"] == [
        "{ForeignNode[exit_branch_identity_0...exit_branch_concat_2]}"
    ]
    assert len(audit["boundary"]["layers"]) == 2 and audit["unknown"]["layers"] == ["mystery"]
    # without the network's branch map, the metadata's (else_branch) still places a layer
    bare = trt_inspector.audit_by_branch(trt_inspector.parse_engine_information(INSPECTOR_10))
    assert bare["deep"]["layers"] == ["deep_branch_conv_0 + deep_branch_relu_1"]


# ---- runtime (needs a GPU the flavor supports) ----------------------------------------------------


def test_inspector_needs_a_gpu_to_deserialize(rtx) -> None:
    """Recorded with tensorrt-rtx 1.7.1 on a CPU-only machine: the plan cannot be deserialised
    (cudaError 35), so neither the inspector nor the runtime can be used without a GPU."""
    if _no_gpu_reason() is None:
        pytest.skip("a GPU is present: the inspector is exercised by the GPU tests")
    plan = trt_build.build_plan(
        early_exit_graph().SerializeToString(), "fp32", "strong", opt_level=0
    )
    with pytest.raises(BackendUnavailable, match="needs a deserialized engine") as info:
        trt_inspector.layer_precisions(plan)
    assert "cudaError 35" in str(info.value)


def test_build_without_gpu_is_unavailable(rtx, onnx_file, tmp_path: Path) -> None:
    if _no_gpu_reason() is None:
        pytest.skip("a GPU is present: the engine tests below run instead")
    with pytest.raises(BackendUnavailable) as info:
        trt_engine.build(
            onnx_file(early_exit_graph()), "fp32", cache=ArtifactCache(tmp_path / "cache")
        )
    msg = str(info.value)
    assert "tensorrt_rtx 1." in msg and "runs engines on a CUDA GPU" in msg
    assert "tensorrt-rtx-cu13 on RTX-class GPUs" in msg and "JetPack" in msg


def _standin_gpu(name: str, cc: str) -> dict:
    """STAND-IN for fixtures.gpu.cuda.device_properties() of a GPU this machine does not have."""
    major, minor = (int(v) for v in cc.split("."))
    return {
        "device": 0,
        "name": name,
        "compute_capability": cc,
        "major": major,
        "minor": minor,
        "integrated": False,
        "total_memory": 24 << 30,
        "multiprocessors": 128,
    }


class _StubEngine:
    """STAND-IN for TensorRTEngine (deserialising needs a GPU): keeps what it was given."""

    def __init__(self, plan: bytes, precision: str, **kw) -> None:
        self.plan, self.precision, self.kw, self.info = plan, precision, kw, {}


def test_build_plumbs_profile_cache_and_rtx_target(rtx, onnx_file, tmp_path, monkeypatch) -> None:
    """``build()`` up to the engine, with a STAND-IN RTX 4090 (CC 8.9) and a stub engine: the real
    RTX builder makes an SM89 plan from the profile's options, cached and loaded from the cache."""
    assert get_backend("tensorrt") is trt_engine.build
    monkeypatch.setattr(
        trt_engine, "_device_or_skip", lambda trt, flavor: _standin_gpu("RTX 4090", "8.9")
    )
    monkeypatch.setattr(trt_engine, "TensorRTEngine", _StubEngine)
    cache, src = ArtifactCache(tmp_path / "cache"), onnx_file(early_exit_graph())
    engine = trt_engine.build(src, "fp32", cache=cache, profile=load_profile("rtx-4090"))
    assert engine.info["compute_capability"] == "8.9" and engine.info["mode"] == "strong"
    assert engine.info["workspace_bytes"] == 8192 << 20 and engine.info["opt_level"] == 3
    assert engine.info["user_allocation"] is True  # keyed: an old plan without it is rebuilt
    assert (
        cache.contains(engine.info["plan"])
        and engine.plan == Path(engine.info["plan"]).read_bytes()
    )
    assert plan_cache.check_plan(rtx, engine.plan) is None and cache.builds == {
        plan_cache.PLAN_KIND: 1
    }
    trt_engine.build(src, "fp32", cache=cache, profile=load_profile("rtx-4090"))
    assert cache.builds == {plan_cache.PLAN_KIND: 1}  # second session: served from the cache


def test_rtx_on_a_hopper_gpu_is_unavailable(rtx, onnx_file, tmp_path, monkeypatch) -> None:
    """What an H100/H200 user of tensorrt_rtx sees (STAND-IN device properties): a skip that
    names flavor, device and the TensorRT to install, before any build."""
    props = _standin_gpu("NVIDIA H100 80GB HBM3", "9.0")
    monkeypatch.setattr(trt_engine, "_device_or_skip", lambda trt, flavor: props)
    cache = ArtifactCache(tmp_path / "cache")
    with pytest.raises(BackendUnavailable) as info:
        trt_engine.build(onnx_file(early_exit_graph()), "fp32", cache=cache)
    msg = str(info.value)
    assert "tensorrt_rtx 1." in msg and "NVIDIA H100 80GB HBM3 (compute capability 9.0)" in msg
    assert "pip install tensorrt-cu12" in msg and "EXITGATE_TRT_FLAVOR=tensorrt" in msg
    assert cache.builds == {}


# ---- engine I/O types: what numpy cannot hold ------------------------------------------------------


def _bf16_input_model():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT, name="to_fp32")],
        "bf16_io",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("name", ["BF16", "FP8", "INT4", "FP4"])
def test_unsupported_io_types_get_a_clear_error(rtx, name: str) -> None:
    """Real RTX enums: ``trt.nptype`` raises a bare TypeError for these; exitgate names the
    tensor, the type and what to do."""
    dtype = getattr(rtx.DataType, name)
    with pytest.raises(TypeError, match="Could not resolve TensorRT datatype"):
        rtx.nptype(dtype)
    with pytest.raises(compat.TensorTypeError) as info:
        compat.numpy_dtype(rtx, dtype, "logits", "resnet8 fp16 trunk")
    msg = str(info.value)
    assert f"resnet8 fp16 trunk: tensor 'logits' has TensorRT type {name}" in msg
    assert "keep_io_types=True" in msg
    assert compat.numpy_dtype(rtx, rtx.DataType.HALF, "x", "here") == np.float16


def test_bf16_network_input_is_refused_by_name(rtx) -> None:
    """A real RTX network with a BF16 input (parsed from ONNX): the calibrator's input table (and
    the engine's I/O table, same helper) refuse it by name instead of raising a bare TypeError."""
    parsed = compat.parse_onnx(rtx, _bf16_input_model().SerializeToString(), strong=True)
    assert parsed.network.get_input(0).dtype == rtx.DataType.BF16
    with pytest.raises(
        compat.TensorTypeError, match=r"calibrating bf16\.onnx: tensor 'x' has TensorRT type BF16"
    ):
        trt_build._network_inputs(rtx, parsed.network, "bf16.onnx")


# ---- engine lifecycle and wiring (STAND-IN context and buffers: creating them needs a GPU) --------


class _StandinContext:
    """STAND-IN for ``IExecutionContext``: records addresses and enqueues, and refuses argument
    kinds the way the RTX binding declares them (``set_tensor_address(name: str, memory:
    SupportsInt)``, ``execute_async_v3(stream_handle: SupportsInt)``, ``is_stream_capturable(
    stream: SupportsInt)``; the conformance test checks those signatures on the real binding)."""

    def __init__(self, capturable: bool = True) -> None:
        self.addresses: dict[str, int] = {}
        self.enqueued: list[int] = []
        self.capturable = capturable

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if not isinstance(name, str) or not isinstance(memory, int):
            raise TypeError(f"set_tensor_address(): incompatible arguments {name!r}, {memory!r}")
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if not isinstance(stream_handle, int):
            raise TypeError("execute_async_v3(): incompatible arguments")
        self.enqueued.append(stream_handle)
        return True

    def is_stream_capturable(self, stream: int) -> bool:
        if not isinstance(stream, int):
            raise TypeError("is_stream_capturable(): incompatible arguments")
        return self.capturable


class _StandinBuffer:
    """STAND-IN for ``fixtures.gpu.cuda.DeviceBuffer``: a fake device pointer; close() frees it."""

    next_ptr = 0x10000

    def __init__(self, shape: tuple[int, ...], dtype) -> None:
        _StandinBuffer.next_ptr += 0x1000
        self.shape, self.dtype, self.ptr, self.frees = shape, np.dtype(dtype), self.next_ptr, 0

    def close(self) -> None:
        if self.ptr:
            self.frees += 1
        self.ptr = 0


def _standin_engine(label: str, inputs, outputs, ctx=None) -> trt_engine.TensorRTEngine:
    """A real TensorRTEngine object in the state ``__init__`` leaves it after deserialising (which
    needs a GPU), with a STAND-IN context and buffers: for the lifecycle and wiring logic."""
    e = trt_engine.TensorRTEngine.__new__(trt_engine.TensorRTEngine)
    Engine.__init__(e, inputs, outputs, "fp32")
    e.label, e._closed, e._flavor, e._trt, e._cuda = label, False, "tensorrt_rtx", None, None
    e._ctx, e._engine, e._runtime = ctx or _StandinContext(), object(), object()
    e._buffers = {s.name: _StandinBuffer(s.shape, s.dtype) for s in [*inputs, *outputs]}
    for name, buf in e._buffers.items():
        e._ctx.set_tensor_address(name, buf.ptr)
    e._borrowed, e._stream, e._host, e._last_stream = {}, None, {}, None
    e._logger = SimpleNamespace(text=lambda *a: "  (stand-in: nothing logged)")
    return e


FEATS = (1, 16, 8, 8)


def _halves(deep_dtype=np.float32, deep_shape=FEATS):
    spec = TensorSpec
    trunk = _standin_engine(
        "resnet8 fp32 trunk",
        [spec("input", (1, 3, 32, 32)), spec("threshold", (1,))],
        [spec("output", (1, 11)), spec("feats", FEATS), spec("go_deep", (1,))],
    )
    deep = _standin_engine(
        "resnet8 fp32 deep",
        [spec("feats", deep_shape, np.dtype(deep_dtype))],
        [spec("output", (1, 11))],
    )
    return trunk, deep


@pytest.mark.parametrize(
    ("dtype", "shape", "differs"),
    [
        (np.float16, FEATS, "data type float32 vs float16"),
        (np.float32, (1, 8, 8, 16), "shape [1, 16, 8, 8] vs [1, 8, 8, 16]"),  # same bytes, NHWC
    ],
    ids=["dtype", "layout"],
)
def test_bind_input_rejects_a_mismatched_buffer_naming_both(dtype, shape, differs: str) -> None:
    trunk, deep = _halves(dtype, shape)
    own = deep._buffers["feats"]
    with pytest.raises(trt_engine.TrtWiringError) as info:
        deep.bind_input("feats", trunk.output_buffer("feats"))
    msg = str(info.value)
    assert "cannot bind resnet8 fp32 deep input 'feats'" in msg
    assert "to resnet8 fp32 trunk (output) tensor 'feats'" in msg and differs in msg
    assert deep._ctx.addresses["feats"] == own.ptr != 0  # nothing was rebound or freed
    with pytest.raises(
        trt_engine.TrtRuntimeError, match="has no input 'probs'; its inputs: \\['feats'\\]"
    ):
        deep.bind_input("probs", trunk.output_buffer("feats"))
    with pytest.raises(TypeError, match="takes a TensorBuffer"):
        deep.bind_input("feats", own)


@pytest.mark.parametrize("first", ["deep", "trunk"])
def test_wiring_frees_the_own_buffer_and_survives_either_close_order(first: str) -> None:
    trunk, deep = _halves()
    own, lent = deep._buffers["feats"], trunk._buffers["feats"]
    deep.bind_input("feats", trunk.output_buffer("feats"))
    assert deep._ctx.addresses["feats"] == lent.ptr == deep.device_ptr("feats")
    assert own.frees == 1 and own.ptr == 0  # the deep engine's own buffer is freed at once
    deep.enqueue(7)
    assert deep._ctx.enqueued == [7]
    engines = {"deep": deep, "trunk": trunk}
    engines[first].close()
    if first == "trunk":  # the lender freed its buffer: the borrower refuses to run on it
        with pytest.raises(trt_engine.TrtRuntimeError, match="read buffers their engine has freed"):
            deep.enqueue(7)
    else:
        assert lent.ptr != 0 and lent.frees == 0  # closing the borrower leaves the lender intact
        trunk.enqueue(7)
    engines["trunk" if first == "deep" else "deep"].close()
    assert lent.frees == 1 and own.frees == 1  # each buffer freed exactly once, by its owner


def test_closed_engine_gives_a_clear_error(rtx) -> None:
    trunk, deep = _halves()
    deep.close()
    deep.close()  # idempotent
    calls = {
        "bind_input('feats')": lambda: deep.bind_input("feats", trunk.output_buffer("feats")),
        "load_inputs": lambda: deep.load_inputs({}),
        "enqueue": lambda: deep.enqueue(0),
        "read_outputs": lambda: deep.read_outputs(),
        "output_buffer('output')": lambda: deep.output_buffer("output"),
        "capture_graph": lambda: deep.capture_graph(0),
        "the engine inspector (layer_precisions)": lambda: trt_inspector.layer_precisions(deep),
    }
    for what, call in calls.items():
        with pytest.raises(trt_engine.TrtRuntimeError) as info:
            call()
        assert f"{what} on a closed TensorRTEngine (resnet8 fp32 deep)" in str(info.value)
        assert "build a new engine" in str(info.value)
    bare = trt_engine.TensorRTEngine.__new__(
        trt_engine.TensorRTEngine
    )  # a constructor that failed half way
    bare.close()
    with pytest.raises(trt_engine.TrtRuntimeError, match="on a closed TensorRTEngine"):
        bare.enqueue(0)


def test_capture_asks_the_rtx_context_first() -> None:
    """RTX's ``is_stream_capturable`` (STAND-IN context answering False) is reported as
    TensorRT's verdict, naming the flag the plan was built with, without attempting a capture."""
    trunk, _ = _halves()
    trunk._ctx.capturable = False
    trunk.info["user_allocation"] = True
    result = trunk.capture_graph(7)
    assert not result.captured and result.graph is None
    assert "is_stream_capturable() returned False" in result.reason
    assert "although the plan was built with BuilderFlag.REQUIRE_USER_ALLOCATION" in result.reason
    assert trunk.info["stream_capturable"] is False and trunk._ctx.enqueued == []


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["concat", "separate"])
def test_engine_runs_both_exit_paths(onnx_file, tmp_path: Path, layout: str) -> None:
    """On a GPU: the engine matches onnxruntime on both exit paths, through run() and through
    load_inputs / enqueue on a foreign stream / read_outputs; then the inspector audit."""
    src = onnx_file(early_exit_graph(layout))
    try:
        engine = trt_engine.build(src, "fp32", cache=ArtifactCache(tmp_path / "cache"))
    except BackendUnavailable as exc:
        pytest.skip(f"no usable TensorRT runtime here: {exc}")
    try:
        ref = session(src)
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
        for threshold, flag in ((0.0, 0.0), (1.0, 1.0)):
            feeds = {"input": x, "threshold": np.array([threshold], np.float32)}
            want = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, feeds), strict=True))
            got = engine.run(feeds)
            assert float(np.ravel(got["output" if layout == "concat" else "exit_flag"])[-1]) == flag
            for name, value in want.items():
                np.testing.assert_allclose(got[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
            with cuda.Stream() as stream:
                engine.load_inputs(feeds)
                engine.enqueue(stream.handle)
                again = engine.read_outputs()
            for name, value in want.items():
                np.testing.assert_allclose(again[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
        layers = trt_inspector.layer_precisions(engine)
        assert layers and all(lp.name for lp in layers)
    finally:
        engine.close()
        engine.close()  # idempotent
