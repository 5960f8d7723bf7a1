"""Leftovers (issue 13): temp files of killed writers are removed, an entry that is not a file is
replaced, reports are written as a set, and a report that cannot be written fails the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.artifacts import ArtifactCache
from reports.plugin import write_report
from tests.conftest import REPO
from tests.hostile import (
    AS_ROOT,
    KEY,
    PAYLOAD,
    STRUCTURE,
    ZOO,
    usage_error,
)

# ---- 4. leftovers ----------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _aged(path: Path, seconds: float) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)
    return path


def test_stale_temps_are_removed(tmp_path: Path) -> None:
    """Fails when a killed writer's temp file stays forever, or when a live writer's (or a
    fresh) temp file is removed under it."""
    cache = ArtifactCache(tmp_path / "cache")
    folder = cache.get_or_build("hostile", KEY, lambda: PAYLOAD).path.parent
    dead, live = _dead_pid(), os.getpid()
    stale = [
        folder / f".abc.onnx.{dead}.k2j4h5g6.tmp",  # writer gone, old
        folder / ".abc.onnx.x1y2z3w4.tmp",  # an older naming without a pid, old
        folder / f".big.plan.{dead}.q1w2e3r4.tmp",  # a folder-shaped leftover
    ]
    fresh = folder / f".abc.onnx.{dead}.a1b2c3d4.tmp"  # writer gone, but only just written
    alive = folder / f".abc.onnx.{live}.a1b2c3d4.tmp"  # old, but its writer is running
    for p in [*stale, fresh, alive]:
        if p.name.startswith(".big"):
            p.mkdir()
        else:
            p.write_bytes(b"partial")
    for p in [*stale, alive]:
        _aged(p, 600)
    assert sorted(cache.remove_stale_temps()) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and alive.exists()


def test_a_run_removes_stale_temps(run_suite) -> None:
    """The workspace fixture sweeps the run's cache: fails when a suite run leaves a dead writer's
    temp file in place."""
    cache = ArtifactCache(os.environ.get("EXITGATE_CACHE_DIR") or None)
    folder = cache.root / "zoo_onnx"
    folder.mkdir(parents=True, exist_ok=True)
    leftover = folder / f".selftest-{os.getpid()}.onnx.{_dead_pid()}.z9y8x7w6.tmp"
    leftover.write_bytes(b"half an export")
    _aged(leftover, 600)
    result = run_suite(STRUCTURE, *ZOO, "-k", "exit_is_real")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not leftover.exists()


def test_killed_writers_temp_is_removed_on_rebuild(tmp_path: Path) -> None:
    """Under the entry's lock nobody writes it: its temp files are leftovers however fresh. Fails
    when a full-size leftover survives the rebuild."""
    cache = ArtifactCache(tmp_path / "cache")
    path, meta = cache.paths("hostile", KEY, ".bin")
    path.parent.mkdir(parents=True)
    leftovers = [
        path.parent / f".{path.name}.{os.getpid()}.abcdefgh.tmp",
        path.parent / f".{meta.name}.{os.getpid()}.abcdefgh.tmp",
    ]
    for p in leftovers:
        p.write_bytes(PAYLOAD)
    assert cache.get_or_build("hostile", KEY, lambda: PAYLOAD).built
    assert not any(p.exists() for p in leftovers)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, meta.name, f"{path.name}.lock"]
    )


@pytest.mark.parametrize("which", ["payload", "meta", "lock"])
def test_entry_replaced_by_a_folder_heals(tmp_path: Path, which: str) -> None:
    """Fails when a folder in place of an entry (or its record or lock) fails every later run."""
    cache = ArtifactCache(tmp_path / "cache")
    path, meta = cache.paths("hostile", KEY, ".bin")
    cache.get_or_build("hostile", KEY, lambda: PAYLOAD)
    target = {"payload": path, "meta": meta, "lock": Path(f"{path}.lock")}[which]
    target.unlink()
    (target / "inside").mkdir(parents=True)
    if which == "lock":
        path.write_bytes(b"damaged")  # so that the entry must be rebuilt, under its lock
    assert cache.valid("hostile", KEY, ".bin") is None
    assert cache.get_or_build("hostile", KEY, lambda: PAYLOAD).built
    assert cache.valid("hostile", KEY, ".bin") == path and path.read_bytes() == PAYLOAD
    assert target.is_file() or (which == "lock" and not target.exists())


def _run(i: int, started: float) -> dict:
    return {
        "tests": {
            f"suites/test_structure.py::test_exit_is_real[m{i}]": {"outcome": "passed", "props": {}}
        },
        "environment": {"args": [f"run{i}"]},
        "started": started,
    }


def test_report_is_replaced_as_a_set(tmp_path: Path) -> None:
    """Fails when files of the previous run survive next to the new ones, or when a file another
    tool wrote during this run (--junit-xml) is lost."""
    out = tmp_path / "latest"
    write_report(_run(1, time.time()), out)
    (out / "old_plot.png").write_bytes(b"previous run")
    _aged(out / "old_plot.png", 3600)
    started = time.time() - 1
    (out / "junit.xml").write_text("<testsuites/>")  # written by this run, before the report
    paths = write_report(_run(2, started), out)
    assert paths["json"] == out / "run.json"
    assert "m2" in (out / "run.json").read_text() and "m1" not in (out / "run.json").read_text()
    assert not (out / "old_plot.png").exists()
    assert (out / "junit.xml").read_text() == "<testsuites/>"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]  # no temp folder left


KILL_CHILD = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
real_fsync = os.fsync

def fsync(fd):
    if os.readlink(f"/proc/self/fd/{{fd}}").endswith(".tmp") and "summary.md" in os.readlink(
            f"/proc/self/fd/{{fd}}"):
        print("STALLED", flush=True)
        time.sleep(120)
    real_fsync(fd)

os.fsync = fsync
from reports.plugin import write_report
write_report(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[1]))
"""


def test_killed_report_writer_leaves_one_run(tmp_path: Path) -> None:
    """SIGKILL after the new run.json is written, before summary.md: fails when the report folder
    then holds files of both runs, or when the dead writer's temp folder outlives a later run."""
    out = tmp_path / "latest"
    write_report(_run(1, time.time()), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "child.py").write_text(KILL_CHILD.format(repo=str(REPO)))
    (tmp_path / "run2.json").write_text(json.dumps(_run(2, time.time())))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    with subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(out), str(tmp_path / "run2.json")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout.readline().startswith("STALLED")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old run, whole
    (leftover,) = [p for p in tmp_path.iterdir() if p.name.startswith(".latest.")]
    assert (leftover / "run.json").exists()  # the new run.json is there, never in out/
    for p in [leftover, *leftover.iterdir()]:
        _aged(p, 600)
    write_report(_run(3, time.time()), out)
    assert "m3" in (out / "run.json").read_text()
    assert not leftover.exists()


def test_unusable_report_folder_is_refused_before_the_run(run_inprocess, tmp_path: Path) -> None:
    """Fails when a report folder that cannot be written (or is not a report folder) is only
    noticed, or not noticed at all, after the tests ran."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    err = usage_error(run_inprocess(*ZOO, f"--report-dir={blocker / 'report'}"))
    assert (
        f"--report-dir ({blocker / 'report'}): cannot write there ({blocker} is not a folder" in err
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    err = usage_error(run_inprocess(*ZOO, f"--report-dir={tmp_path / 'mine'}"))
    assert "holds files and no run.json, so it is not an exitgate report folder" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.skipif(
    not Path("/proc/self").is_dir(),
    reason="needs Linux's /proc (a folder nobody can write, root included)",
)
def test_report_that_cannot_be_written_fails_the_run(run_suite) -> None:
    """/proc accepts no new folders, even from root: the tests pass, the report fails. Fails when
    the run still exits 0, or when the message does not name the folder."""
    out = "/proc/exitgate-selftest-report"
    result = run_suite(STRUCTURE, *ZOO, "-k", "exit_is_real", f"--report-dir={out}")
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and not Path(out).exists()
    if not AS_ROOT:  # permissions already say so when the options are parsed
        assert result.ret == pytest.ExitCode.USAGE_ERROR, text
        assert f"--report-dir ({out}): cannot write there (/proc is not writable)" in text
        return
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, text  # root passes that check
    assert f"exitgate: could not write the report to {out}" in text
    assert "1 passed" in text
