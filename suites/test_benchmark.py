"""pytest-benchmark baselines per model x precision x exit path.

pytest-benchmark times one synchronised inference with the host clock (what a user feels: host
latency); the GPU compute and enqueue times from CUDA events (trtexec's metrics) go into
``extra_info``. ``machine_info`` is extended with the device profile, backend and versions, and runs
are stored per device profile under ``reports/benchmarks/<profile>/``, so
``pytest-benchmark compare`` lines up runs of two TensorRT versions by test id and
``--benchmark-compare-fail=median:10%`` gates a night. Never under pytest-xdist (pytest-benchmark
disables itself there, and timing must not share the GPU).
"""

from __future__ import annotations

import pytest

from fixtures.backends.base import BackendUnavailable
from fixtures.cases import Case
from fixtures.workspace import Prepared, Workspace

pytestmark = pytest.mark.serial


@pytest.mark.exitgate_cases(precision=True, paths=("exit_always", "exit_never", "exit_default"))
def test_benchmark(case: Case, prepared: Prepared, workspace: Workspace, benchmark, record) -> None:
    try:
        engine = workspace.engine(case.model, case.precision or "fp32")
    except BackendUnavailable as exc:
        pytest.skip(f"[{case.id}] {exc}")
    feeds = prepared.feed(prepared.threshold_for(case.path))
    benchmark.extra_info["case"] = case.id
    benchmark.extra_info["backend"] = workspace.settings.backend
    benchmark.extra_info.update({k: str(v) for k, v in engine.info.items()})
    if engine.supports_device:
        from fixtures import cuda, timing

        stream = cuda.Stream()
        launch, how, close = timing.device_launcher(engine, feeds, stream)
        try:
            t = timing.time_device(lambda _h: launch(), stream, warmup_ms=200, repeat_ms=500)
            benchmark.extra_info.update({"launch": how, "gpu_timing": t.as_dict(),
                                         "warnings": t.warnings()})  # fmt: skip
            record("latency", {"median_ms": t.gpu.median, "p05_ms": t.gpu.p05,
                               "p95_ms": t.gpu.p95, "metric": "gpu", "launch": how})  # fmt: skip

            def one() -> None:
                launch()
                stream.synchronize()

            benchmark.pedantic(one, rounds=200, iterations=1, warmup_rounds=20)
        finally:
            stream.synchronize()
            close()
            stream.close()
    else:
        benchmark.extra_info["launch"] = "host"
        benchmark.pedantic(lambda: engine.run(feeds), rounds=50, iterations=1, warmup_rounds=5)
        if benchmark.stats is not None:  # None when pytest-benchmark is disabled (e.g. xdist)
            st = benchmark.stats.stats
            record("latency", {"median_ms": st.median * 1e3, "p05_ms": st.min * 1e3,
                               "p95_ms": st.max * 1e3, "metric": "host"})  # fmt: skip
