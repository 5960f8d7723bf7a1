"""Faults: killed writers leave nothing a later run reads; hangs and failed builds stay one test."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from models.artifacts import ArtifactCache
from tests.conftest import REPO, ROOTED

KEY = {"what": "slow entry", "v": 1}
PAYLOAD = b"x" * 100_000
ZOO = ("--zoo=resnet8", "--layout=concat", "--samples=16")

# A child that writes through models._io with a planted stall at the chosen stage, so the parent
# can kill it exactly there: "build" (inside the builder), "payload" (the payload's temp file is
# written, not yet renamed), "meta" (payload in place, record's temp file written).
CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {repo!r})
    root, stage, what = sys.argv[1], sys.argv[2], sys.argv[3]
    real_fsync = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{{fd}}")
        if name.endswith(".tmp") and stage in ("payload", "meta") and (
            (".meta.json." in name) == (stage == "meta") and (what != "report" or "run.json" in name)
        ):
            print("STALLED", name, flush=True)
            time.sleep(120)
        real_fsync(fd)

    os.fsync = fsync
    if what == "cache":
        from models.artifacts import ArtifactCache

        def build():
            if stage == "build":
                print("STALLED building", flush=True)
                time.sleep(120)
            return b"x" * 100_000

        ArtifactCache(root).get_or_build("slow", {key!r}, build)
    else:
        import json
        from pathlib import Path
        from reports.summary import write_summary

        run = json.loads(Path(sys.argv[4]).read_text())
        write_summary(run, Path(root))
    print("DONE", flush=True)
    """
).format(repo=str(REPO), key=KEY)


def _kill_at(
    tmp_path: Path, root: Path, stage: str, sig: int, what: str = "cache", *extra: str
) -> str:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    with subprocess.Popen(
        [sys.executable, str(script), str(root), stage, what, *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            line = proc.stdout.readline()
            assert line.startswith("STALLED"), line
            proc.send_signal(sig)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode != 0  # it died there, it did not finish
    return line


@pytest.mark.parametrize("stage", ["build", "payload", "meta"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_killed_cache_writer_leaves_no_entry(tmp_path: Path, stage: str, sig: int) -> None:
    root = tmp_path / "cache"
    _kill_at(tmp_path, root, stage, sig)
    cache = ArtifactCache(root)
    path, meta = cache.paths("slow", KEY, ".bin")
    assert cache.valid("slow", KEY, ".bin") is None  # nothing a later run would use
    assert not meta.exists()  # the record is written last, so it never names a partial payload
    if stage != "meta":
        assert not path.exists()
    temps = (
        sorted(p.name for p in (root / "slow").glob("*.tmp")) if (root / "slow").exists() else []
    )
    if sig == signal.SIGINT:  # an interrupt cleans up its temporary file
        assert temps == []
    # a later run (same key) rebuilds, despite the dead writer's lock file and temp files
    entry = cache.get_or_build("slow", KEY, lambda: PAYLOAD)
    assert entry.built and entry.path == path and path.read_bytes() == PAYLOAD
    assert cache.valid("slow", KEY, ".bin") == path
    assert json.loads(meta.read_text())["size"] == len(PAYLOAD)


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_meta", "garbage_meta"])
def test_damaged_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build("slow", KEY, lambda: PAYLOAD)
    path, meta = entry.path, cache.paths("slow", KEY, ".bin")[1]
    if damage == "truncate":
        path.write_bytes(PAYLOAD[:10])
    elif damage == "flip":
        path.write_bytes(b"y" + PAYLOAD[1:])
    elif damage == "drop_meta":
        meta.unlink()
    else:
        meta.write_text("{not json")
    assert cache.valid("slow", KEY, ".bin") is None
    again = cache.get_or_build("slow", KEY, lambda: PAYLOAD)
    assert again.built and path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_killed_report_writer_keeps_the_old_report(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "report"
    out.mkdir()
    old = '{"old": true}'
    (out / "run.json").write_text(old)
    run = tmp_path / "in.json"
    run.write_text(
        json.dumps(
            {
                "tests": {"suites/test_x.py::test_a[m]": {"outcome": "passed", "props": {}}},
                "environment": {},
            }
        )
    )
    _kill_at(tmp_path, out, "payload", sig, "report", str(run))
    assert (out / "run.json").read_text() == old  # the old report, whole; never a partial one
    assert not (out / "summary.md").exists()  # written after run.json: not reached
    if sig == signal.SIGINT:
        assert not list(out.glob("*.tmp"))


def test_interrupted_benchmark_run_saves_no_baseline(tmp_path: Path) -> None:
    """SIGINT between two benchmarks: pytest-benchmark would save the partial run as the newest
    baseline (the one --benchmark-compare reads); exitgate drops it."""
    store = tmp_path / "bench"
    (tmp_path / "stall_probe.py").write_text(
        textwrap.dedent("""
        import time
        def pytest_runtest_teardown(item):
            print("\\nSTALLED after", item.name, flush=True)
            time.sleep(120)
        """)
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path}", "EXITGATE_REPORT_DIR": "none"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *ROOTED,
        "-p",
        "stall_probe",
        "-s",
        str(REPO / "suites" / "test_benchmark.py"),
        *ZOO,
        "-k",
        "fp32",
        f"--benchmark-storage=file://{store}",
        "--benchmark-autosave",
    ]
    lines = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    ) as proc:
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("STALLED"):
                    proc.send_signal(signal.SIGINT)
                    break
            rest, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = "".join(lines) + rest
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert not list(store.rglob("*.json")), out
    assert "exitgate: run interrupted: no benchmark baseline saved" in out, out


HANG = """
import time

import pytest


@pytest.fixture(scope="session")
def slow_build():
    time.sleep(3)  # an engine build: longer than the case timeout, and not counted
    return "engine"


def test_after_a_slow_build(slow_build):
    assert slow_build == "engine"


def test_hanging_inference():
    time.sleep(60)
"""


def test_case_timeout_fails_a_hang_but_not_a_build(run_suite, pytester: pytest.Pytester) -> None:
    f = pytester.makepyfile(test_hang=HANG)
    result = run_suite(str(f), "-p", "fixtures.plugin", *ZOO, "--case-timeout=2")
    out = result.stdout.str()
    assert result.parseoutcomes() == {"passed": 1, "failed": 1}, out
    result.stdout.fnmatch_lines(
        ["*test_hanging_inference*", "*Failed: Timeout (>2.0s) from pytest-timeout.*"]
    )
    assert "test_after_a_slow_build" not in "".join(
        ln for ln in result.stdout.lines if "FAILED" in ln
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--case-timeout=0"], "--case-timeout=0: expected a number of seconds > 0"),
        (["--case-timeout=soon"], "--case-timeout=soon: expected a number of seconds > 0"),
        (
            ["--case-timeout=5", "-p", "no:timeout"],
            "--case-timeout=5: needs the pytest-timeout plugin (pip install pytest-timeout",
        ),
    ],
)
def test_bad_case_timeout(run_suite, args: list[str], message: str) -> None:
    result = run_suite(str(REPO / "suites" / "test_structure.py"), "--collect-only", *ZOO, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str(), result.stderr.str()


FAKE_OOM = """
import dataclasses

from fixtures.backends import base
from fixtures.backends.tensorrt.build import TrtBuildError

MESSAGE = "TensorRT could not build {onnx} ({precision}): [E] out of memory (workspace 0 MiB)"


def pytest_configure(config):
    base.BACKENDS["onnxruntime"] = "fake_oom:DESCRIPTOR"


DESCRIPTOR = dataclasses.replace(base.backend("onnxruntime"), factory="fake_oom:build")


def build(onnx_path, precision, **options):
    raise TrtBuildError(MESSAGE.format(onnx=onnx_path, precision=precision))
"""


def _tiny_profile(tmp_path: Path) -> Path:
    prof = tmp_path / "tiny.toml"
    text = (REPO / "fixtures" / "profiles" / "cpu.toml").read_text()
    text = re.sub(r"(?m)^workspace_mib = .*$", "workspace_mib = 1  # no room to build", text)
    prof.write_text(text.replace('name = "cpu"', 'name = "tiny"'))
    assert "workspace_mib = 1 " in prof.read_text()
    return prof


def test_failed_build_fails_its_tests_only(run_suite, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "fake_oom.py").write_text(FAKE_OOM)
    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{tmp_path}")
    result = run_suite(
        str(REPO / "suites" / "test_structure.py"),
        str(REPO / "suites" / "test_exit_flag.py"),
        "-p",
        "fake_oom",
        *ZOO,
        f"--device={_tiny_profile(tmp_path)}",
        "--device-mismatch=warn",
        "-k",
        "exit_is_real or exit_flag",
        "--tb=short",
    )
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    o = result.parseoutcomes()
    assert o.get("passed") == 1, out  # the structure test, which needs no engine
    assert o.get("failed", 0) + o.get("errors", 0) == 3, out  # each exit-flag case, once
    # a build failure is the user's to fix (profile, model): one message per test, no traceback
    # the plugin names each case in its failure (the fake's message does not hold the case id)
    for p in ("exit_always", "exit_never", "exit_default"):
        assert f"[resnet8-fp32-{p}-concat] TensorRT could not build" in out, (p, out)
    assert "Traceback" not in out and "raise TrtBuildError" not in out, out


def test_tensorrt_with_tiny_workspace_profile_runs_structure(run_suite, tmp_path: Path) -> None:
    result = run_suite(
        str(REPO / "suites" / "test_structure.py"),
        str(REPO / "suites" / "test_exit_flag.py"),
        *ZOO,
        "--backend=tensorrt",
        f"--device={_tiny_profile(tmp_path)}",
        "--device-mismatch=warn",
        "-k",
        "exit_is_real or exit_flag",
        "-rs",
    )
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    o = result.parseoutcomes()
    assert o.get("passed") == 1, out
    # on this machine the builds cannot run: each case skips, naming what is missing
    ids = [f"[resnet8-fp32-{p}-concat]" for p in ("exit_always", "exit_never", "exit_default")]
    if o.get("skipped", 0) == 3:  # no usable GPU here: each case skips, naming what is missing
        why = "runs engines on a CUDA GPU and none is usable here"
    else:  # a GPU: the 1 MiB workspace cannot build, and each case fails with the builder's reason
        assert o.get("failed", 0) + o.get("errors", 0) == 3, out
        why = "TensorRT could not build"
    for case in ids:
        assert any(case in line and why in line for line in out.splitlines()), (case, why, out)
