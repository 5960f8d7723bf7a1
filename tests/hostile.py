"""Shared helpers of the hostile-input self-tests (issue 13): what a clean failure and a clean
usage error look like, and the constants the three test files share."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import REPO

SUITES = str(REPO / "suites")
STRUCTURE = str(REPO / "suites" / "test_structure.py")
ZOO = ("--zoo=resnet8", "--layout=concat", "--samples=16")
CPU_PROFILE = (REPO / "fixtures" / "profiles" / "cpu.toml").read_text()
OTHER_UID = 12345
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NEEDS_ROOT = "planting a file owned by another uid needs root (os.chown); run the self-tests as root (e.g. in a container) to cover it"
KEY = {"what": "hostile", "v": 1}
PAYLOAD = b"p" * 4096
#: a clean failure: the message (one line, or a short list such as TensorRT's parser errors) and
#: pytest's note that a test body's own frames are hidden; a traceback takes dozens of lines
MAX_LINES_PER_FAILURE = 8


def usage_error(result: pytest.RunResult) -> str:
    out, err = result.stdout.str(), result.stderr.str()
    assert "INTERNALERROR" not in out + err, out + err
    assert "Traceback" not in out + err, out + err
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out + err
    return err


def failure_sections(out: str) -> dict[str, list[str]]:
    """The ERRORS/FAILURES sections of a pytest run: test title -> its lines."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        m = re.match(r"^_+ (?:ERROR at setup of )?(.+?) _+$", line)
        if m:
            current = m.group(1)
            sections[current] = []
        elif line.startswith("=") or line.startswith("FAILED") or line.startswith("ERROR "):
            current = None
        elif current is not None:
            sections[current].append(line)
    return sections


def assert_clean(out: str) -> dict[str, list[str]]:
    for noise in (
        "Traceback",
        "During handling of the above exception",
        "The above exception was the direct cause",
        "INTERNALERROR",
    ):
        assert noise not in out, f"{noise!r} in:\n{out}"
    sections = failure_sections(out)
    assert sections, out
    for title, lines in sections.items():
        assert 1 <= len(lines) <= MAX_LINES_PER_FAILURE, (title, lines)
    return sections
