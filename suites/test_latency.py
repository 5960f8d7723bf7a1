"""The latency-ordering gate (FP32 > FP16 > INT8 per the device profile) and proof that the untaken
branch is skipped, with interleaved rounds and a three-outcome paired test (fixtures/stats.py).

HOLDS passes; INVERTED fails after one confirmatory rerun; INCONCLUSIVE passes with a warning that
gives the measured ratio and interval. Each exit path is gated separately.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from fixtures.backends.base import BackendUnavailable, Engine
from fixtures.cases import Case
from fixtures.stats import PairResult, Verdict, ordering_gate
from fixtures.workspace import Prepared, Workspace

pytestmark = pytest.mark.serial

ROUNDS, K = 30, 20


class TimingInconclusive(UserWarning):
    """The measured ordering is neither established nor inverted."""


def _measure(launchers: dict, stream, seed: int) -> np.ndarray:
    """Interleaved block medians: CUDA events on ``stream`` (device) or perf_counter_ns (host)."""
    from fixtures import timing

    if stream is not None:
        _, med = timing.interleaved_medians(launchers, stream, rounds=ROUNDS, k=K, seed=seed)
    else:
        _, med = timing.interleaved_medians_host(launchers, rounds=ROUNDS, k=K, seed=seed)
    return med


def _launcher(engine: Engine, feeds: dict, stream):
    """One inference: graph replay or enqueue on ``stream``; host ``run()`` when it is None."""
    if stream is None:
        return lambda: engine.run(feeds)
    from fixtures.timing import device_launcher

    return device_launcher(engine, feeds, stream)[0]


def _timing_stream(device: bool):
    if not device:
        return None
    from fixtures import cuda

    return cuda.Stream()


def _gate(case: Case, results: list[PairResult], rerun, record) -> None:
    __tracebackhide__ = True
    record("ordering", [r.describe() for r in results])
    if any(r.verdict == Verdict.INVERTED for r in results):
        results = rerun()  # one confirmatory rerun, decided before the run
        record("ordering_rerun", [r.describe() for r in results])
        inverted = [r for r in results if r.verdict == Verdict.INVERTED]
        if inverted:
            pytest.fail(f"[{case.id}] ordering INVERTED (confirmed by a rerun): "
                        + "; ".join(r.describe() for r in inverted), pytrace=False)  # fmt: skip
    for r in results:
        if r.verdict == Verdict.INCONCLUSIVE:
            warnings.warn(TimingInconclusive(f"[{case.id}] {r.describe()}"), stacklevel=1)


@pytest.mark.exitgate_cases(paths=("exit_always", "exit_never"))
def test_latency_ordering(case: Case, prepared: Prepared, workspace: Workspace, record) -> None:
    s = workspace.settings
    order = [p for p in s.profile.latency_ordering if p in s.precisions]
    if len(order) < 2:
        pytest.skip(
            f"[{case.id}] profile {s.profile.name} gates no latency ordering among "
            f"{','.join(s.precisions)} (its expectation: {list(s.profile.latency_ordering) or 'none'}"
            f"; {s.profile.note or 'see the profile'}); run with --precision=fp32,fp16,int8 on a GPU"
        )
    engines: dict[str, Engine] = {}
    notes = []
    for p in order:
        try:  # a fixed-path engine where the backend has one (capturable), else the fused one
            engines[p] = workspace.path_engine(case.model, p, case.path) or workspace.engine(
                case.model, p
            )
        except BackendUnavailable as exc:
            notes.append(f"{p}: {exc}")
    if len(engines) < 2:
        pytest.skip(f"[{case.id}] fewer than two precisions can run: {'; '.join(notes)}")
    stream = _timing_stream(all(e.supports_device for e in engines.values()))
    feeds = prepared.feeds(prepared.threshold_for(case.path))[0]
    launchers = {p: _launcher(e, feeds, stream) for p, e in engines.items()}
    labels = list(engines)
    pairs = list(itertools.pairwise(labels))

    def run(seed: int = 0) -> list[PairResult]:
        return ordering_gate(_measure(launchers, stream, seed), labels, pairs)

    _gate(case, run(), lambda: run(seed=1), record)


@pytest.mark.exitgate_cases(precision=True)
def test_untaken_branch_is_skipped(
    case: Case, prepared: Prepared, workspace: Workspace, record
) -> None:
    """On one model, exit_always must be faster than exit_never: an engine that runs both
    branches, or a capture that froze one, fails here."""
    precision = case.precision or "fp32"
    try:
        a = workspace.engine(case.model, precision)
        b = workspace.engine(case.model, precision, instance=1)
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")
    stream = _timing_stream(a.supports_device and b.supports_device)
    launchers = {
        "exit_never": _launcher(a, prepared.feeds(1.0)[0], stream),
        "exit_always": _launcher(b, prepared.feeds(0.0)[0], stream),
    }
    labels = list(launchers)

    def run(seed: int = 0) -> list[PairResult]:
        med = _measure(launchers, stream, seed)
        return ordering_gate(med, labels, [("exit_never", "exit_always")])

    results = run()
    record("latency_paths", results[0].describe())
    if results[0].verdict != Verdict.HOLDS:
        results = run(seed=1)
    if results[0].verdict != Verdict.HOLDS:
        pytest.fail(
            f"[{case.id}] exit_always is not measurably faster than exit_never: "
            f"{results[0].describe()}. The untaken branch seems to run anyway (or a CUDA graph "
            "froze one branch).",
            pytrace=False,
        )
