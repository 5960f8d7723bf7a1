"""What an early exit is worth on the data: latency over the input stream and the accuracy-latency
trade-off, per execution strategy.

For each model x precision, the evaluation images run one after another, each its own input
(copied in place into the engine's input buffer on the device, so a captured graph reads it), the
path decided per image by the model itself -- at the model's own threshold, and at a sweep of
thresholds spanning its exit rates (BranchyNet's curve: one point per threshold). Per strategy
(fused, split_host, split_graph where they run) it reports the mean and p99 latency per
inference, the exit rate the strategy itself produced, and the realised speed-up over the no-exit
twin with a block-bootstrap interval. Accuracy per threshold comes from the fp32 reference.

Gate (device backends): a split strategy whose own path latencies promise a speed-up over the
twin at the model's exit rate (>= 10 %) must realise one over the stream (interval above 1).
Host backends (onnxruntime on a CPU) are timed with perf_counter and recorded, not gated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fixtures.backends.base import BackendUnavailable, Engine
from fixtures.cases import Case
from fixtures.checks import fail
from fixtures.gpu import cuda
from fixtures.measure import timing
from fixtures.measure.stats import speedup_interval
from fixtures.strategies import strategy_engine, strategy_run
from fixtures.workspace import Prepared, Workspace
from models.structure import exits

pytestmark = pytest.mark.exitgate_family(
    "exit value",
    order=90,
    facts={
        "stream": "What the exit is worth: latency over the input stream at the model's threshold",
    },
)

# Thresholds in the trade-off sweep (exit rates 0 .. 1). On a host backend (a CPU: slow, recorded,
# never gated) 3 give the two forcing thresholds, the median score and the model's own, each timed
# on the first HOST_IMAGES inputs; the exit rate and accuracy of every point still use all inputs.
SWEEP = {"device": 9, "host": 3}
HOST_IMAGES = 16
CLAIM = 1.10  # a strategy "claims" a speed-up when its path latencies promise at least this


def _twin(workspace: Workspace, case: Case, precision: str) -> Engine | None:
    if case.model.kind != "zoo":
        return None
    return workspace.engine(case.model, precision, variant="plain")


def _engines(workspace: Workspace, case: Case, precision: str, cache: dict):
    engines: dict[str, Engine] = {}
    notes: dict[str, str] = {}
    for s in ("fused", "split_host", "split_graph"):
        try:
            engines[s] = strategy_engine(workspace, case.model, precision, s, cache)
        except BackendUnavailable as exc:
            notes[s] = str(exc)
    try:
        twin = _twin(workspace, case, precision)
    except BackendUnavailable as exc:
        twin, notes["twin"] = None, str(exc)
    if twin is not None:
        engines["twin"] = twin
    return engines, notes


def _sweep(prepared: Prepared, score: np.ndarray, n: int) -> list[float]:
    """The model's own threshold, the two forcing ones, and quantiles of its score between."""
    inner = np.quantile(score, np.linspace(0, 1, n)[1:-1]).tolist()
    ends = [prepared.threshold_for("exit_always"), prepared.threshold_for("exit_never")]
    return sorted({*ends, *inner, prepared.default_threshold})


class _Timer:
    """Per-image latency of one engine at one threshold, on the device or on the host."""

    def __init__(self, prepared: Prepared, device: bool) -> None:
        self.prepared, self.device = prepared, device
        self.stream = self.images = None
        self._closers: list = []
        if device:
            self.stream = cuda.Stream()
            x = np.ascontiguousarray(prepared.images(), np.float32)
            self.images = cuda.DeviceBuffer(x.shape, np.float32)
            self.images.upload(x)
            self._closers += [self.images.close, self.stream.close]

    def __call__(self, engine: Engine, t: float) -> np.ndarray:
        p = self.prepared
        names = {s.name for s in engine.inputs}
        if not self.device:  # host timing is informative only: the first HOST_IMAGES inputs
            feeds = [{k: v for k, v in f.items() if k in names} for f in p.feeds(t)[:HOST_IMAGES]]
            return timing.stream_latency_host(lambda i: engine.run(feeds[i]), len(feeds))
        feed = {k: v for k, v in p.feed(t).items() if k in names}
        with timing.Launchers(stream=self.stream) as launchers:
            launch = launchers.add("engine", engine, feed)
            ptr = engine.input_ptr(p.analysis.image_input or "input")
            return timing.stream_latency(launch, self.stream, self.images, ptr)

    def close(self) -> None:
        for c in self._closers:
            c()


def _summary(ms: np.ndarray) -> dict:
    return {
        "mean_ms": float(ms.mean()),
        "p99_ms": float(np.percentile(ms, 99)),
        "median_ms": float(np.median(ms)),
    }


@pytest.mark.serial
@pytest.mark.exitgate_cases(precision=True, paths=("exit_default",))
def test_exit_value(
    case: Case, prepared: Prepared, workspace: Workspace, strategy_cache: dict, record
) -> None:
    __tracebackhide__ = True

    precision = case.precision or "fp32"
    engines, notes = _engines(workspace, case, precision, strategy_cache)
    if not any(lab != "twin" for lab in engines):
        pytest.skip(
            f"[{case.id}] no execution strategy runs here: "
            + "; ".join(f"{k}: {v}" for k, v in notes.items())
        )
    device = cuda.available() is None and all(e.supports_device for e in engines.values())
    a, y = prepared.analysis, prepared.data.y
    t0 = prepared.default_threshold
    ref = workspace.reference(case.model, t0)
    assert ref.score is not None and a.exit_when is not None
    exit_p = workspace.reference(case.model, prepared.threshold_for("exit_always"), "exit")
    deep_p = workspace.reference(case.model, prepared.threshold_for("exit_never"), "deep")
    thresholds = _sweep(prepared, ref.score, SWEEP["device" if device else "host"])
    timer = _Timer(prepared, device)
    try:
        lat = {
            lab: {t: timer(e, t) for t in thresholds} for lab, e in engines.items() if lab != "twin"
        }
        twin_ms = timer(engines["twin"], t0) if "twin" in engines else None
    finally:
        timer.close()

    # the trade-off: one point per threshold (exit rate and accuracy from the fp32 reference)
    rates, accs = [], []
    for t in thresholds:
        ex = exits(ref.score, a.exit_when, t)
        rates.append(float(ex.mean()))
        pred = np.where(ex, exit_p.probs.argmax(1), deep_p.probs.argmax(1))
        accs.append(float((pred == y).mean()) if (y >= 0).all() else None)
    tradeoff = {
        "criterion": a.describe(),
        "thresholds": [t if math.isfinite(t) else str(t) for t in thresholds],
        "exit_rate": rates,
        "accuracy": accs,
        "latency_ms": {lab: [float(lat[lab][t].mean()) for t in thresholds] for lab in lat},
        "timing": "gpu" if device else "host",
    }
    if twin_ms is not None:
        deep_acc = float((deep_p.probs.argmax(1) == y).mean()) if (y >= 0).all() else None
        tradeoff["twin"] = {"latency_ms": float(twin_ms.mean()), "accuracy": deep_acc}
    record("tradeoff", tradeoff)

    # the stream at the model's own threshold
    stream: dict = {
        "threshold": t0,
        "criterion": a.describe(),
        "n": len(y),
        "timing": tradeoff["timing"],
        "unavailable": notes,
        "strategies": {},
    }
    if twin_ms is not None:
        stream["twin"] = _summary(twin_ms)
    claims = []
    t_exit, t_deep = prepared.threshold_for("exit_always"), prepared.threshold_for("exit_never")
    for lab, per_t in lat.items():
        row = _summary(per_t[t0])
        got = strategy_run(workspace, case.model, precision, lab, t0, strategy_cache)
        row["exit_rate"] = float((np.round(got.flag) == 0).mean())
        if twin_ms is not None:
            ratio, lo, hi = speedup_interval(twin_ms, per_t[t0])
            r = row["exit_rate"]
            promised = twin_ms.mean() / (r * per_t[t_exit].mean() + (1 - r) * per_t[t_deep].mean())
            row.update(speedup=ratio, speedup_low=lo, speedup_high=hi, promised=float(promised))
            if device and lab != "fused" and promised >= CLAIM:
                claims.append((lab, row))
        stream["strategies"][lab] = row
    record("stream", stream)
    for lab, row in claims:
        if row["speedup_low"] <= 1.0:
            fail(
                case,
                f"{lab} promises {row['promised']:.2f}x over the no-exit twin at exit rate "
                f"{row['exit_rate']:.0%} (from its own exit/deep latencies) but realises "
                f"{row['speedup']:.2f}x [{row['speedup_low']:.2f}, {row['speedup_high']:.2f}] "
                f"over the stream of {len(y)} inputs: mean {row['mean_ms']:.3f} ms vs twin "
                f"{stream['twin']['mean_ms']:.3f} ms. Something per input (input loading, "
                "the decision, graph launch) eats the exit's saving.",
            )
