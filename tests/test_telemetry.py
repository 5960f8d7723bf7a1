"""Jetson telemetry readers on recorded outputs; --require-locked-clocks off a Jetson."""

from __future__ import annotations

import pytest

from fixtures.gpu import telemetry
from tests.conftest import REPO


def test_l4t_and_jetpack() -> None:
    text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64"
    assert telemetry.l4t_release(text) == "36.4.3"
    assert telemetry.jetpack_from_l4t("36.4.3") == "6.2"
    assert telemetry.jetpack_from_l4t("36.3.0") == "6.0"
    assert telemetry.l4t_release("garbage") is None


def test_nvpmodel_name_not_id() -> None:
    assert telemetry.nvpmodel_mode("NV Power Mode: MAXN_SUPER\n2\n") == "MAXN_SUPER"
    assert telemetry.nvpmodel_mode("NV Power Mode: 15W\n0\n") == "15W"
    assert telemetry.nvpmodel_mode("") is None


def test_clocks_locked_reads_devfreq(tmp_path) -> None:
    (tmp_path / "min_freq").write_text("1020000000\n")
    (tmp_path / "max_freq").write_text("1020000000\n")
    assert telemetry.clocks_locked(tmp_path) is True
    (tmp_path / "min_freq").write_text("306000000\n")
    assert telemetry.clocks_locked(tmp_path) is False


def test_require_locked_clocks_off_jetson_is_a_usage_error(run_suite) -> None:
    r = run_suite(
        str(REPO / "suites" / "test_structure.py"), "--collect-only", "--require-locked-clocks"
    )
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert "--require-locked-clocks: this is not a Jetson" in r.stderr.str()
