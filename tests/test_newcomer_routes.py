"""The README's four extension routes ("Extending exitgate: four routes"), followed as a newcomer
would: each is one file plus at most one registration line, and the suites pick it up.

- a backend: one module and one ``BACKENDS`` line, here both outside the repository (the line in a
  ``-p`` plugin of one line), then ``suites/test_exit_flag.py --backend=<name>`` passes.
- a device profile: one ``.toml``, by path and, in the profile folder, by name and by ``cuda_name``.
- an assertion family: ``tests/test_reports_families.py::
  test_a_new_family_reaches_the_report_from_its_own_file`` follows that route already (one suite
  file outside the repository, its column and section in the report); not repeated here.
- a zoo model: one factory module and one ``ModelSpec`` line in ``models/zoo.py``, in a scratch copy
  of the repository (the route edits the repository and writes ``models/weights``), a tiny recipe,
  ``python -m models.train <name>``, then the suites run it with ``--zoo=<name>``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fixtures import devices
from fixtures.devices import ProfileError, detect, load_profile
from tests.conftest import REPO

EXIT_FLAG = str(REPO / "suites" / "test_exit_flag.py")
ZOO = ("--zoo=resnet8", "--layout=concat")

# The new backend's one file, as the README describes it: an Engine, a factory, a DESCRIPTOR whose
# module imports nothing heavy (onnxruntime is imported inside build). Every build is logged, so
# the test knows the suite ran this engine and not the default one.
BACKEND_MODULE = textwrap.dedent(
    '''
    """A host backend wrapping onnxruntime under a name of its own."""

    import os

    from fixtures.backends.base import Backend, Engine, TensorSpec

    DESCRIPTOR = Backend(
        name="mine", factory="mine_backend:build", distributions=("onnxruntime",), device=False
    )


    class MineEngine(Engine):
        backend = "mine"

        def __init__(self, onnx_path, precision):
            import numpy as np
            import onnxruntime as ort

            self._sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}

            def spec(a):
                shape = tuple(d if isinstance(d, int) else -1 for d in a.shape)
                return TensorSpec(a.name, shape, np.dtype(types.get(a.type, np.float32)))

            super().__init__(
                [spec(i) for i in self._sess.get_inputs()],
                [spec(o) for o in self._sess.get_outputs()],
                precision,
            )

        def run(self, feeds):
            names = [o.name for o in self.outputs]
            return dict(zip(names, self._sess.run(names, feeds)))


    def build(onnx_path, precision, **options):
        with open(os.environ["MINE_LOG"], "a") as log:
            log.write(f"{os.path.basename(str(onnx_path))} {precision}\\n")
        return MineEngine(onnx_path, precision)
    '''
)


def _backend_files(tmp_path: Path, target: str = "mine_backend:DESCRIPTOR", name: str = "mine"):
    (tmp_path / "mine_backend.py").write_text(BACKEND_MODULE)
    # the one registration line; a -p plugin stands in for the line in fixtures/backends/base.py
    (tmp_path / "register_mine.py").write_text(
        f"from fixtures.backends.base import BACKENDS\nBACKENDS[{name!r}] = {target!r}\n"
    )


@pytest.fixture
def backend_env(tmp_path: Path, run_suite, monkeypatch: pytest.MonkeyPatch):
    _backend_files(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(tmp_path)]))
    monkeypatch.setenv("MINE_LOG", str(tmp_path / "builds.log"))
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")
    return run_suite


def test_a_new_backend_is_one_module_and_one_registry_line(tmp_path: Path, backend_env) -> None:
    result = backend_env("-p", "register_mine", EXIT_FLAG, "--backend=mine", *ZOO)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out
    result.assert_outcomes(passed=3)
    assert "exitgate: backend mine," in out  # the report header names it
    assert "onnxruntime" in out.split("exitgate: versions:")[1].splitlines()[0]
    run = json.loads((Path(os.environ["EXITGATE_REPORT_DIR"]) / "run.json").read_text())
    assert run["environment"]["backend"] == "mine", run  # and so does the run's record
    builds = (tmp_path / "builds.log").read_text().splitlines()
    assert builds and all(line.endswith(" fp32") for line in builds), builds


def test_a_new_backend_is_offered_by_help(backend_env) -> None:
    result = backend_env("-p", "register_mine", str(REPO / "suites"), "--help")
    assert result.ret == pytest.ExitCode.OK
    out = " ".join(result.stdout.str().split())  # help text is wrapped
    assert "one of onnxruntime, torch, tensorrt, mine" in out


@pytest.mark.parametrize(
    ("target", "name", "says"),
    [
        ("mine_backend:DESCRIPTR", "mine", "cannot be imported: module 'mine_backend' has no"),
        ("mine_backnd:DESCRIPTOR", "mine", "cannot be imported: No module named 'mine_backnd'"),
        ("mine_backend:DESCRIPTOR", "theirs", "is not the Backend named 'theirs'"),
    ],
    ids=["attribute", "module", "name"],
)
def test_a_misregistered_backend_is_one_clear_error(
    tmp_path: Path, backend_env, target: str, name: str, says: str
) -> None:
    _backend_files(tmp_path, target, name)
    result = backend_env("-p", "register_mine", EXIT_FLAG, f"--backend={name}", *ZOO)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"--backend={name}: BACKENDS[{name!r}] = {target!r}" in err and says in err, err
    assert "Traceback" not in err


# ---- device profile ----


def _profile(name: str, cuda_name: str) -> str:
    text = (devices.PROFILE_DIR / "h200.toml").read_text()  # the README: copy h200.toml
    text = text.replace('name = "h200"', f'name = "{name}"', 1)
    return text.replace('cuda_name = ["H200"]', f"cuda_name = [{cuda_name!r}]", 1)


def test_a_new_profile_by_path_drives_a_run(tmp_path: Path, run_suite, monkeypatch) -> None:
    path = tmp_path / "l4.toml"
    path.write_text(_profile("l4", "L4"))
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")  # a path is taken as asked, whatever the machine
    result = run_suite(EXIT_FLAG, f"--device={path}", *ZOO)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out
    assert "profile l4" in out, out  # the header names the new profile


def _profiles_with_l4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    """A copy of the profile folder, in use, with ``l4.toml`` added (its ``name = name``) and no
    CUDA device seen: the route's "copy a profile into fixtures/profiles/" without touching it."""
    folder = tmp_path / "profiles"
    shutil.copytree(devices.PROFILE_DIR, folder)
    (folder / "l4.toml").write_text(_profile(name, "NVIDIA L4"))
    monkeypatch.setattr(devices, "PROFILE_DIR", folder)
    monkeypatch.delenv("EXITGATE_FORCE_CPU", raising=False)
    monkeypatch.setattr(devices, "_cuda_device_name", lambda: None)
    return folder


def test_a_new_profile_in_the_folder_is_found_by_name_and_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is copied (the route writes into fixtures/profiles/): the new file is listed,
    loads by name, and auto-detection matches its cuda_name; no list of names to edit."""
    _profiles_with_l4(tmp_path, monkeypatch, name="l4")
    assert "l4" in devices.profile_names()
    assert load_profile("l4").match["cuda_name"] == ["NVIDIA L4"]
    assert detect(jetson_model="", cuda_name="NVIDIA L4").profile == "l4"
    assert detect(jetson_model="", cuda_name="NVIDIA H200").profile == "h200"  # others unchanged


def test_a_copied_profile_that_keeps_the_old_name_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Copying h200.toml and forgetting its name = "h200" would make --device=l4 and detection
    of an L4 run as the H200 (its benchmarks filed under h200): one error naming the file."""
    folder = _profiles_with_l4(tmp_path, monkeypatch, name="h200")
    says = re.escape(f"{folder / 'l4.toml'}: name = 'h200', but a profile in {folder} is named")
    for attempt in (lambda: load_profile("l4"), lambda: detect(jetson_model="", cuda_name="L4")):
        with pytest.raises(ProfileError, match=says):
            attempt()


# ---- zoo model ----

TINY_NET = textwrap.dedent(
    """
    from torch import nn

    from models.nets import Backbone


    def tiny(num_classes: int = 10) -> Backbone:
        trunk = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2))
        exit_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
        deep = nn.Sequential(
            nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(16, num_classes),
        )
        return Backbone(trunk, exit_head, deep)
    """
)
# one ModelSpec line; its default threshold must send the dataset both ways (the exit-flag suite and
# tests/test_zoo_export.py check it): a recipe this small leaves every input below 0.9
TINY_SPEC = """\
        ModelSpec("tiny", "models.tiny:tiny", Recipe(epochs=1, lr=3e-3, train_samples=512), 0.2),
"""


@pytest.mark.slow
def test_a_new_zoo_model_is_one_module_and_one_spec_line(tmp_path: Path) -> None:
    """In a scratch copy of the repository: models/tiny.py, one ModelSpec line, the training
    command, then the suite runs it by name with nothing else edited."""
    repo = tmp_path / "repo"
    for part in ("models", "fixtures", "suites", "reports"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("conftest.py", "pyproject.toml", "tests/conftest.py", "tests/test_zoo_export.py"):
        (repo / f).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / f, repo / f)
    (repo / "models" / "tiny.py").write_text(TINY_NET)
    zoo = repo / "models" / "zoo.py"
    text = zoo.read_text()
    anchor = "    for s in (\n"
    assert text.count(anchor) == 1, "ZOO no longer reads as the README's one-line-per-model list"
    zoo.write_text(text.replace(anchor, anchor + TINY_SPEC))

    env = {**os.environ, "PYTHONPATH": str(repo), "EXITGATE_FORCE_CPU": "1"}
    env["EXITGATE_CACHE_DIR"] = os.environ.get("EXITGATE_CACHE_DIR", str(REPO / ".cache/exitgate"))
    env["EXITGATE_REPORT_DIR"] = "none"

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", *args], cwd=repo, env=env, capture_output=True, text=True
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        return out

    run("models.train", "tiny")  # the README's command, on the CPU
    assert (repo / "models" / "weights" / "tiny.npz").is_file()
    assert '"tiny"' in (repo / "models" / "weights" / "manifest.json").read_text()
    assert not (REPO / "models" / "weights" / "tiny.npz").exists()  # the scratch copy trained

    suite = ["suites/test_exit_flag.py", "--zoo=tiny", "--layout=concat", "--samples=16", "-v"]
    out = run("pytest", *suite, "-p", "no:randomly")
    assert "3 passed" in out and "[tiny-fp32-" in out, out

    # the export self-tests pick it up too: eager vs ONNX on every path, weights fit the spec
    out = run("pytest", "tests/test_zoo_export.py", "-k", "tiny", "-p", "no:randomly")
    assert "8 passed" in out, out
