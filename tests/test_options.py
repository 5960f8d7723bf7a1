"""Option validation: each bad value stops the run with one message naming the option."""

from __future__ import annotations

import sys
import types

import pytest

from tests import _probe_imports
from tests.conftest import REPO

SUITE = str(REPO / "suites" / "test_structure.py")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device=nosuch"], "--device=nosuch: unknown device profile; known: a100, agx-orin"),
        (["--device=orin-nano"], "--device=orin-nano, but this machine looks like 'cpu'"),
        (["--backend=tflite"], "--backend=tflite: unknown backend; expected one of onnxruntime"),
        (["--precision=fp8"], "--precision=fp8: unknown value(s) fp8; expected some of fp32"),
        (["--precision=fp16,fp16"], "--precision=fp16,fp16: a value is repeated"),
        (["--zoo=resnet18"], "--zoo=resnet18: unknown value(s) resnet18; expected some of resnet8"),
        (["--threshold=nan", "--model=x.onnx"], "--threshold=nan: expected a finite number"),
        (
            ["--layout=nchw"],
            "--layout=nchw: unknown value(s) nchw; expected some of concat, separate",
        ),
        (["--samples=3"], "--samples=3: expected an integer from 8 to 10000"),
        (["--threshold=soon", "--model=x.onnx"], "--threshold=soon: expected a finite number"),
        (
            ["--calibration-data=/nonexistent/cal.npy"],
            "--calibration-data=/nonexistent/cal.npy: no such",
        ),
        (["--model=/nonexistent/m.toml"], "--model=/nonexistent/m.toml: manifest not found"),
    ],
)
def test_bad_option_is_one_clear_error(run_suite, monkeypatch, args, message) -> None:
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")
    result = run_suite(SUITE, "--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str(), result.stderr.str()


def test_device_mismatch_warn_runs_with_the_profile(run_suite, monkeypatch) -> None:
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")
    result = run_suite(
        SUITE, "--collect-only", "--device=orin-nano", "--device-mismatch=warn", "--zoo=resnet8"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*device profile orin-nano*", "*WARNING --device=orin-nano*"])


def test_unsupported_precision_for_profile(run_suite, monkeypatch) -> None:
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")
    result = run_suite(
        SUITE,
        "--collect-only",
        "--device=jetson-nano",
        "--device-mismatch=warn",
        "--precision=int8",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "the jetson-nano profile supports only fp32, fp16" in result.stderr.str()


def test_bad_manifest_names_the_entry(run_suite, tmp_path) -> None:
    m = tmp_path / "models.toml"
    m.write_text('[[model]]\nname = "a"\npath = "a.onnx"\ninput_layout = "CHW"\n')
    result = run_suite(SUITE, "--collect-only", f"--model={m}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{m} [[model]] #1: input_layout must be one of ('NCHW', 'NHWC'), got 'CHW'" in (
        result.stderr.str()
    )


def test_duplicate_ids_are_an_error(run_suite, tmp_path) -> None:
    m = tmp_path / "models.toml"
    m.write_text('[[model]]\npath = "a/net.onnx"\n[[model]]\npath = "b/net.onnx"\n')
    result = run_suite(SUITE, "--collect-only", f"--model={m}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "duplicate test id 'net-fp32-exit_always'" in result.stderr.str()


def test_collect_only_is_fast_and_imports_no_torch(run_suite) -> None:
    result = run_suite(str(REPO / "suites"), "--collect-only", "-q", "-p", "tests._probe_imports")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*resnet8-fp32-exit_always-concat*", "*heavy modules: none*"])


def test_import_probe_names_a_heavy_module(monkeypatch, capsys) -> None:
    """The probe above can fail: with a heavy module loaded it names it instead of 'none'."""
    for name in _probe_imports.HEAVY:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", types.ModuleType("onnxruntime"))
    _probe_imports.pytest_collection_finish(None)
    assert capsys.readouterr().out.strip() == "heavy modules: onnxruntime"
