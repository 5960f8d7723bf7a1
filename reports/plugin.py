"""pytest plugin: collect every test's outcome and the facts suites record, write the summary;
keep pytest-benchmark's stored runs per device profile.

Each suite module declares once which assertion family it is and which of the facts it records the
summary shows (the ``exitgate_family`` marker, see :data:`FAMILY_MARKER`); suites record facts with
``record(key, value)`` (pytest's ``user_properties``: it survives pytest-xdist) under keys starting
with ``exitgate.``. What the run is (profile, backend, versions) comes from the facts the fixtures
plugin publishes (:mod:`fixtures.run_facts`): data flows fixtures -> reports, never back.

At the end of the session the controller writes ``run.json``, ``summary.md``, ``summary.html`` and
plots into ``--report-dir`` (default ``reports/latest``) as one set: into a
temporary folder beside it, then put in its place at once (:func:`models._io.replace_dir`), so a
reader sees this run's files or the previous run's, never some of each. The folder is replaced as a
whole; files other tools wrote there during this run (``--junit-xml``, ``--benchmark-json``) are
carried over. A report that cannot be written fails the run (exit status 3) naming the folder.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.run_facts import run_facts
from models._io import replace_dir, stale_temps, temp_prefix

from .compare import CompareError, load_run
from .summary import write_summary

DEFAULT_DIR = Path(__file__).resolve().parent / "latest"
BENCHMARK_DIR = Path(__file__).resolve().parent / "benchmarks"
PYTEST_BENCHMARK_STORAGE = "file://./.benchmarks"  # pytest-benchmark's default --benchmark-storage
STORED_RUN = "*/[0-9][0-9][0-9][0-9]_*.json"  # <storage>/<machine id>/<NNNN>_<name>.json
PREFIX = "exitgate."
FAMILY = PREFIX + "family"
FAMILY_MARKER = (
    "exitgate_family(name, facts={}, order=100): the assertion family of a suite module "
    "(`pytestmark = pytest.mark.exitgate_family(...)`): `name` heads its column in the summary's "
    "status table (columns by `order`), `facts` maps each recorded fact key the summary shows to "
    "its section title"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("exitgate")
    g.addoption(
        "--report-dir",
        default=None,
        help="where the run summary goes (default reports/latest, or $EXITGATE_REPORT_DIR; "
        "'none' disables it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", FAMILY_MARKER)
    profile = run_facts(config).get("profile")  # published by the fixtures plugin (tryfirst)
    if profile and config.getoption("benchmark_storage", None) == PYTEST_BENCHMARK_STORAGE:
        # stored runs per device profile, unless the user chose a storage: pytest-benchmark's
        # machine id cannot tell an Orin Nano from a desktop (it reads the option after us: trylast)
        config.option.benchmark_storage = f"file://{BENCHMARK_DIR / profile}"
    check_stored_runs(config)
    if _saving(config):
        config.stash[_STORED_BEFORE] = _stored_runs(config)
    out = report_dir(config)  # checked even when nothing will run: bad values stop every run
    if config.getoption("collectonly") or hasattr(config, "workerinput"):
        return  # nothing runs, or an xdist worker: the controller writes the report
    if out is not None:
        config.pluginmanager.register(RunRecorder(config, out), "exitgate-run")


def report_dir(config: pytest.Config) -> Path | None:
    """Where the report goes (None: disabled), checked now so a bad folder stops the run before
    any test instead of losing its report at the end."""
    raw = config.getoption("report_dir")
    source = "--report-dir"
    if raw is None and os.environ.get("EXITGATE_REPORT_DIR") is not None:
        raw, source = os.environ["EXITGATE_REPORT_DIR"], "$EXITGATE_REPORT_DIR"
    if raw is None:
        out, source = DEFAULT_DIR, "the report folder"
    elif raw.lower() == "none":
        return None
    elif not raw.strip():
        raise pytest.UsageError(
            f"{source}=: empty; expected a folder, or 'none' to write no report"
        )
    else:
        out = Path(raw).expanduser().resolve()
    where = f"{source} ({out})" if source != "the report folder" else f"the report folder {out}"
    if out.exists() and (not out.is_dir() or out.is_symlink()):
        raise pytest.UsageError(f"{where}: exists and is not a folder; choose another")
    if out.is_dir() and not (out / "run.json").is_file() and any(out.iterdir()):
        raise pytest.UsageError(
            f"{where}: holds files and no run.json, so it is not an exitgate report folder; each "
            "run replaces the report folder as a whole, so choose a new or empty folder"
        )
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise pytest.UsageError(
            f"{where}: cannot write there ({parent} is not a folder); choose another folder, or "
            "pass --report-dir=none"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise pytest.UsageError(
            f"{where}: cannot write there ({parent} is not writable); choose a writable folder, "
            "or pass --report-dir=none"
        )
    return out


def check_stored_runs(config: pytest.Config) -> None:
    """With ``--benchmark-compare``, every stored run pytest-benchmark may read must be intact.

    pytest-benchmark reads all stored runs of this machine to find the one to compare against; an
    unreadable one (truncated by a crash, or not a pytest-benchmark file) would otherwise surface
    as an INTERNALERROR traceback, or silently disable the comparison gate.
    """
    if not getattr(config.option, "benchmark_compare", None):
        return
    for f in sorted(_stored_runs(config)):
        try:
            load_run(f)
        except CompareError as exc:
            raise pytest.UsageError(
                f"--benchmark-compare: stored benchmark run {exc}; delete that file (or restore "
                "it from version control) and rerun"
            ) from None


_STORED_BEFORE = pytest.StashKey[set[Path]]()


def _saving(config: pytest.Config) -> bool:
    """Whether pytest-benchmark saves this run (``--benchmark-save`` / ``--benchmark-autosave``)."""
    return bool(
        config.getoption("benchmark_save", None) or config.getoption("benchmark_autosave", None)
    )


def _stored_runs(config: pytest.Config) -> set[Path]:
    """The stored pytest-benchmark runs (file storage; none for another storage)."""
    storage = str(config.getoption("benchmark_storage", None) or "")
    if not storage.startswith("file://"):
        return set()
    return set(Path(storage.removeprefix("file://")).expanduser().resolve().glob(STORED_RUN))


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    """An interrupted run (Ctrl-C, SIGINT) keeps no benchmark baseline: a partial run would become
    the "latest" that the next ``--benchmark-compare`` reads. pytest-benchmark saves the run in
    its own ``pytest_sessionfinish``; after it, the file(s) this run added are removed."""
    result = yield
    config = session.config
    if exitstatus == pytest.ExitCode.INTERRUPTED and _saving(config):
        for f in sorted(_stored_runs(config) - config.stash.get(_STORED_BEFORE, set())):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        config.get_terminal_writer().line(
            "exitgate: run interrupted: no benchmark baseline saved (rerun to completion to save "
            "one)",
            yellow=True,
        )
    return result


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test carries its module's family declaration to the report (as a user property: it
    reaches the controller under pytest-xdist too)."""
    checked: dict[str, dict[str, Any]] = {}
    for item in items:
        marker = item.get_closest_marker("exitgate_family")
        if marker is None:
            continue
        where = str(item.path)
        if where not in checked:
            checked[where] = family_declaration(where, *marker.args, **marker.kwargs)
        item.user_properties.append((FAMILY, checked[where]))


def family_declaration(
    where: str, name: object = None, facts: object = None, order: object = 100, **unknown: object
) -> dict[str, Any]:
    """The ``exitgate_family`` marker's arguments, checked: a bad declaration is a usage error
    naming the file."""
    problem = None
    if unknown:
        problem = f"unknown argument(s) {sorted(unknown)}; expected name, facts, order"
    elif not isinstance(name, str) or not name.strip():
        problem = f"name must be a non-empty string, got {name!r}"
    elif facts is not None and not (
        isinstance(facts, dict)
        and all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in facts.items())
    ):
        problem = f"facts must map recorded fact keys to section titles (strings), got {facts!r}"
    elif isinstance(order, bool) or not isinstance(order, int):
        problem = f"order must be an integer, got {order!r}"
    if problem:
        raise pytest.UsageError(f"{where}: exitgate_family: {problem}")
    # facts as [key, title] pairs: their declared order survives run.json (written with sorted keys)
    return {"name": name, "facts": [[k, v] for k, v in (facts or {}).items()], "order": order}


class RunRecorder:
    def __init__(self, config: pytest.Config, out: Path) -> None:
        self.config, self.out = config, out
        self.run: dict[str, Any] = {"tests": {}, "families": {}, "started": time.time()}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        t = self.run["tests"].setdefault(report.nodeid, {"outcome": "passed", "props": {}})
        for key, value in report.user_properties:
            if key == FAMILY:  # the declaration once per run, its name per test
                self.run["families"].setdefault(value["name"], value)
                t["family"] = value["name"]
            elif str(key).startswith(PREFIX):
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

    @pytest.hookimpl(tryfirst=True)  # before --junit-xml writes into the report folder
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.run["tests"]:
            return
        self.run["finished"] = time.time()
        self.run["exitstatus"] = int(exitstatus)
        self.run["environment"] = environment(self.config)
        tw = self.config.get_terminal_writer()
        try:
            paths = write_report(self.run, self.out)
        except Exception as exc:  # noqa: BLE001 - reported, and the run fails (below)
            tw.line(
                f"exitgate: could not write the report to {self.out}: {exc}. The test results "
                "above stand; fix the folder (permissions, free space) or choose another with "
                "--report-dir (exit status 3)",
                red=True,
            )
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return
        tw.line(f"exitgate: report written to {paths['md']}")


def write_report(run: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write the report for ``run`` as one set at ``out`` (see the module docstring)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for leftover in stale_temps(out.parent):  # sets of killed writers
        if leftover.name.startswith(f".{out.name}."):
            with contextlib.suppress(OSError):
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the report from other readers
        paths = write_summary(run, tmp)
        if out.is_dir():  # what other tools wrote there during this run joins the new set
            for f in out.iterdir():
                if (
                    f.is_file()
                    and not (tmp / f.name).exists()
                    and f.stat().st_mtime >= run.get("started", 0)
                ):
                    os.replace(f, tmp / f.name)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {k: out / p.name for k, p in paths.items()}


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
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "host": platform.node(),
        "args": list(config.invocation_params.args),
    }
    env.update(run_facts(config))
    return env
