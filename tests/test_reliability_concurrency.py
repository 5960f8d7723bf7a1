"""Concurrency: parallel workers and separate invocations build each cache entry exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from models.artifacts import BUILD_LOG_ENV, ArtifactCache
from tests.conftest import REPO


def _entries(cache: Path) -> dict[str, list[Path]]:
    """kind -> its record files; each record must name exactly one intact payload."""
    out: dict[str, list[Path]] = {}
    for meta in sorted(cache.glob("*/*.meta.json")):
        kind, digest = meta.parent.name, meta.name.removesuffix(".meta.json")
        payloads = [
            p
            for p in meta.parent.glob(f"{digest}.*")
            if not p.name.endswith((".meta.json", ".lock", ".tmp"))
        ]
        assert len(payloads) == 1, (meta, payloads)
        rec = json.loads(meta.read_text())
        assert rec["size"] == payloads[0].stat().st_size, meta
        out.setdefault(kind, []).append(payloads[0])
    return out


@pytest.mark.slow
def test_cold_cache_parallel_run_builds_each_artifact_once(run_suite, tmp_path, monkeypatch):
    cache, log = tmp_path / "cache", tmp_path / "builds.log"
    monkeypatch.setenv("EXITGATE_CACHE_DIR", str(cache))
    monkeypatch.setenv(BUILD_LOG_ENV, str(log))
    args = (
        "-n",
        "4",
        "--zoo=resnet8",
        "--layout=concat",
        "--precision=fp32,fp16,int8",
        "--samples=16",
    )
    suites = [
        str(REPO / "suites" / f)
        for f in ("test_structure.py", "test_exit_flag.py", "test_correctness.py")
    ]
    result = run_suite(*suites, *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    builds = Counter(
        line.split()[0] + " " + line.split()[1] for line in log.read_text().splitlines()
    )
    twice = {k: n for k, n in builds.items() if n > 1}
    assert not twice, f"built more than once: {twice}"
    # the zoo export, its fp16 and its int8 artifact, each built once by one of the workers
    assert Counter(k.split()[0] for k in builds) == {"zoo_onnx": 1, "fp16_onnx": 1, "int8_onnx": 1}
    entries = _entries(cache)
    assert {k: len(v) for k, v in entries.items()} == {
        "zoo_onnx": 1,
        "fp16_onnx": 1,
        "int8_onnx": 1,
    }
    assert not list(cache.rglob("*.tmp"))
    # a second invocation on the warm cache builds nothing and changes nothing
    before = {p: p.stat().st_mtime_ns for ps in entries.values() for p in ps}
    log.unlink()
    result = run_suite(*suites, *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not log.exists() or not log.read_text(), log.read_text()
    assert {p: p.stat().st_mtime_ns for ps in _entries(cache).values() for p in ps} == before


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from models.artifacts import ArtifactCache

    def build():
        time.sleep(1.5)  # slow: the other process arrives while this one holds the lock
        return b"payload" * 1000

    for i in range(3):
        e = ArtifactCache(sys.argv[1]).get_or_build("shared", {{"i": i}}, build)
        print(i, e.built, e.path, flush=True)
    """
).format(repo=str(REPO))


def test_two_invocations_share_a_cache_without_corrupting_it(tmp_path: Path) -> None:
    script, cache, log = tmp_path / "child.py", tmp_path / "cache", tmp_path / "builds.log"
    script.write_text(CHILD)
    env = {**os.environ, BUILD_LOG_ENV: str(log)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(cache)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        outs.append(out.splitlines())
    built = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert len(built) == 3 and set(built.values()) == {1}, log.read_text()  # each key built once
    for i in range(3):  # every process got the same, intact entry for each key
        paths = {o[i].split()[2] for o in outs}
        assert len(paths) == 1
        assert sum(o[i].split()[1] == "True" for o in outs) == 1
        assert ArtifactCache(cache).valid("shared", {"i": i}, ".bin") == Path(paths.pop())
    assert {k: len(v) for k, v in _entries(cache).items()} == {"shared": 3}
