"""Leftovers (issue 13): temp files of killed writers are removed, an entry that is not a file is
replaced."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.artifacts import ArtifactCache
from tests.hostile import (
    KEY,
    PAYLOAD,
    STRUCTURE,
    ZOO,
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
    leftovers = [path.parent / f".{path.name}.{os.getpid()}.abcdefgh.tmp",
                 path.parent / f".{meta.name}.{os.getpid()}.abcdefgh.tmp"]  # fmt: skip
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
