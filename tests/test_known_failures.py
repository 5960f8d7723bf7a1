"""known_failures.toml: every id exists, entries are well-formed, and they apply as strict xfail."""

from __future__ import annotations

import pytest

from fixtures.known_failures import KnownFailureError, load_known_failures
from tests.conftest import REPO


def test_no_stale_ids(run_suite) -> None:
    known = load_known_failures()
    assert known, "the file should hold at least the TensorRT 8.6 two-output If entry"
    result = run_suite(
        str(REPO / "suites"),
        "--collect-only",
        "-q",
        "--backend=tensorrt",
        "--precision=fp32,fp16,int8",
    )
    collected = {line.rsplit("/", 1)[-1] for line in result.stdout.lines if "::" in line}
    stale = [kf.id for kf in known if kf.id not in collected]
    assert not stale, f"known_failures.toml names tests that do not exist: {stale}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[failure]]\nid = "a.py::t[x]"\nprofile = "*"\nbackend = "*"\nreason = "r"\nlink = "l"\n'
            '[[failure]]\nid = "a.py::t[x]"\nprofile = "*"\nbackend = "*"\nreason = "r"\nlink = "l"\n',
            "[[failure]] #2: duplicate entry for 'a.py::t[x]'",
        ),
        (
            '[[failure]]\nid = "a.py::t[x]"\nprofile = "*"\nbackend = "*"\nreason = "r"\n',
            "[[failure]] #1: missing link",
        ),
        (
            '[[failure]]\nid = "test_x"\nprofile = "*"\nbackend = "*"\nreason = "r"\nlink = "l"\n',
            "must be an exact test id",
        ),
        (
            '[[failure]]\nid = "a.py::t[x]"\nprofile = "*"\nbackend = "*"\nreason = "r"\nlink = "l"\n'
            'owner = "me"\n',
            "unknown key(s) ['owner']",
        ),
    ],
)
def test_malformed_file_is_rejected(tmp_path, text: str, message: str) -> None:
    f = tmp_path / "kf.toml"
    f.write_text(text)
    with pytest.raises(KnownFailureError) as info:
        load_known_failures(f)
    assert message in str(info.value)
    assert str(f) in str(info.value)


def test_entry_applies_as_strict_xfail(run_suite, tmp_path, monkeypatch) -> None:
    f = tmp_path / "kf.toml"
    f.write_text(
        '[[failure]]\nid = "test_structure.py::test_exit_is_real[resnet8-concat]"\n'
        'profile = "*"\nbackend = "onnxruntime"\nreason = "planted"\nlink = "https://example.org"\n'
    )
    monkeypatch.setenv("EXITGATE_KNOWN_FAILURES", str(f))
    result = run_suite(
        str(REPO / "suites" / "test_structure.py"),
        "--zoo=resnet8",
        "--layout=concat",
        "-k",
        "exit_is_real",
        "-rX",
    )
    # the test passes, so the strict xfail turns it into a failure that names the entry
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*XPASS(strict)*known: planted (https://example.org)*"])
