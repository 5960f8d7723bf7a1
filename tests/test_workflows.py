"""The nightly workflow files are valid YAML (yamllint) and run the README's Jetson command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

WORKFLOWS = [REPO / ".github" / "workflows" / "nightly-jetson.yml", REPO / ".gitlab-ci.yml"]
LINT_CONFIG = "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}"


def _readme_jetson_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Running on a Jetson", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    cmds = [ln.split("#", 1)[0].strip() for b in blocks for ln in b.splitlines()]
    return [
        c for c in cmds if c.startswith("python3 -m pip install tox && python3 -m tox -e jetson")
    ]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace(">-\n", " "))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_yamllint_passes(path) -> None:
    if shutil.which("yamllint") is None and not _has_module("yamllint"):
        pytest.skip("yamllint is not installed: pip install yamllint (it is in the dev extra)")
    r = subprocess.run(
        [sys.executable, "-m", "yamllint", "-d", LINT_CONFIG, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs_the_readme_command(path) -> None:
    commands = _readme_jetson_commands()
    assert commands, "README's 'Running on a Jetson' section lost its tox -e jetson command"
    flat = _flat(path.read_text())
    base = "python3 -m pip install tox && python3 -m tox -e jetson --"
    assert base in flat
    for required in (
        "--device=",
        "--require-locked-clocks",
        "--junitxml=reports/latest/junit.xml",
        "--benchmark-compare-fail=median:10%",
        "python3 -m reports compare",
    ):
        assert required in flat, f"{path.name} lacks {required}"
    assert any(c.startswith(base) for c in commands)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
