"""Hostile inputs (issue 13): one clean message per bad input, never a traceback, never growing;
every option, manifest key and profile field checked when parsed, with its source named.

Usage errors run pytest in-process (``run_inprocess``: they stop before collection, in a fraction of
a second); suite runs that must look like a user's run go through a subprocess (``run_suite``) with
the default traceback style.
"""

from __future__ import annotations

import importlib
import json
import re
import traceback
from pathlib import Path

import numpy as np
import pytest

from fixtures.cases import file_models
from fixtures.errors import ORT_LOAD_ERRORS, USER_ERRORS
from fixtures.workspace import build_once
from models.artifacts import ArtifactCache
from models.zoo import ZOO as SPECS
from models.zoo import onnx_path
from tests.conftest import REPO
from tests.hostile import (
    CPU_PROFILE,
    SUITES,
    ZOO,
    assert_clean,
    usage_error,
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


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("fixtures.workspace").workspace.PrepareError("m.onnx: bad model"),
        lambda: _TwoArgs("m.onnx", "cannot be rebuilt from its args"),
    ],
    ids=["prepare_error", "custom_init"],
)
def test_cached_failure_is_raised_fresh_each_time(make) -> None:
    """Fails when the remembered exception object itself is raised again: each test would see
    one shared object whose traceback grows by two frames per test."""

    def build():
        try:
            int("not a number")
        except ValueError as cause:
            raise make() from cause

    store: dict = {}
    raised = []
    for _ in range(4):
        with pytest.raises(Exception) as info:
            build_once(store, "model", build)
        raised.append(info.value)
    assert len({id(e) for e in raised} | {id(store["model"])}) == 5  # all distinct objects
    assert {type(e) for e in raised} == {type(store["model"])}
    assert {str(e) for e in raised} == {str(store["model"])}
    assert all(isinstance(e.__cause__, ValueError) for e in raised)
    depths = [len(traceback.extract_tb(e.__traceback__)) for e in raised]
    assert len(set(depths)) == 1, depths  # never growing


def _bad_models(folder: Path) -> dict[str, tuple[str, str]]:
    """Model files a hostile user would give: name -> (manifest path, what the message says)."""
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
    manifest.write_text(
        "".join(
            f'[[model]]\nname = "{n}"\npath = "{p}"\nthreshold = 0.9\n' for n, (p, _) in bad.items()
        )
    )
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


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((8, 3, 32, 32), np.nan, np.float32), "contains NaN or infinite values"),
        (
            np.zeros((8, 1, 28, 28), np.float32),
            "expected images of shape (N,3,32,32) or (N,32,32,3)",
        ),
    ],
    ids=["nan", "mnist_shaped"],
)
def test_bad_calibration_data_fails_each_test_with_one_message(
    run_suite, tmp_path: Path, array: np.ndarray, message: str
) -> None:
    """int8 with an unusable --calibration-data, default traceback style: fails when an affected
    test prints a traceback or more than a few lines, or does not name the file."""
    cal = tmp_path / "cal.npy"
    np.save(cal, array)
    result = run_suite(
        str(REPO / "suites" / "test_exit_flag.py"),
        str(REPO / "suites" / "test_precision_audit.py"),
        *ZOO,
        "--precision=int8",
        f"--calibration-data={cal}",
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    sections = assert_clean(out)
    assert len(sections) >= 3, out
    for title, lines in sections.items():
        assert any(f"{cal}: {message}" in ln for ln in lines), (title, lines)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "Orin Nano", "", ".hidden", "x" * 65])
def test_profile_name_cannot_escape_its_folder(run_inprocess, tmp_path: Path, name: str) -> None:
    """Baselines go to reports/benchmarks/<profile name>/: fails when a name with a path in it
    (or one that is not a plain folder name) is accepted."""
    prof = tmp_path / "evil.toml"
    prof.write_text(CPU_PROFILE.replace('name = "cpu"', f"name = {json.dumps(name)}"))
    err = usage_error(run_inprocess(*ZOO, f"--device={prof}"))
    assert f"{prof}: name {name!r} must be lower-case letters, digits" in err
    assert not (REPO / "reports" / "x").exists()


# ---- 3. validated when parsed, with the source named ------------------------------------------


MANIFESTS = [
    ("path = 5", "[[model]] #1: path must be a non-empty string, got 5"),
    ('path = ""', "[[model]] #1: path must be a non-empty string, got ''"),
    ('path = "m.onnx"\nname = 5', "[[model]] #1: name must be a non-empty string, got 5"),
    ('path = "m.onnx"\nname = "!!!"', "[[model]] #1: name: cannot make a test id value from '!!!'"),
    ('path = "m.onnx"\nflag_output = 5', "[[model]] #1: flag_output must be a non-empty string"),
    ('path = "m.onnx"\nflag_layout = ["concat"]', "[[model]] #1: flag_layout must be one of"),
    ('path = "m.onnx"\nthreshold = "0.9"', "[[model]] #1: threshold must be a finite number"),
    ('path = "m.onnx"\nthreshold = nan', "[[model]] #1: threshold must be a finite number"),
    ('path = "m.onnx"\nthreshold = inf', "[[model]] #1: threshold must be a finite number"),
    ('path = "m.onnx"\nthreshold = true', "[[model]] #1: threshold must be a finite number"),
    ('path = "m.onnx"\nthresold = 0.9', "[[model]] #1: unknown key(s) ['thresold']"),
]


@pytest.mark.parametrize(("entry", "message"), MANIFESTS, ids=[m[0] for m in MANIFESTS])
def test_bad_manifest_entry(run_inprocess, tmp_path: Path, entry: str, message: str) -> None:
    """Fails on an INTERNALERROR or a message that does not name the manifest and entry."""
    m = tmp_path / "models.toml"
    m.write_text(f"[[model]]\n{entry}\n")
    assert f"{m} {message}" in usage_error(run_inprocess(f"--model={m}"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'[[model]]\npath = "caf\xe9.onnx"\n', ": not UTF-8 text (byte 0xe9 at offset 21)"),
        (b"model = [1, 2]\n", " [[model]] #1: expected a table ([[model]]), got 1"),
        (b'models = [{path = "m.onnx"}]\n', ": unknown top-level key(s) ['models']"),
        (b"[[model]\n", ": not valid TOML"),
    ],
    ids=["latin1_bytes", "not_tables", "typo_table", "broken_toml"],
)
def test_bad_manifest_file(run_inprocess, tmp_path: Path, text: bytes, message: str) -> None:
    """Fails on an INTERNALERROR or a message that does not name the manifest."""
    m = tmp_path / "models.toml"
    m.write_bytes(text)
    assert f"{m}{message}" in usage_error(run_inprocess(f"--model={m}"))


def test_manifest_keys_reach_the_model(tmp_path: Path) -> None:
    """The documented keys are read: fails when flag_output is dropped, or when an entropy exit's
    threshold above 1 is refused."""
    m = tmp_path / "models.toml"
    m.write_text('[[model]]\npath = "m.onnx"\nthreshold = 1.5\nflag_output = "exit_flag"\n')
    (ref,) = file_models([str(m)])
    assert (ref.threshold, ref.flag_output, ref.file) == (
        1.5,
        "exit_flag",
        str(tmp_path / "m.onnx"),
    )
    (ref,) = file_models([str(tmp_path / "n.onnx")], {"threshold": 2.0, "flag_output": "flag"})
    assert (ref.threshold, ref.flag_output) == (2.0, "flag")


PROFILES = [
    (
        "jetson_model = []",
        "jetson_model = 5",
        "match.jetson_model must be a list of non-empty strings",
    ),
    (
        "flip_rate = 0.10",
        "flip_rate = 7",
        "tolerance.int8.flip_rate is a fraction of the evaluation inputs and must be in [0, 1], got 7",
    ),
    ("top1_agree = 0.95", "top1_agree = 3", "tolerance.int8.top1_agree is a fraction"),
    (
        "workspace_mib = 1024",
        "workspace_mib = -5",
        "workspace_mib (the TensorRT builder workspace limit) must be > 0, got -5",
    ),
    (
        "workspace_mib = 1024",
        "workspace_mib = true",
        "'workspace_mib' must be an integer, got True (bool)",
    ),
    ("memory_gib = 0", "memory_gib = nan", "memory_gib must be a finite number > 0"),
    (
        'kind = "cpu"',
        'kind = "dgpu"',
        "memory_gib must be a finite number > 0 (0 only for kind = 'cpu'), got 0",
    ),
    ('kind = "cpu"', 'kind = "tpu"', "kind must be one of ('jetson', 'dgpu', 'cpu'), got 'tpu'"),
    (
        "builder_optimization_level = 3",
        "builder_optimization_level = 9",
        "builder_optimization_level must be 0..5",
    ),
    ('precisions = ["fp32", "fp16", "int8"]', "precisions = []", "precisions is empty"),
    (
        'precisions = ["fp32", "fp16", "int8"]',
        'precisions = ["fp32", "fp32", "int8", "fp16"]',
        "precisions repeats a precision",
    ),
    ("atol = 1e-4", "atol = inf", "tolerance.fp32.atol must be a non-negative number, got inf"),
    ('note = "CPUs', 'note = 5\nxnote = "', "'note' must be a string, got 5"),
]


@pytest.mark.parametrize(("old", "new", "message"), PROFILES, ids=[p[1] for p in PROFILES])
def test_bad_profile_field(run_inprocess, tmp_path: Path, old: str, new: str, message: str) -> None:
    """Fails on an INTERNALERROR, an accepted out-of-range value, or a message that does not
    name the profile file and the field."""
    assert old in CPU_PROFILE
    prof = tmp_path / "mydev.toml"
    prof.write_text(CPU_PROFILE.replace(old, new, 1))
    assert f"{prof}: {message}" in usage_error(run_inprocess(*ZOO, f"--device={prof}"))


def test_profile_not_utf8(run_inprocess, tmp_path: Path) -> None:
    prof = tmp_path / "mydev.toml"
    prof.write_bytes(CPU_PROFILE.encode().replace(b"Any machine", b"Any m\xe4chine"))
    err = usage_error(run_inprocess(*ZOO, f"--device={prof}"))
    assert f"{prof}: not UTF-8 text (byte 0xe4" in err


OPTIONS = [
    (["--zoo="], "--zoo=: empty selection (the run would test nothing)"),
    (["--zoo=,"], "--zoo=,: empty selection"),
    (["--layout="], "--layout=: empty selection (the run would test nothing)"),
    (["--precision="], "--precision=: empty selection"),
    (
        ["--case-timeout=inf"],
        "--case-timeout=inf: expected a number of seconds > 0 and at most 86400",
    ),
    (["--case-timeout=nan"], "--case-timeout=nan: expected a number of seconds > 0"),
    (["--case-timeout=1e300"], "--case-timeout=1e300: expected a number of seconds > 0"),
    (["--samples=99999999999999"], "--samples=99999999999999: expected an integer from 8 to 10000"),
    (["--samples=10001"], "--samples=10001: expected an integer from 8 to 10000"),
    (["--cache-dir="], "--cache-dir=: empty; expected a folder"),
    (["--calibration-data="], "--calibration-data=: empty"),
    (["--report-dir="], "--report-dir=: empty; expected a folder, or 'none'"),
    (["--model="], "--model=: empty; expected an .onnx file or a .toml manifest"),
    (
        ["--model=m.onnx", "--zoo=resnet8"],
        "--zoo: --model replaces the zoo, so this zoo selection would be ignored",
    ),
    (["--model=m.onnx", "--layout=concat"], "--layout: --model replaces the zoo"),
    (
        ["--threshold=0.9"],
        "--threshold: only for your own model file (--model=FILE.onnx); the zoo's models need",
    ),
    (["--flag-layout=concat"], "--flag-layout: only for your own model file"),
    (["--input-layout=NHWC"], "--input-layout: only for your own model file"),
    (["--flag-output=flag"], "--flag-output: only for your own model file"),
    (["--model=m.onnx", "--threshold=nan"], "--threshold=nan: expected a finite number"),
    (["--model=m.onnx", "--threshold=-inf"], "--threshold=-inf: expected a finite number"),
    (["--model=m.onnx", "--flag-output="], "--flag-output=: empty"),
]


@pytest.mark.parametrize(("args", "message"), OPTIONS, ids=[" ".join(o[0]) for o in OPTIONS])
def test_bad_option(run_inprocess, args: list[str], message: str) -> None:
    """Fails when a value that would run nothing, overflow, write elsewhere or be silently ignored
    is accepted, or when the message does not name the option."""
    assert message in usage_error(run_inprocess(*args))


def test_options_for_a_manifest_belong_in_it(run_inprocess, tmp_path: Path) -> None:
    m = tmp_path / "models.toml"
    m.write_text('[[model]]\npath = "m.onnx"\n')
    err = usage_error(run_inprocess(f"--model={m}", "--threshold=0.9"))
    assert (
        "--threshold: only for a .onnx file given with --model, and every --model here is a manifest"
        in err
    )
    assert "set the key(s) per model in the manifest" in err


def test_calibration_folder_must_be_cifar(run_inprocess, tmp_path: Path) -> None:
    err = usage_error(run_inprocess(*ZOO, f"--calibration-data={tmp_path}"))
    assert f"{tmp_path / 'test_batch'} is missing" in err
    (tmp_path / "cal.txt").write_text("1 2 3")
    err = usage_error(run_inprocess(*ZOO, f"--calibration-data={tmp_path / 'cal.txt'}"))
    assert "expected a .npy file of images or a cifar-10-batches-py folder" in err


def test_entropy_threshold_above_one_is_accepted(run_inprocess, tmp_path: Path) -> None:
    """Fails when --threshold is still held to [0, 1] (an entropy exit's can be 1.5)."""
    result = run_inprocess(f"--model={tmp_path / 'm.onnx'}", "--threshold=1.5")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*test_exit_is_real[[]m[]]*"])


#: options of other tools that exitgate's messages and docs name (not pytest options)
OTHER_TOOLS = {
    "trtexec": {
        "--fp16",
        "--int8",
        "--useCudaGraph",
        "--useSpinWait",
        "--warmUp",
        "--duration",
        "--iterations",
    },
    "NVRTC": {"--gpu-architecture"},
    "python -m models": {"--help"},
    "nvidia-smi": {"--query-gpu", "--format"},
    "python -m venv": {"--system-site-packages"},
}
#: known wrong hints (file, option) still to be fixed: none
ELSEWHERE: set[tuple[str, str]] = set()
OPTION = re.compile(r"(?<![\w-])--[A-Za-z][A-Za-z0-9-]*")


def test_hints_name_only_options_that_exist(run_inprocess) -> None:
    """Every ``--option`` a message or help text names exists: fails when a hint sends users to
    an option pytest would reject (as ``--threshold-input`` and ``--flag-output`` once did)."""
    import ast

    result = run_inprocess("--help")
    known = set(OPTION.findall(result.stdout.str())).union(*OTHER_TOOLS.values())
    assert {"--flag-output", "--threshold", "--case-timeout", "--report-dir"} <= known
    trees = {
        str(f.relative_to(REPO)): ast.parse(f.read_text())
        for folder in ("fixtures", "models", "reports", "suites")
        for f in sorted((REPO / folder).rglob("*.py"))
    }
    # the project's own command-line tools (python -m models / reports): what their argparse declares
    for tree in trees.values():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "add_argument"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                known.update(
                    a.value
                    for a in node.args
                    if isinstance(a, ast.Constant) and str(a.value).startswith("--")
                )
    wrong = []
    for rel, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for opt in OPTION.findall(node.value):
                    if opt not in known and (rel, opt) not in ELSEWHERE:
                        wrong.append(f"{rel}: {opt}")
    assert not wrong, sorted(set(wrong))
