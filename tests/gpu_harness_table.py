"""Is the harness's GPU compute time the GPU's own time? The README's table, on a CUDA GPU.

    python -m tests.gpu_harness_table [--twins resnet8,resnet56,alexnet] [--precisions fp32,fp16]

For each zoo no-exit twin (torch backend, channels_last, replayed from a CUDA graph, the way the
suites time it through ``fixtures.measure.timing.device_launcher``) it prints:

- **harness**: median GPU compute time of ``fixtures.measure.timing.time_device`` (trtexec's loop: work
  queued ahead of the GPU, an event pair per inference);
- **back-to-back**: CUDA events around N graph replays launched back to back, divided by N (the
  median of several such runs): an independent figure of the GPU's time per inference;
- **CUPTI busy**: the GPU activity (kernels, memcpy, memset) per replay recorded by
  ``torch.profiler`` (CUPTI), as the union of their intervals: the floor, without the gaps
  between kernels;
- **synced**: what the harness measured before issue 14, an event pair around one launch,
  synchronised every iteration (the host's launch falls inside the interval);
- enqueue and host latency medians, and kernels per replay.

``tests/test_gpu_machinery.py::test_harness_gpu_time_matches_back_to_back`` asserts the same
measurements (harness within 3 % of back-to-back, not below the CUPTI floor).
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from dataclasses import dataclass

import numpy as np

from fixtures.backends.torch import engine as torch_backend
from fixtures.gpu import cuda
from fixtures.measure import timing

TWINS = ("resnet8", "resnet56", "alexnet")
PRECISIONS = ("fp32", "fp16")
BACK_TO_BACK = 500  # replays per back-to-back run
BACK_TO_BACK_RUNS = 5
PROFILED = 100  # replays under the profiler


@dataclass(frozen=True)
class TwinTiming:
    twin: str
    precision: str
    launch: str  # "graph", or why the capture failed
    harness_ms: float  # time_device: median GPU compute time (queued)
    back_to_back_ms: float
    cupti_busy_ms: float  # union of GPU activity per replay
    synced_ms: float  # the previous method: events around one synchronised launch
    enqueue_ms: float
    host_latency_ms: float
    kernels: float  # GPU activities per replay
    harness_cv: float
    cupti_error: str | None = None  # why there is no CUPTI floor (cupti_busy_ms is then nan)

    @property
    def ratio_b2b(self) -> float:
        return self.harness_ms / self.back_to_back_ms

    @property
    def ratio_floor(self) -> float:
        return self.harness_ms / self.cupti_busy_ms


def twin_launcher(twin: str, precision: str, stream: cuda.Stream):
    """``(launch, how, close)`` for the zoo twin ``twin`` on the torch backend (CUDA), as the
    timing suites build it. Raises BackendUnavailable (or OSError: weights missing)."""
    engine = torch_backend.build(None, precision, zoo_model=twin, variant="plain", device="cuda")
    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    return timing.device_launcher(engine, {"input": image}, stream)


def back_to_back_ms(
    launch, stream: cuda.Stream, n: int = BACK_TO_BACK, runs: int = BACK_TO_BACK_RUNS
) -> float:
    """Median over ``runs`` of: events around ``n`` launches queued back to back, / n. A few
    launches are queued first, so the start event is reached with the GPU already busy."""
    start, end = cuda.Event(), cuda.Event()
    per = []
    try:
        for _ in range(runs):
            for _ in range(10):
                launch()
            start.record(stream)
            for _ in range(n):
                launch()
            end.record(stream)
            end.synchronize()
            per.append(cuda.elapsed_ms(start, end) / n)
    finally:
        stream.synchronize()
        start.close()
        end.close()
    return statistics.median(per)


def synced_ms(launch, stream: cuda.Stream, n: int = 500) -> float:
    """The previous harness: an event pair around one launch, synchronised every iteration."""
    start, end = cuda.Event(), cuda.Event()
    out = []
    try:
        for _ in range(n):
            start.record(stream)
            launch()
            end.record(stream)
            end.synchronize()
            out.append(cuda.elapsed_ms(start, end))
    finally:
        start.close()
        end.close()
    return float(np.median(out))


def profiled(launch, stream: cuda.Stream, n: int, warm: int = 5):
    """torch.profiler (CUPTI) over ``n`` replays of ``launch`` after ``warm`` untimed ones: the
    finished profiler, for its ``events()`` or ``export_chrome_trace``. Profile after timing, never
    before: a profiler pass leaves the GPU slower for a while (README, What an exit is worth)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warm):
        launch()
    stream.synchronize()
    with warnings.catch_warnings():  # torch 2.11 warns on entry that events are cleared per cycle
        warnings.filterwarnings("ignore", ".*Profiler clears events", UserWarning)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                launch()
            stream.synchronize()
    return prof


def cupti_busy_ms(torch, launch, stream: cuda.Stream, n: int = PROFILED) -> tuple[float, float]:
    """``(busy ms per replay, activities per replay)`` from torch.profiler's CUPTI records: the
    union of the device intervals of kernels, memcpy and memset over ``n`` replays, / n."""
    from torch.autograd import DeviceType

    prof = profiled(launch, stream, n, warm=10)
    spans = sorted(
        (e.time_range.start, e.time_range.end)
        for e in prof.events()
        if e.device_type == DeviceType.CUDA
        and not getattr(e, "is_user_annotation", False)
        and e.time_range.end > e.time_range.start
    )
    if not spans:
        raise RuntimeError(
            "torch.profiler recorded no GPU activity: CUPTI is unavailable (check that the "
            "CUDA build of torch can load libcupti, e.g. pip install nvidia-cuda-cupti-cu13)"
        )
    busy, cur_start, cur_end = 0.0, spans[0][0], spans[0][1]
    for s, e in spans[1:]:
        if s > cur_end:
            busy += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    busy += cur_end - cur_start
    return busy / 1e3 / n, len(spans) / n


def measure_twin(torch, twin: str, precision: str, stream: cuda.Stream) -> TwinTiming:
    launch, how, close = twin_launcher(twin, precision, stream)
    try:
        t = timing.time_device(
            lambda _h: launch(), stream, warmup_ms=500, repeat_ms=1000, host_iters=300
        )
        b2b = back_to_back_ms(launch, stream)
        cupti_error = None
        try:
            busy, kernels = cupti_busy_ms(torch, launch, stream)
        except RuntimeError as exc:  # no CUPTI in this torch build / environment
            busy, kernels, cupti_error = float("nan"), float("nan"), str(exc)
        old = synced_ms(launch, stream)
    finally:
        stream.synchronize()
        close()
    host = t.host_latency
    return TwinTiming(
        twin,
        precision,
        how,
        t.gpu_compute.median,
        b2b,
        busy,
        old,
        t.enqueue.median,
        host.median if host else float("nan"),
        kernels,
        t.gpu_compute.cv,
        cupti_error,
    )


def table(rows: list[TwinTiming]) -> str:
    lines = [
        "| twin | precision | harness GPU compute (median) | back-to-back | CUPTI busy (floor) | "
        "harness / back-to-back | harness / floor | previous (synced) | enqueue | host latency | "
        "kernels per replay |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.twin} | {r.precision} | {r.harness_ms:.3f} ms | {r.back_to_back_ms:.3f} | "
            f"{r.cupti_busy_ms:.3f} | {r.ratio_b2b:.3f} | {r.ratio_floor:.3f} | {r.synced_ms:.3f} | "
            f"{r.enqueue_ms:.3f} | {r.host_latency_ms:.3f} | {r.kernels:.0f} |"
        )
    return "\n".join(lines)


def require_gpu(ap: argparse.ArgumentParser) -> None:
    """Exit with status 2 and the reason (no driver, no device, cuda-python missing) before any
    GPU work, when this machine has no usable NVIDIA GPU: every ``tests.gpu_*`` tool calls it."""
    reason = cuda.available()
    if reason:
        ap.exit(2, f"{ap.prog}: needs a usable NVIDIA GPU: {reason}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.gpu_harness_table", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--twins", default=",".join(TWINS))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    args = ap.parse_args(argv)
    require_gpu(ap)
    import torch

    if not torch.cuda.is_available():
        print(f"PyTorch {torch.__version__} has no CUDA: install a CUDA build of torch")
        return 2
    name = cuda.device_properties()["name"]
    stream = cuda.Stream()
    rows = []
    try:
        for twin in args.twins.split(","):
            for precision in args.precisions.split(","):
                rows.append(measure_twin(torch, twin, precision, stream))
                print(f"measured {twin} {precision}", flush=True)
    finally:
        stream.close()
    print(
        f"\n{name}, torch {torch.__version__}, cuda-bindings {cuda.bindings().version}, "
        f"queue depth {timing.DEFAULT_DEPTH}\n"
    )
    print(table(rows))
    for r in rows:
        if r.cupti_error:
            print(f"{r.twin} {r.precision}: no CUPTI floor: {r.cupti_error}")
    bad = [r for r in rows if abs(r.ratio_b2b - 1) > 0.03 or r.ratio_floor < 0.97]
    if bad:
        print(f"\n{len(bad)} row(s) outside 3 % of back-to-back or below the CUPTI floor")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
