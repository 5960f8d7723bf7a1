"""The GPU measurement tools (``python -m tests.gpu_split_*``) refuse bad options before they
touch a GPU, naming the option: a wrong ``--builds`` or ``--rounds`` costs no device time."""

from __future__ import annotations

import pytest

from tests import gpu_split_cost, gpu_split_decide, gpu_split_where


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--builds", "0"], "--builds must be >= 1, got 0"),
        (["--rounds", "5"], "--rounds must be >= 6"),
        (["--builds", "two"], "--builds: invalid int value: 'two'"),
    ],
)
def test_split_cost_names_the_bad_option(argv, needle, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        gpu_split_cost.main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("tool", [gpu_split_cost, gpu_split_where, gpu_split_decide])
def test_every_tool_documents_its_options(tool, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        tool.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert tool.__doc__.split("\n")[0].rstrip(".")[:40] in out
    assert "--rounds" in out


def test_where_takes_the_heuristics_flag_of_the_budget_tool(capsys) -> None:
    """Both tools compare graphs on the same cuDNN kernels only with the same flag name."""
    for tool in (gpu_split_cost, gpu_split_where):
        with pytest.raises(SystemExit):
            tool.main(["--help"])
        assert "--cudnn-heuristics" in capsys.readouterr().out
