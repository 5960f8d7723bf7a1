"""pytest-benchmark baselines per model x precision x exit path, with the samples a comparison needs.

pytest-benchmark times one synchronised inference with the host clock (what a user feels: host
latency); that is what its own stats, ``pytest-benchmark compare`` and
``--benchmark-compare-fail=median:10%`` see. Beside it, every saved run carries in
``extra_info["exitgate_blocks"]`` the block medians ``python -m reports compare`` needs to compare
two runs (e.g. two TensorRT versions) with real statistics:

- ``gpu_compute_ms`` (device engines): trtexec-style GPU compute time (``fixtures.measure.timing``:
  work queued ahead of the GPU, an event pair per inference), in ``BLOCKS`` blocks of ``K``
  consecutive inferences, the median of each;
- ``host_latency_ms``: the host latency of each call pytest-benchmark's ``pedantic`` makes, in call order,
  in blocks of ``HOST_K`` (timed by a wrapper around the target: public API only).

``--benchmark-min-rounds=N`` (pytest-benchmark's option) raises the number of blocks to N: how a
comparison that came out *unknown* is escalated. ``machine_info`` is extended with the device
profile, backend and versions, and runs are stored per device profile under
``reports/benchmarks/<profile>/``. Never under pytest-xdist (pytest-benchmark disables itself
there, and timing must not share the GPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from fixtures.backends.base import BackendUnavailable
from fixtures.cases import Case
from fixtures.measure import timing
from fixtures.measure.timing import block_medians_in_order
from fixtures.run_facts import BLOCKS_KEY
from fixtures.workspace import Prepared, Workspace

pytestmark = [
    pytest.mark.serial,
    pytest.mark.exitgate_family("benchmark", order=70, facts={"latency": "Latency"}),
]

BLOCKS, K = 100, 20  # GPU compute time: 100 blocks of 20 queued inferences (the comparison's unit)
HOST_K = 5  # pytest-benchmark rounds per host-latency block
DEVICE_HOST_BLOCKS = 40  # host-latency blocks when the GPU compute time is the primary metric
HOST_BLOCKS = 20  # host-latency blocks of a host backend (a CPU: milliseconds per inference)


def _blocks(config: pytest.Config, default: int = BLOCKS) -> int:
    """``default`` blocks, or more with ``--benchmark-min-rounds`` (escalating an unknown
    comparison)."""
    return max(default, int(config.getoption("benchmark_min_rounds", 0) or 0))


class _Rounds:
    """What pytest-benchmark times (through its public ``pedantic``), each call's host latency kept
    in call order beside it: the host blocks come from these, not from the plugin's internals. The
    first ``warmup`` calls (pedantic's warm-up rounds) are not kept."""

    def __init__(self, fn: Callable[[], object], warmup: int) -> None:
        self.fn, self.warmup, self.ms = fn, warmup, []

    def __call__(self) -> None:
        t0 = time.perf_counter_ns()
        self.fn()
        dt = (time.perf_counter_ns() - t0) * 1e-6
        if self.warmup:
            self.warmup -= 1
        else:
            self.ms.append(dt)


def _host_blocks(rounds: _Rounds, blocks: dict) -> None:
    if len(rounds.ms) < HOST_K:  # pytest-benchmark disabled (xdist, --benchmark-disable): one call
        return
    blocks["host_k"] = HOST_K
    blocks["host_latency_ms"] = block_medians_in_order(np.asarray(rounds.ms), HOST_K).tolist()


@pytest.mark.exitgate_cases(precision=True, paths=("exit_always", "exit_never", "exit_default"))
def test_benchmark(
    case: Case, prepared: Prepared, workspace: Workspace, benchmark, record, pytestconfig
) -> None:
    try:
        engine = workspace.engine(case.model, case.precision or "fp32")
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")
    feeds = prepared.feed(prepared.threshold_for(case.path))
    n_blocks = _blocks(pytestconfig)
    benchmark.extra_info["case"] = case.id
    benchmark.extra_info["backend"] = workspace.settings.backend
    benchmark.extra_info.update({k: str(v) for k, v in engine.info.items()})
    blocks: dict = {}
    benchmark.extra_info[BLOCKS_KEY] = blocks
    if engine.supports_device:
        with timing.Launchers() as launchers:
            launch = launchers.add(case.id, engine, feeds)
            how, stream = launchers.how[case.id], launchers.stream
            n = n_blocks * K
            t = timing.time_device(
                lambda _h: launch(),
                stream,
                warmup_ms=200,
                repeat_ms=0,
                min_iters=n,
                max_iters=n,
                host_iters=0,
            )
            blocks["k"] = K
            blocks["gpu_compute_ms"] = timing.block_medians_in_order(t.gpu_compute_ms, K).tolist()
            benchmark.extra_info.update(
                {"launch": how, "gpu_timing": t.as_dict(), "warnings": t.warnings()}
            )
            g = t.gpu_compute
            record(
                "latency",
                {
                    "median_ms": g.median,
                    "p05_ms": g.p05,
                    "p95_ms": g.p95,
                    "metric": "gpu_compute",
                    "launch": how,
                },
            )

            def one() -> None:
                launch()
                stream.synchronize()

            rounds = _Rounds(one, warmup=20)
            benchmark.pedantic(
                rounds, rounds=DEVICE_HOST_BLOCKS * HOST_K, iterations=1, warmup_rounds=20
            )
    else:
        benchmark.extra_info["launch"] = "host"
        rounds = _Rounds(lambda: engine.run(feeds), warmup=5)
        benchmark.pedantic(
            rounds,
            rounds=_blocks(pytestconfig, HOST_BLOCKS) * HOST_K,
            iterations=1,
            warmup_rounds=5,
        )
        if rounds.ms:
            ms = np.asarray(rounds.ms)
            record(
                "latency",
                {
                    "median_ms": float(np.median(ms)),
                    "p05_ms": float(np.percentile(ms, 5)),
                    "p95_ms": float(np.percentile(ms, 95)),
                    "metric": "host",
                },
            )
    _host_blocks(rounds, blocks)
