"""The run summary is built from what the suites declare (``exitgate_family``), never from file
names: a new assertion family is one suite file, and its facts reach the report without editing
``reports/``. The run's facts reach the report through ``fixtures.run_facts`` (fixtures -> reports).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from reports.plugin import family_declaration
from reports.summary import LAYOUTS, render_markdown, sections
from tests.conftest import REPO

NEW_FAMILY = """
import pytest

pytestmark = pytest.mark.exitgate_family(
    "widget check", order=5, facts={"widget": "Widgets per test", "gizmo": "Gizmos"}
)


@pytest.mark.parametrize("n", [1, 2])
def test_widgets(n, record):
    record("widget", {"count": n})
    record("unshown", n)  # recorded, not declared: in run.json only
    assert n == 1, "only one widget expected"
"""


def test_a_new_family_reaches_the_report_from_its_own_file(pytester, monkeypatch) -> None:
    """One file outside the repository, no edit of reports/: its column, its declared fact's
    section (titled as declared, a failing test in it) and nothing it did not declare."""
    (pytester.path / "test_widgets.py").write_text(NEW_FAMILY)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")
    out = pytester.path / "report"
    result = pytester.runpytest_subprocess(
        "-p",
        "fixtures.plugin",
        "-p",
        "reports.plugin",
        "-p",
        "no:randomly",
        "--zoo=resnet8",
        "--layout=concat",
        f"--report-dir={out}",
        "test_widgets.py",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    run = json.loads((out / "run.json").read_text())
    assert run["families"] == {
        "widget check": {
            "name": "widget check",
            "order": 5,
            "facts": [["widget", "Widgets per test"], ["gizmo", "Gizmos"]],
        }
    }
    assert {t["family"] for t in run["tests"].values()} == {"widget check"}
    assert run["environment"]["profile"] == "cpu" and run["environment"]["backend"]
    md = (out / "summary.md").read_text()
    assert "| model | widget check |" in md and "| - | FAIL (2) |" in md
    section = md.split("## Widgets per test\n", 1)[1].split("\n## ", 1)[0]
    assert "| case | result |" in section
    assert '| 1 | {"count": 1} |' in section and '| 2 | {"count": 2} |' in section
    assert "## Gizmos" not in md  # declared, never recorded: no empty table
    assert "unshown" not in md and run["tests"][next(iter(run["tests"]))]["props"]["unshown"]


def _run(**families: dict) -> dict:
    tests = {
        "suites/test_a.py::test_a[m1]": {
            "outcome": "passed",
            "family": "a",
            "props": {"case": {"model": "m1"}, "x": 1, "y": "why"},
        },
        "suites/test_b.py::test_b[m1]": {
            "outcome": "failed",
            "family": "b",
            "reason": "boom",
            "props": {"case": {"model": "m1"}, "x": 2},
        },
        "suites/test_c.py::test_c[m1]": {
            "outcome": "skipped",
            "reason": "no GPU",
            "props": {"case": {"model": "m1"}},
        },
    }
    return {"tests": tests, "families": families, "environment": {}}


def test_columns_and_sections_follow_the_declarations() -> None:
    run = _run(
        a={"name": "a", "order": 2, "facts": [["y", "Y"], ["x", "X first"]]},
        b={"name": "b", "order": 1, "facts": [["x", "X second"]]},
    )
    secs = {title: (header, rows) for title, header, rows, _ in sections(run)}
    header, rows = secs["Status per model"]
    assert header == ["model", "b", "a", "test_c.py"]  # declared by order, then undeclared files
    assert rows == [["m1", "FAIL", "pass", "skip"]]
    # a fact declared twice: one section, all tests recording it, the first declaration's title
    assert secs["X second"] == (["case", "result"], [["m1", "1"], ["m1", "2"]])
    assert "X first" not in secs and secs["Y"] == (["case", "result"], [["m1", "why"]])
    titles = [t for t, *_ in sections(run)]
    assert titles.index("X second") < titles.index("Y")  # family b's facts before a's
    # run.json is written with sorted keys: re-rendering it keeps the declared order
    assert sections(json.loads(json.dumps(run, sort_keys=True))) == sections(run)
    # nothing declared: status per file, and no fact section at all
    bare = [t for t, *_ in sections(_run())]
    assert bare == [
        "Environment",
        "Status per model",
        "Skipped or expected to fail, and why",
        "Failures",
    ]


def test_a_fact_with_a_layout_gets_its_columns_and_the_declared_title() -> None:
    run = _run(a={"name": "a", "order": 1, "facts": [["engine", "What ran"]]})
    run["tests"]["suites/test_a.py::test_a[m1]"]["props"]["engine"] = {"backend": "ort"}
    md = render_markdown(run, [])
    assert "## What ran\n\n| case | engine |\n|---|---|\n| m1 | backend ort |" in md
    assert LAYOUTS["engine"][0] == ["case", "engine"]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "name must be a non-empty string, got None"),
        (("",), {}, "name must be a non-empty string, got ''"),
        (
            ("a",),
            {"facts": ["x"]},
            "facts must map recorded fact keys to section titles (strings), got ['x']",
        ),
        (
            ("a",),
            {"facts": {"x": 3}},
            "facts must map recorded fact keys to section titles (strings), got {'x': 3}",
        ),
        (("a",), {"order": "1"}, "order must be an integer, got '1'"),
        (("a",), {"title": "A"}, "unknown argument(s) ['title']; expected name, facts, order"),
    ],
)
def test_bad_declarations_name_the_file(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(pytest.UsageError) as info:
        family_declaration("suites/test_x.py", *args, **kwargs)
    assert str(info.value) == f"suites/test_x.py: exitgate_family: {message}"


def test_a_bad_declaration_stops_the_run_naming_the_file(pytester, monkeypatch) -> None:
    f = pytester.path / "test_bad.py"
    f.write_text(
        textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.exitgate_family("bad", facts={"x": 1})
        def test_x():
            pass
        """)
    )
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("EXITGATE_FORCE_CPU", "1")
    result = pytester.runpytest_subprocess(
        "-p",
        "fixtures.plugin",
        "-p",
        "reports.plugin",
        "--zoo=resnet8",
        "--report-dir=none",
        str(f),
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{f}: exitgate_family: facts must map" in result.stderr.str()


def test_every_suite_declares_its_family() -> None:
    """Each suite module declares its family once; fails when a suite is added without one (its
    facts would not reach the summary)."""
    for f in sorted((REPO / "suites").glob("test_*.py")):
        text = f.read_text()
        assert text.count("pytest.mark.exitgate_family(") == 1, f"{f.name}: no family declared"


def test_reports_reads_no_fixtures_plugin_internals() -> None:
    """Data flows fixtures -> reports through ``fixtures.run_facts`` and pytest-benchmark's
    public options; fails when reports/ imports the fixtures plugin or pytest-benchmark's session,
    or fixtures/ names the reports folder."""
    for f in sorted((REPO / "reports").glob("*.py")):
        text = f.read_text()
        assert not re.search(r"(from|import) fixtures(\.plugin| import plugin)", text), f.name
        assert "_benchmarksession" not in text, f.name
    for f in sorted(Path(REPO / "fixtures").rglob("*.py")):
        assert '"reports"' not in f.read_text(), f.name
