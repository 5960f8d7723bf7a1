"""CUDA-graph capturability, checked per exit path (a capture can "succeed" with a branch frozen in).

The no-exit twin must be capturable. For early-exit engines the outcome is asserted against the
device profile (``conditional_capturable``) as a strict xfail: a regression and a TensorRT release
that starts capturing conditionals are both reported.
"""

from __future__ import annotations

import pytest

from fixtures.cases import Case
from fixtures.gpu.capturability import check_capturable
from fixtures.workspace import Prepared, Workspace

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.exitgate_family("CUDA graph", order=50, facts={"capture": "CUDA-graph capture"}),
]


@pytest.mark.exitgate_cases(models="twin", precision=True)
def test_twin_is_capturable(
    case: Case, workspace: Workspace, device_engine, cuda_stream, record
) -> None:
    __tracebackhide__ = True

    x = workspace.data().x
    feeds = {"input_a": {"input": x[:1]}, "input_b": {"input": x[1:2]}}
    verdict = check_capturable(device_engine, feeds, cuda_stream)
    record("capture", verdict.message)
    if not verdict.capturable:
        pytest.fail(
            f"[{case.id}] the no-exit twin must be CUDA-graph capturable: {verdict.message}",
            pytrace=False,
        )


@pytest.mark.exitgate_cases(precision=True)
def test_early_exit_capture(
    case: Case,
    prepared: Prepared,
    workspace: Workspace,
    device_engine,
    cuda_stream,
    record,
    request: pytest.FixtureRequest,
) -> None:
    __tracebackhide__ = True

    profile = workspace.settings.profile
    if not profile.conditional_capturable:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=(
                    f"profile {profile.name}: engines with conditionals are not expected to be "
                    "CUDA-graph capturable (the If condition is read on the host); XPASS means this "
                    "backend now captures them: update the profile"
                ),
            )
        )
    # the first input that exits at the default threshold and one that does not, plus extremes
    feeds = {p: prepared.feed(prepared.threshold_for(p)) for p in ("exit_always", "exit_never")}
    verdict = check_capturable(device_engine, feeds, cuda_stream)
    record("capture", verdict.message)
    assert verdict.capturable, f"[{case.id}] {verdict.message}"
