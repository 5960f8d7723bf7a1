"""Helpers for the self-tests: run pytest on this repository's suites in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: pytest rooted at this repository with its own configuration (and no random test order)
ROOTED = ("--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), "-p", "no:randomly")


@pytest.fixture
def run_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """``run_suite(*args)``: pytest in a subprocess, rooted at this repository, sharing its cache."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv(
        "EXITGATE_CACHE_DIR",
        os.environ.get("EXITGATE_CACHE_DIR", str(REPO / ".cache" / "exitgate")),
    )

    # the suites' run summary goes to the test's own folder, never over reports/latest
    monkeypatch.setenv("EXITGATE_REPORT_DIR", str(pytester.path / "report"))

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(*ROOTED, *args)

    return run


@pytest.fixture
def run_inprocess(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """``run_inprocess(*args)``: pytest in this process, rooted at the repository (usage errors
    stop before collection, so this takes a fraction of a second)."""
    monkeypatch.setenv("EXITGATE_REPORT_DIR", "none")
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_inprocess(
            *ROOTED,
            str(REPO / "suites" / "test_structure.py"),
            "--collect-only",
            "-q",
            *args,
        )

    return run
