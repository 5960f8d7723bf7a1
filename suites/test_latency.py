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
from fixtures.stats import PairResult, Verdict, ordering_gate, untaken_branch_skipped
from fixtures.workspace import Prepared, Workspace

pytestmark = pytest.mark.serial

ROUNDS, K = 30, 20


class TimingInconclusive(UserWarning):
    """The measured ordering is neither established nor inverted."""


def _measure(launchers: dict, stream, seed: int) -> np.ndarray:
    """Interleaved block medians: CUDA events on ``stream`` (device) or perf_counter_ns (host)."""
    from fixtures import timing

    return timing.interleaved_medians(launchers, stream, rounds=ROUNDS, k=K, seed=seed)[1]


class _Launchers:
    """One inference per engine: graph replay or enqueue on a stream of its own (device), host
    ``run()`` (host backends). A context manager: streams and graphs are freed on exit."""

    def __init__(self, device: bool) -> None:
        self.fns: dict = {}
        self._closers: list = []
        self.stream = None
        if device:
            from fixtures import cuda

            self.stream = cuda.Stream()
            self._closers.append(self.stream.close)

    def add(self, label: str, engine: Engine, feeds: dict) -> None:
        if self.stream is None:
            self.fns[label] = lambda: engine.run(feeds)
            return
        from fixtures.timing import device_launcher

        self.fns[label], _, close = device_launcher(engine, feeds, self.stream)
        self._closers.insert(0, close)  # graphs before the stream

    def __enter__(self) -> _Launchers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.synchronize()
        for close in self._closers:
            close()


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
    feeds = prepared.feed(prepared.threshold_for(case.path))
    labels = list(engines)
    pairs = list(itertools.pairwise(labels))
    with _Launchers(all(e.supports_device for e in engines.values())) as launchers:
        for p, e in engines.items():
            launchers.add(p, e, feeds)

        def run(seed: int = 0) -> list[PairResult]:
            return ordering_gate(_measure(launchers.fns, launchers.stream, seed), labels, pairs)

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
    with _Launchers(a.supports_device and b.supports_device) as launchers:
        launchers.add("exit_never", a, prepared.feed(prepared.threshold_for("exit_never")))
        launchers.add("exit_always", b, prepared.feed(prepared.threshold_for("exit_always")))

        def run(seed: int = 0) -> PairResult:
            med = _measure(launchers.fns, launchers.stream, seed)
            return untaken_branch_skipped(med[:, 0], med[:, 1])

        result = run()
        record("latency_paths", result.describe())
        if result.verdict != Verdict.HOLDS:
            result = run(seed=1)
    if result.verdict != Verdict.HOLDS:
        pytest.fail(
            f"[{case.id}] exit_always is not measurably faster than exit_never: "
            f"{result.describe()}. The untaken branch seems to run anyway (or a CUDA graph "
            "froze one branch).",
            pytrace=False,
        )
