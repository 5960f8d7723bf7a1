"""pytest plugin: collect every test's outcome and the facts suites record, write the summary.

Suites record facts with pytest's ``record_property`` (it survives pytest-xdist) under keys starting
with ``exitgate.``. At the end of the session the controller writes ``run.json``, ``summary.md``,
``summary.html`` and plots into ``--report-dir`` (default ``reports/latest``), each atomically.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import pytest

DEFAULT_DIR = Path(__file__).resolve().parent / "latest"
PREFIX = "exitgate."


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("exitgate")
    g.addoption(
        "--report-dir",
        default=None,
        help="where the run summary goes (default reports/latest, or $EXITGATE_REPORT_DIR; "
        "'none' disables it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    check_stored_runs(config)  # after fixtures.plugin (tryfirst) chose the storage
    if config.getoption("collectonly") or hasattr(config, "workerinput"):
        return  # nothing runs, or an xdist worker: the controller writes the report
    target = config.getoption("report_dir") or os.environ.get("EXITGATE_REPORT_DIR")
    if (target or "").lower() == "none":
        return
    config.pluginmanager.register(RunRecorder(config, Path(target or DEFAULT_DIR)), "exitgate-run")


def check_stored_runs(config: pytest.Config) -> None:
    """With ``--benchmark-compare``, every stored run pytest-benchmark may read must be intact.

    pytest-benchmark reads all stored runs of this machine to find the one to compare against; an
    unreadable one (truncated by a crash, or not a pytest-benchmark file) would otherwise surface
    as an INTERNALERROR traceback, or silently disable the comparison gate.
    """
    storage = str(getattr(config.option, "benchmark_storage", "") or "")
    if not getattr(config.option, "benchmark_compare", None) or not storage.startswith("file://"):
        return
    from .compare import CompareError, load_run

    root = Path(storage.removeprefix("file://")).expanduser()
    for f in sorted(root.glob("*/[0-9][0-9][0-9][0-9]_*.json")):
        try:
            load_run(f)
        except CompareError as exc:
            raise pytest.UsageError(
                f"--benchmark-compare: stored benchmark run {exc}; delete that file (or restore "
                "it from version control) and rerun"
            ) from None


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # before pytest-benchmark saves the run
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    """An interrupted run (Ctrl-C, SIGINT) saves no benchmark baseline: a partial run would become
    the "latest" that the next ``--benchmark-compare`` reads."""
    bs = getattr(session.config, "_benchmarksession", None)
    if exitstatus == pytest.ExitCode.INTERRUPTED and bs is not None and (bs.save or bs.autosave):
        bs.save = bs.autosave = None
        session.config.get_terminal_writer().line(
            "exitgate: run interrupted: no benchmark baseline saved (rerun to completion to save "
            "one)",
            yellow=True,
        )
    yield


class RunRecorder:
    def __init__(self, config: pytest.Config, out: Path) -> None:
        self.config, self.out = config, out
        self.run: dict[str, Any] = {"tests": {}, "started": time.time()}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        t = self.run["tests"].setdefault(report.nodeid, {"outcome": "passed", "props": {}})
        for key, value in report.user_properties:
            if str(key).startswith(PREFIX):
                t["props"][key[len(PREFIX) :]] = value
        t["duration"] = round(t.get("duration", 0.0) + report.duration, 4)
        xfail = hasattr(report, "wasxfail")
        if report.when != "call" and report.passed:
            return
        if xfail:
            t["outcome"] = "xfailed" if report.skipped else "xpassed"
            t["reason"] = report.wasxfail
        elif report.skipped:
            t["outcome"], t["reason"] = "skipped", _skip_reason(report)
        elif report.failed:
            t["outcome"] = "failed" if report.when == "call" else "error"
            t["reason"] = _first_line(report.longreprtext)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.run["tests"]:
            return
        from .summary import write_summary

        self.run["finished"] = time.time()
        self.run["exitstatus"] = int(exitstatus)
        self.run["environment"] = environment(self.config)
        tw = self.config.get_terminal_writer()
        try:
            paths = write_summary(self.run, self.out)
        except Exception as exc:  # noqa: BLE001 - a report failure must not hide the test results
            tw.line(f"exitgate: could not write the report: {exc!r}", red=True)
            return
        tw.line(f"exitgate: report written to {paths['md']}")


def _skip_reason(report: pytest.TestReport) -> str:
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2]).removeprefix("Skipped: ")
    return _first_line(str(lr))


def _first_line(text: str) -> str:
    """The error itself: the first ``E`` line of a traceback, else the first meaningful line."""
    lines = [ln.strip() for ln in text.splitlines()]
    errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    if errors:
        return " ".join(errors[:3])[:400]
    for line in lines:
        if line and not line.startswith(("All traceback entries", "=", "_")):
            return line[:400]
    return ""


def environment(config: pytest.Config) -> dict[str, Any]:
    from fixtures.plugin import SETTINGS, backend_facts

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "host": platform.node(),
        "args": list(config.invocation_params.args),
    }
    s = config.stash.get(SETTINGS, None)
    if s is not None:
        env.update({
            "profile": s.profile.name,
            "profile_description": s.profile.description,
            "detected": s.detection,
            "backend": s.backend,
            "precisions": list(s.precisions),
            "precision_mode": s.precision_mode,
            "samples": s.samples,
            "versions": backend_facts(s.backend),
            "device_mismatch": s.device_mismatch,
        })  # fmt: skip
    return env
