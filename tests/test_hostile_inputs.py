"""Hostile inputs (issue 13): one clean message per bad input, never a traceback, never growing.

Suite runs that must look like a user's run go through a subprocess (``run_suite``) with the
default traceback style.
"""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

import numpy as np
import pytest

from fixtures.errors import ORT_LOAD_ERRORS, USER_ERRORS
from models.artifacts import ArtifactCache
from tests.hostile import (
    SUITES,
    assert_clean,
)

# ---- 1. one clean failure per bad input ---------------------------------------------------------


@pytest.mark.parametrize("name", USER_ERRORS + ORT_LOAD_ERRORS)
def test_user_error_names_resolve(name: str) -> None:
    """Fails when an error class on the closed list is renamed or moved: its failures would turn
    back into tracebacks without anyone noticing."""
    module, _, qualname = name.rpartition(".")
    cls = getattr(importlib.import_module(module), qualname)
    assert isinstance(cls, type) and issubclass(cls, Exception)


class _TwoArgs(Exception):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")


@pytest.mark.parametrize("make", [
    lambda: __import__("fixtures.workspace").workspace.PrepareError("m.onnx: bad model"),
    lambda: _TwoArgs("m.onnx", "cannot be rebuilt from its args"),
], ids=["prepare_error", "custom_init"])  # fmt: skip
def test_cached_failure_is_raised_fresh_each_time(make) -> None:
    """Fails when the remembered exception object itself is raised again: each test would see
    one shared object whose traceback grows by two frames per test."""
    from fixtures.workspace import _once

    def build():
        try:
            int("not a number")
        except ValueError as cause:
            raise make() from cause

    store: dict = {}
    raised = []
    for _ in range(4):
        with pytest.raises(Exception) as info:
            _once(store, "model", build)
        raised.append(info.value)
    assert len({id(e) for e in raised} | {id(store["model"])}) == 5  # all distinct objects
    assert {type(e) for e in raised} == {type(store["model"])}
    assert {str(e) for e in raised} == {str(store["model"])}
    assert all(isinstance(e.__cause__, ValueError) for e in raised)
    depths = [len(traceback.extract_tb(e.__traceback__)) for e in raised]
    assert len(set(depths)) == 1, depths  # never growing


def _bad_models(folder: Path) -> dict[str, tuple[str, str]]:
    """Model files a hostile user would give: name -> (manifest path, what the message says)."""
    from models.zoo import ZOO as SPECS
    from models.zoo import onnx_path

    good = onnx_path(SPECS["resnet8"], "concat", ArtifactCache()).read_bytes()
    import onnx
    from onnx import helper

    (folder / "trunc.onnx").write_bytes(good[: len(good) // 3])
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "junk.onnx").write_bytes(np.random.default_rng(13).bytes(4096))
    (folder / "dir.onnx").mkdir()
    model = onnx.load_from_string(good)  # valid, but onnxruntime has no such operator
    model.graph.node.append(helper.make_node("NoSuchOp", ["input"], ["unused"], name="mystery"))
    (folder / "unknown_op.onnx").write_bytes(model.SerializeToString())
    return {
        "trunc": ("trunc.onnx", "not a readable ONNX model"),
        "empty": ("empty.onnx", "file is empty"),
        "junk": ("junk.onnx", "not a readable ONNX model"),
        "dir": ("dir.onnx", "is a directory"),
        "gone": ("gone.onnx", "no such file"),
        "unknown_op": ("unknown_op.onnx", "NoSuchOp"),  # onnxruntime, the split, TensorRT
    }


def test_bad_model_files_fail_each_test_with_one_message(run_suite, tmp_path: Path) -> None:
    """The whole suite on six bad models, default traceback style: fails when any affected test
    prints a traceback, a chained exception, or more than a few lines, or when a message does
    not name its file."""
    folder = tmp_path / "models"
    folder.mkdir()
    bad = _bad_models(folder)
    manifest = folder / "models.toml"
    manifest.write_text("".join(
        f'[[model]]\nname = "{n}"\npath = "{p}"\nthreshold = 0.9\n' for n, (p, _) in bad.items()
    ))  # fmt: skip
    result = run_suite(SUITES, f"--model={manifest}", "--samples=16")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    sections = assert_clean(out)
    o = result.parseoutcomes()
    assert o.get("failed", 0) + o.get("errors", 0) >= 5 * 20, o  # ~21 tests of each bad model
    for name, (path, why) in bad.items():
        mine = {t: ls for t, ls in sections.items() if f"[{name}-" in t or f"[{name}]" in t}
        assert len(mine) >= 10, (name, sorted(sections))
        for title, lines in mine.items():  # each names the file and says what is wrong with it
            assert any(str(folder / path) in ln for ln in lines), (title, lines)
            assert any(why in ln for ln in lines), (title, lines)
    assert f"onnxruntime cannot load the model {folder / 'unknown_op.onnx'}" in out
