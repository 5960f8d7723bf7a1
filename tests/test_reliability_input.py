"""Bad input, end to end: one clear message naming the file/option, other cases keep running.

Unit-level discovery checks live in test_discovery.py and option checks in test_options.py; here
the same failures go through a real suite run (``run_suite``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.artifacts import ArtifactCache
from models.zoo import ZOO as SPECS
from models.zoo import onnx_path
from tests.conftest import REPO

STRUCTURE = str(REPO / "suites" / "test_structure.py")
EXIT_FLAG = str(REPO / "suites" / "test_exit_flag.py")
CPU_PROFILE = REPO / "fixtures" / "profiles" / "cpu.toml"
ZOO = ("--zoo=resnet8", "--layout=concat", "--samples=16")


@pytest.fixture
def good_onnx(tmp_path: Path) -> Path:
    """A zoo export (the drivable concat resnet8) copied out of the shared cache."""
    dst = tmp_path / "models" / "good.onnx"
    dst.parent.mkdir()
    shutil.copyfile(onnx_path(SPECS["resnet8"], "concat", ArtifactCache()), dst)
    return dst


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


def test_manifest_bad_files_fail_alone(run_suite, tmp_path: Path, good_onnx: Path) -> None:
    models = good_onnx.parent
    (models / "trunc.onnx").write_bytes(good_onnx.read_bytes()[:300])
    (models / "empty.onnx").write_bytes(b"")
    manifest = models / "models.toml"
    manifest.write_text(
        '[[model]]\nname = "good"\npath = "good.onnx"\nthreshold = 0.9\n'
        '[[model]]\nname = "gone"\npath = "gone.onnx"\n'
        '[[model]]\nname = "trunc"\npath = "trunc.onnx"\n'
        '[[model]]\nname = "empty"\npath = "empty.onnx"\n'
    )
    result = run_suite(
        EXIT_FLAG, f"--model={manifest}", "--samples=16", "-k", "exit_always", "-v", "--tb=line"
    )
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    o = _outcomes(result)
    assert o.get("passed") == 1 and o.get("failed", 0) + o.get("errors", 0) == 3, out
    result.stdout.fnmatch_lines(["*[[]good-fp32-exit_always[]] PASSED*"])
    # one clear line per bad model, naming its file and what is wrong with it
    for name, why in (("gone", "no such file"), ("trunc", "truncated"), ("empty", "file is empty")):
        hits = [ln for ln in out.splitlines() if f"[{name}-fp32-exit_always]" in ln]
        assert hits, out
        assert any(str(models / f"{name}.onnx") in ln and why in ln for ln in out.splitlines()), (
            name,
            out,
        )


def test_malformed_tolerance_in_profile_file(run_suite, tmp_path: Path) -> None:
    prof = tmp_path / "mydev.toml"
    prof.write_text(CPU_PROFILE.read_text().replace("atol = 1e-2", 'atol = "1e-2x"'))
    result = run_suite(STRUCTURE, "--collect-only", f"--device={prof}", *ZOO)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        f"{prof}: tolerance.fp16.atol must be a non-negative number, got '1e-2x'"
        in result.stderr.str()
    ), result.stderr.str()


def test_negative_tolerance_in_profile_file(run_suite, tmp_path: Path) -> None:
    prof = tmp_path / "mydev.toml"
    prof.write_text(CPU_PROFILE.read_text().replace("flip_rate = 0.10", "flip_rate = -0.1"))
    result = run_suite(STRUCTURE, "--collect-only", f"--device={prof}", *ZOO)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{prof}: tolerance.int8.flip_rate must be a non-negative number, got -0.1" in (
        result.stderr.str()
    )


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((4, 1, 28, 28), np.float32),
            "expected images of shape (N,3,32,32) or (N,32,32,3), got (4, 1, 28, 28)",
        ),
        (np.zeros((4, 3, 32, 32), np.int32), "dtype int32 is not supported (use uint8 or float32)"),
        (np.full((4, 3, 32, 32), np.nan, np.float32), "contains NaN or infinite values"),
    ],
    ids=["wrong_shape", "int32", "nan"],
)
def test_bad_calibration_data_names_the_file(
    run_suite, tmp_path: Path, array: np.ndarray, message: str
) -> None:
    cal = tmp_path / "cal.npy"
    np.save(cal, array)
    result = run_suite(
        EXIT_FLAG, f"--calibration-data={cal}", "--precision=fp32,int8", *ZOO, "-k", "exit_always"
    )
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    o = _outcomes(result)
    assert o.get("passed") == 1 and o.get("failed", 0) + o.get("errors", 0) == 1, out
    assert f"{cal}: {message}" in out, out


def test_corrupted_stored_benchmark_is_one_usage_error(run_suite, tmp_path: Path) -> None:
    store = tmp_path / "bench"
    (store / "Linux-CPython-3.11-64bit").mkdir(parents=True)
    bad = store / "Linux-CPython-3.11-64bit" / "0001_truncated.json"
    bad.write_text('{"machine_info": {}, "benchmarks": [{"name": "x", "st')
    result = run_suite(
        str(REPO / "suites" / "test_benchmark.py"),
        *ZOO,
        f"--benchmark-storage=file://{store}",
        "--benchmark-compare",
    )
    err = result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + err
    assert f"--benchmark-compare: stored benchmark run {bad}: not readable JSON" in err, err
    assert "INTERNALERROR" not in result.stdout.str() + err
    # a JSON file that is not a pytest-benchmark run
    bad.write_text(json.dumps({"hello": "world"}))
    result = run_suite(
        str(REPO / "suites" / "test_benchmark.py"),
        *ZOO,
        f"--benchmark-storage=file://{store}",
        "--benchmark-compare",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{bad}: not a pytest-benchmark run (no 'benchmarks' list)" in result.stderr.str()


def test_storage_is_per_profile(run_suite, tmp_path: Path, monkeypatch) -> None:
    """--device=cpu stores and compares under reports/benchmarks/cpu, never orin-nano's folder."""
    probe = tmp_path / "storage_probe.py"
    probe.write_text(
        "def pytest_report_header(config):\n"
        "    bs = config._benchmarksession\n"
        "    return [f'STORAGE {config.option.benchmark_storage} | {bs.storage.path}']\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{tmp_path}")
    result = run_suite(STRUCTURE, "--collect-only", "-p", "storage_probe", "--device=cpu", *ZOO)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    line = next(ln for ln in result.stdout.lines if ln.startswith("STORAGE"))
    cpu = REPO / "reports" / "benchmarks" / "cpu"
    assert line == f"STORAGE file://{cpu} | {cpu}", line
    assert "orin-nano" not in line
    result = run_suite(
        STRUCTURE,
        "--collect-only",
        "-p",
        "storage_probe",
        "--device=orin-nano",
        "--device-mismatch=warn",
        *ZOO,
    )
    line = next(ln for ln in result.stdout.lines if ln.startswith("STORAGE"))
    assert line.endswith(str(REPO / "reports" / "benchmarks" / "orin-nano")), line
