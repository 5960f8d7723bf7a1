"""The TensorRT API exitgate calls, held against the real bindings without a GPU and without mocks.

``tests/trt_conformance.py`` scans the project's source (AST) for every TensorRT member it uses;
here every use must exist in the live ``tensorrt_rtx`` bindings with a compatible pybind11
signature (or be marked RTX-absent with a reason), and every member some full TensorRT release lacks
(``tests/trt_api/members.json``: NVIDIA's binding sources at 8.6.1, 10.3, 10.13, 11.1) must be
reached only behind feature detection. Planted misuses prove each check can fail.

This stands in for executing the TensorRT runtime calls (no GPU TensorRT runs on is available to CI):
it proves the names, argument kinds and feature guards, not what the calls do on a device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import trt_conformance as C

RTX_MISSING = (
    "the conformance test reads the live TensorRT-RTX bindings: pip install tensorrt-rtx-cu13 "
    "(runs on a CPU)"
)
ENGINE = "fixtures/backends/tensorrt/engine.py"
COMPAT = "fixtures/backends/tensorrt/compat.py"


@pytest.fixture(scope="module")
def binding() -> C.Binding:
    return C.Binding(pytest.importorskip("tensorrt_rtx", reason=RTX_MISSING))


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return C.source_files()


@pytest.fixture(scope="module")
def table() -> dict:
    return C.load_table()


def _problems(sources: dict[str, str], binding: C.Binding, table: dict) -> list[str]:
    return C.check(C.scan(sources, binding), binding, table)


def test_every_tensorrt_use_exists_fits_and_is_guarded(sources, binding, table) -> None:
    result = C.scan(sources, binding)
    problems = C.check(result, binding, table)
    assert not problems, "\n".join(problems)
    assert len(result.uses) > 100  # the scan follows the receivers (see the next test)


def test_the_scan_follows_the_calls_that_matter(sources, binding) -> None:
    used = C.scan(sources, binding).used()
    missing = [f"{c}.{m}" for c, m in C.EXPECTED_USES if (c, m) not in used]
    assert not missing, f"the scan lost track of {missing}: a receiver is no longer typed"


def test_marked_rtx_absent_members_are_absent(binding) -> None:
    stale = [f"{c}.{m}" for c, m in C.RTX_ABSENT if binding.has(c, m)]
    assert not stale, f"marked RTX-absent but present in {binding.name}: {stale}"


def test_the_frozen_table_records_the_facts_the_backend_relies_on(table) -> None:
    """Spot checks of members.json against what trt-api-facts.md and issue 12 say."""
    m, releases = table["members"], list(table["releases"])
    assert releases == ["8.6.1", "10.3.0", "10.13.0", "11.1"]
    assert all(len(r["commit"]) == 40 and r["files"] for r in table["releases"].values())

    def present(cls: str, member: str) -> list[str]:
        row = m[cls].get(member)
        return m[cls]["<bound in>"] if row == "*" else (row or [])

    assert present("Runtime", "get_engine_validity") == []  # TensorRT-RTX only, through 11.x
    assert present("BuilderFlag", "REQUIRE_USER_ALLOCATION") == []
    assert present("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") == [
        "10.3.0",
        "10.13.0",
        "11.1",
    ]
    assert present("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH") == [
        "8.6.1",
        "10.3.0",
        "10.13.0",
    ]
    assert present(C.MODULE, "IInt8EntropyCalibrator2") == ["8.6.1", "10.3.0", "10.13.0"]
    assert present("BuilderFlag", "FP16") == ["8.6.1", "10.3.0", "10.13.0"]
    assert present("ICudaEngine", "create_runtime_config") == ["10.13.0", "11.1"]
    assert present("ParserError", "node_name") == ["10.3.0", "10.13.0", "11.1"]
    assert present("IExecutionContext", "execute_async_v3") == releases


# ---- planted misuses: each must fail the check --------------------------------------------------

PLANTS = {
    "renamed_member": (
        ENGINE,
        "ctx.execute_async_v3(int(stream))",
        "ctx.execute_async_v4(int(stream))",
        "IExecutionContext.execute_async_v4 does not exist in tensorrt_rtx",
    ),
    "wrong_argument_kind": (
        ENGINE,
        "ctx.set_tensor_address(spec.name, int(buf.ptr))",
        "ctx.set_tensor_address(int(buf.ptr), spec.name)",
        "IExecutionContext.set_tensor_address(int, ?) matches no signature",
    ),
    "pointer_not_provably_int": (
        ENGINE,
        "ctx.set_tensor_address(spec.name, int(buf.ptr))",
        "ctx.set_tensor_address(spec.name, buf)",
        "pointers, streams, sizes and indices must be provably int",
    ),
    "unguarded_member_8_6_lacks": (
        COMPAT,
        'if strong and hasattr(flag, "STRONGLY_TYPED"):',
        "if strong:",
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED is missing from 8.6.1 and is used without "
        "feature detection",
    ),
    "unguarded_member_8_6_and_10_3_lack": (
        ENGINE,
        'if hasattr(engine, "create_runtime_config"):',
        "if engine is not None:",
        "ICudaEngine.create_runtime_config is missing from 8.6.1, 10.3.0 and is used without",
    ),
    "unguarded_rtx_only_member": (
        ENGINE,
        'if hasattr(ctx, "is_stream_capturable"):',
        "if ctx is not None:",
        "IExecutionContext.is_stream_capturable is missing from 8.6.1, 10.3.0, 10.13.0, 11.1",
    ),
    "misspelled_probe": (
        COMPAT,
        'hasattr(flag, "EXPLICIT_BATCH")',
        'hasattr(flag, "EXPLICT_BATCH")',
        "hasattr probe of NetworkDefinitionCreationFlag.EXPLICT_BATCH, which neither",
    ),
    "module_bound_to_another_name": (
        COMPAT,
        "    trt, flavor = import_tensorrt()\n    parsed = parse_onnx(trt, onnx, strong)",
        "    tr, flavor = import_tensorrt()\n    parsed = parse_onnx(tr, onnx, strong)",
        "bind import_tensorrt()'s module to the name `trt`",
    ),
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_a_planted_misuse_fails_the_check(plant: str, sources, binding, table) -> None:
    path, old, new, expected = PLANTS[plant]
    assert sources[path].count(old) == 1, f"the plant site {old!r} moved: update PLANTS"
    planted = {**sources, path: sources[path].replace(old, new)}
    problems = _problems(planted, binding, table)
    assert any(expected in p and p.startswith(path) for p in problems), "\n".join(problems)


def test_stale_rtx_absent_mark_fails(sources, binding, table) -> None:
    marks = {**C.RTX_ABSENT, ("IExecutionContext", "execute_async_v3"): "wrong on purpose"}
    problems = C.check(C.scan(sources, binding), binding, table, marks)
    assert any("execute_async_v3 is marked RTX-absent (wrong on purpose)" in p for p in problems)


def test_a_class_missing_from_the_table_asks_to_rederive(sources, binding, table) -> None:
    members = {k: v for k, v in table["members"].items() if k != "EngineInspector"}
    problems = C.check(C.scan(sources, binding), binding, {**table, "members": members})
    assert any("class EngineInspector is not in members.json: re-derive" in p for p in problems)


# ---- the readers themselves ----------------------------------------------------------------------


def test_pybind_signatures_are_read_with_overloads(binding) -> None:
    sigs = binding.signatures("ICudaEngine", "create_execution_context")
    assert [[p.name for p in s.params] for s in sigs] == [["strategy"], ["runtime_config"]]
    assert sigs[1].params[0].default_none and sigs[1].returns == "IExecutionContext"
    (sig,) = binding.signatures("IExecutionContext", "set_tensor_address")
    assert [(p.name, p.annotation) for p in sig.params] == [
        ("name", "str"),
        ("memory", "typing.SupportsInt"),
    ]
    assert binding.member_type("ICudaEngine", "num_io_tensors") == "int"
    assert binding.member_type("ILayer", "type") == "enumval:LayerType"


BINDING_SNIPPET = r"""
// comment with py::class_<Nope>(m, "Nope")
void bindCore(py::module& m) {
    py::class_<ILogger, PyLogger> baseLoggerBinding{m, "ILogger", "doc", py::module_local()};
    py::enum_<ILogger::Severity>(baseLoggerBinding, "Severity", py::arithmetic{})
        .value("ERROR", ILogger::Severity::kERROR)
        .export_values();
    baseLoggerBinding.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a);
    py::class_<ILayer, std::unique_ptr<ILayer, py::nodelete>>(m, "ILayer", "doc")
        .def_property("name", &ILayer::getName, &ILayer::setName)
        .def("get_output", &ILayer::getOutput, "index"_a, "doc (with parens)");
#if EXPORT_ALL_BINDINGS
    py::class_<IConvolutionLayer, ILayer, std::unique_ptr<IConvolutionLayer, py::nodelete>>(
        m, "IConvolutionLayer", "doc")
        .def_property_readonly("kernel_size", [](IConvolutionLayer& self) { return 3; });
#endif
    m.def("init_libnvinfer_plugins", &initLibNvInferPlugins, "logger"_a, "namespace"_a);
    m.attr("float32") = DataType::kFLOAT;
}
"""


def test_the_binding_source_reader_on_its_idioms() -> None:
    sys.path.insert(0, str(Path(__file__).parent / "trt_api"))
    try:
        import derive_members as D
    finally:
        sys.path.pop(0)
    members, bases, cpp = D.parse_cpp(BINDING_SNIPPET)
    assert members["ILogger"] >= {"log", "Severity", "ERROR"}
    assert members["ILogger.Severity"] == {"ERROR", "name", "value"}
    assert members["ILayer"] == {"name", "get_output"}
    assert members["IConvolutionLayer"] == {"kernel_size"} and bases["IConvolutionLayer"] == [
        "ILayer"
    ]
    assert cpp["IConvolutionLayer"] == "IConvolutionLayer" and "Nope" not in members
    assert members[D.MODULE] >= {"ILogger", "ILayer", "init_libnvinfer_plugins", "float32"}


SOURCES_ENV = "EXITGATE_TENSORRT_SOURCES"


def test_the_frozen_table_is_what_the_sources_say(tmp_path: Path) -> None:
    """Re-derive members.json from a clone of NVIDIA/TensorRT and compare (skips without one)."""
    repo = os.environ.get(SOURCES_ENV)
    if not repo:
        pytest.skip(
            f"set {SOURCES_ENV} to a git clone of https://github.com/NVIDIA/TensorRT (with the "
            "release tags) to re-derive tests/trt_api/members.json and compare"
        )
    pytest.importorskip("tensorrt_rtx", reason=RTX_MISSING)
    script = Path(__file__).parent / "trt_api" / "derive_members.py"
    frozen = C.TABLE.read_text()
    try:
        subprocess.run([sys.executable, str(script), repo], check=True, capture_output=True)
        assert C.TABLE.read_text() == frozen, "members.json is stale: commit the re-derived file"
    finally:
        C.TABLE.write_text(frozen)
