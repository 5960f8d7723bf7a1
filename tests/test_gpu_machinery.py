"""Self-tests of the GPU machinery: events vs host clock, graph capture, capturability verdicts,
conditional-node early exits and interleaved timing.

PyTorch on CUDA is the workload (no TensorRT needed): torch ops run on our cuda-python stream
through ``torch.cuda.ExternalStream``, reading and writing static tensors, like an engine's static
bindings. Measured numbers are printed as ``MEASURE name=value`` lines (run with ``-s``) and
recorded with ``record_property``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from fixtures.backends.base import BackendUnavailable
from fixtures.backends.split import FEATS, StrategyEngine
from fixtures.backends.torch.halves import torch_halves
from fixtures.gpu import capturability, cond_graph, cuda
from fixtures.measure import stats, timing
from models.zoo import ZOO
from tests.gpu_harness_table import measure_twin

pytestmark = pytest.mark.gpu

SLEEP_CYCLES = 2_000_000  # torch.cuda._sleep spins this many SM clock cycles (~1 ms at ~2 GHz)


@pytest.fixture(scope="module")
def torch():
    """PyTorch with CUDA, or a skip that names what is missing."""
    reason = cuda.available()
    if reason:
        pytest.skip(f"needs a usable NVIDIA GPU: {reason}")
    try:
        import torch
    except ImportError:
        pytest.skip(
            "the GPU self-tests use PyTorch as the workload: pip install torch (CUDA build)"
        )
    if not torch.cuda.is_available():
        pytest.skip(
            f"PyTorch {torch.__version__} has no CUDA here (a CPU build?): install a CUDA build, "
            "e.g. pip install torch --index-url https://download.pytorch.org/whl/cu130"
        )
    torch.manual_seed(0)
    return torch


@pytest.fixture(scope="module")
def stream(torch):
    s = cuda.Stream()
    yield s
    s.synchronize()
    s.close()


@pytest.fixture
def measure(record_property):
    def emit(name: str, value: float) -> None:
        record_property(name, value)
        print(f"MEASURE {name}={value:.6g}")

    return emit


_EXTERNAL: dict[int, object] = {}


@contextlib.contextmanager
def on(torch, handle: int):
    """Run torch ops on the cuda-python stream ``handle``, without autograd."""
    ext = _EXTERNAL.get(handle)
    if ext is None:
        ext = _EXTERNAL[handle] = torch.cuda.ExternalStream(handle)
    with torch.cuda.stream(ext), torch.no_grad():
        yield


class TorchEngine:
    """The Engine device contract over a torch function with static input/output tensors."""

    def __init__(self, torch, forward, inputs: dict[str, tuple], output_shape: tuple) -> None:
        self.torch, self.forward = torch, forward
        self.x = {k: torch.zeros(shape, device="cuda") for k, shape in inputs.items()}
        self.y = torch.zeros(output_shape, device="cuda")

    def load_inputs(self, feeds: dict[str, np.ndarray]) -> None:
        for name, value in feeds.items():
            self.x[name].copy_(self.torch.from_numpy(np.asarray(value, np.float32)))
        self.torch.cuda.synchronize()

    def enqueue(self, stream: int) -> None:
        with on(self.torch, stream):
            self.forward(self, stream)

    def read_outputs(self) -> dict[str, np.ndarray]:
        self.torch.cuda.synchronize()
        return {"output": self.y.cpu().numpy()}


def _convnet(torch):
    torch.manual_seed(0)
    nn = torch.nn
    trunk = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        nn.ReLU(),
    )
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    deep = nn.Sequential(
        nn.Conv2d(32, 64, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    return trunk.cuda().eval(), head.cuda().eval(), deep.cuda().eval()


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# (a) CUDA events vs the host clock


@pytest.mark.serial
def test_event_gpu_time_agrees_with_host_latency(torch, stream, measure):
    def sleep(cycles):
        def enqueue(h: int) -> None:
            with on(torch, h):
                torch.cuda._sleep(cycles)

        return enqueue

    one = timing.time_device(sleep(SLEEP_CYCLES), stream, warmup_ms=100, repeat_ms=300)
    two = timing.time_device(
        sleep(2 * SLEEP_CYCLES), stream, warmup_ms=50, repeat_ms=300, sync="spin"
    )
    for label, t in (("sleep1", one), ("sleep2_spin", two)):
        host = t.host_latency
        assert host is not None and host.n == t.n
        measure(f"{label}_gpu_compute_ms", t.gpu_compute.median)
        measure(f"{label}_host_latency_ms", host.median)
        measure(f"{label}_enqueue_ms", t.enqueue.median)
        measure(f"{label}_gpu_cv", t.gpu_compute.cv)
        # a ~1 ms kernel: the GPU's time lies inside the host's wait for it, and close to it
        gap = host.median - t.gpu_compute.median
        assert -0.01 * host.median < gap < 0.2 + 0.1 * host.median, (
            f"{label}: host latency {host.median:.3f} ms vs GPU compute {t.gpu_compute.median:.3f}"
            f" ms: gap {gap:.3f} ms outside [-1 %, 0.2 ms + 10 %]; event timing and the host "
            "clock disagree"
        )
        assert t.enqueue.median < 0.2 * t.gpu_compute.median, f"{label}: enqueue << a 1 ms kernel"
        assert not any("enqueue-bound" in w for w in t.warnings()), t.warnings()
    ratio = two.gpu_compute.median / one.gpu_compute.median
    measure("sleep_ratio_2x_cycles", ratio)
    assert 1.6 < ratio < 2.4, f"twice the cycles took {ratio:.2f}x the GPU time (expected ~2x)"


@pytest.mark.serial
def test_queued_gpu_time_excludes_the_host_launch(torch, stream, measure):
    """A launcher that spends 0.3 ms on the host before launching a 1 ms kernel: queued ahead
    (trtexec's loop) the GPU compute time is the kernel's; synchronised per launch, the old way,
    the host's 0.3 ms would fall inside the event pair."""
    import time as _time

    def enqueue(h: int) -> None:
        t_end = _time.perf_counter() + 3e-4
        while _time.perf_counter() < t_end:  # host work before the launch (Python, glue code)
            pass
        with on(torch, h):
            torch.cuda._sleep(SLEEP_CYCLES)

    def kernel_only(h: int) -> None:
        with on(torch, h):
            torch.cuda._sleep(SLEEP_CYCLES)

    slow_host = timing.time_device(enqueue, stream, warmup_ms=50, repeat_ms=300)
    plain = timing.time_device(kernel_only, stream, warmup_ms=50, repeat_ms=300)
    measure("slow_host_gpu_compute_ms", slow_host.gpu_compute.median)
    measure("plain_gpu_compute_ms", plain.gpu_compute.median)
    measure("slow_host_enqueue_ms", slow_host.enqueue.median)
    assert slow_host.enqueue.median > 0.3
    assert slow_host.gpu_compute.median == pytest.approx(plain.gpu_compute.median, rel=0.03), (
        "the host's 0.3 ms before each launch leaked into the GPU compute time: the loop does "
        "not keep work queued ahead of the GPU"
    )
    host = slow_host.host_latency
    assert host is not None and host.median > slow_host.gpu_compute.median + 0.25


@pytest.mark.serial
def test_tiny_kernel_is_flagged_enqueue_bound(torch, stream, measure):
    x = torch.zeros(16, device="cuda")

    def enqueue(h: int) -> None:
        with on(torch, h):
            x.add_(1.0)

    t = timing.time_device(enqueue, stream, warmup_ms=50, repeat_ms=200)
    measure("tiny_gpu_compute_ms", t.gpu_compute.median)
    measure("tiny_enqueue_ms", t.enqueue.median)
    measure("tiny_host_latency_ms", t.host_latency.median)
    assert any("enqueue-bound" in w for w in t.warnings()), (
        f"a 16-element add should be enqueue-bound: enqueue {t.enqueue.median:.4f} ms, GPU "
        f"{t.gpu_compute.median:.4f} ms, warnings {t.warnings()}"
    )


# --------------------------------------------------------------------------------------------------
# (b) capture of a plain network; (c) capture of eager early exits


def test_plain_convnet_captures_and_replays_match(torch, stream):
    trunk, _head, deep = _convnet(torch)

    def forward(eng, _h):
        eng.y.copy_(torch.softmax(deep(trunk(eng.x["input"])), 1))

    eng = TorchEngine(torch, forward, {"input": (1, 3, 32, 32)}, (1, 10))
    verdict = capturability.check_capturable(
        eng, {"a": {"input": _image(1)}, "b": {"input": _image(2)}}, stream
    )
    assert verdict.capturable, verdict.message
    assert verdict.replay_matches == {"a": True, "b": True}
    assert not verdict.notes, verdict.notes


def _exit_forward(torch, trunk, head, deep, host_flag=None):
    """An eager early exit; the decision is read on the host (a sync, or a stale host copy)."""

    def forward(eng, h):
        feats = trunk(eng.x["input"])
        p_exit = torch.softmax(head(feats), 1)
        if host_flag is None:  # what a PyTorch user writes: .item() synchronises
            go_deep = not p_exit.max().item() > eng.x["threshold"].item()
        else:  # TensorRT-If-like: async D2H of the decision, sync skipped while capturing
            eng.flag.copy_((p_exit.max() <= eng.x["threshold"]).float().reshape(1))
            cuda.memcpy_dtoh(host_flag, eng.flag.data_ptr(), stream=h)
            if not cuda.is_capturing(h):
                cuda.Stream.wrap(h).synchronize()
            go_deep = bool(host_flag[0] > 0.5)
        if go_deep:
            eng.y.copy_(
                torch.cat([torch.softmax(deep(feats), 1), torch.ones_like(p_exit[:, :1])], 1)
            )
        else:
            eng.y.copy_(torch.cat([p_exit, torch.zeros_like(p_exit[:, :1])], 1))

    return forward


def _exit_paths():
    img = _image(3)
    one = np.ones(1, np.float32)
    return {
        "exit_always": {"input": img, "threshold": 0 * one},
        "exit_never": {"input": img, "threshold": one},
    }


def test_eager_exit_with_host_sync_is_not_capturable(torch, stream):
    trunk, head, deep = _convnet(torch)
    eng = TorchEngine(
        torch,
        _exit_forward(torch, trunk, head, deep),
        {"input": (1, 3, 32, 32), "threshold": (1,)},
        (1, 11),
    )
    paths = _exit_paths()
    verdict = capturability.check_capturable(eng, paths, stream)
    print(f"MEASURE eager_exit_verdict={verdict.message!r}")
    assert not verdict.capturable
    assert not verdict.captured, "a host sync under capture must invalidate the capture"
    assert "cudaErrorStreamCapture" in verdict.message, verdict.message
    # trtexec's fallback: after a failed capture the engine still runs without graphs
    for path, want_flag in (("exit_always", 0.0), ("exit_never", 1.0)):
        eng.load_inputs(paths[path])
        eng.enqueue(stream.handle)
        stream.synchronize()
        assert eng.read_outputs()["output"][0, -1] == want_flag, path


def test_frozen_branch_is_caught_by_per_path_replay(torch, stream):
    trunk, head, deep = _convnet(torch)
    host_flag = np.zeros(1, np.float32)  # pageable: the D2H copy is recorded, not run, in capture
    eng = TorchEngine(
        torch,
        _exit_forward(torch, trunk, head, deep, host_flag),
        {"input": (1, 3, 32, 32), "threshold": (1,)},
        (1, 11),
    )
    eng.flag = torch.zeros(1, device="cuda")
    verdict = capturability.check_capturable(eng, _exit_paths(), stream)
    print(f"MEASURE frozen_branch_verdict={verdict.message!r}")
    assert verdict.captured, f"this engine should capture (with a frozen branch): {verdict.message}"
    assert not verdict.capturable
    assert verdict.replay_matches == {"exit_always": True, "exit_never": False}, verdict
    assert "exit_never" in verdict.message and "froze" in verdict.message, verdict.message


# --------------------------------------------------------------------------------------------------
# (d) conditional graph nodes: the exit decided on the GPU, inside one graph


class SplitModel:
    """Trunk (+ exit head + decision) and body with static buffers; exit flag 1.0 = go deep."""

    def __init__(self, torch, batch: int = 64, width: int = 1024, depth: int = 24) -> None:
        g = torch.Generator(device="cpu").manual_seed(0)

        def w(*shape):
            return (torch.randn(*shape, generator=g) / shape[0] ** 0.5).cuda()

        self.torch = torch
        self.w1, self.we = w(512, width), w(width, 10)
        self.wd, self.wo = [w(width, width) for _ in range(depth)], w(width, 10)
        self.x = torch.randn(batch, 512, generator=g).cuda()
        self.thr = torch.zeros(1, device="cuda")
        self.feats = torch.zeros(batch, width, device="cuda")
        self.exit_probs = torch.zeros(batch, 10, device="cuda")
        self.decision = torch.zeros(1, device="cuda")
        self.out = torch.zeros(batch, 10, device="cuda")

    def trunk(self, h: int) -> None:
        t = self.torch
        with on(t, h):
            self.feats.copy_(t.relu(self.x @ self.w1))
            p = t.softmax(self.feats @ self.we, 1)
            self.exit_probs.copy_(p)
            self.decision.copy_((p.max() <= self.thr).float().reshape(1))

    def body(self, h: int) -> None:
        t = self.torch
        with on(t, h):
            g = self.feats
            for w in self.wd:
                g = t.relu(g @ w)
            self.out.copy_(t.softmax(g @ self.wo, 1))

    def set(self, threshold: float, sentinel: float | None = None) -> None:
        self.thr.fill_(threshold)
        if sentinel is not None:
            self.out.fill_(sentinel)
        self.torch.cuda.synchronize()


@pytest.mark.serial
def test_split_graph_matches_eager_and_skips_the_body(torch, stream, measure):
    reason = cond_graph.conditional_support()
    if reason:
        pytest.skip(f"conditional graph nodes unavailable: {reason}")
    m = SplitModel(torch)
    sentinel = -7.0
    reference = {}
    for thr in (0.0, 1.0):  # threshold 0: always exit; 1: never exit
        m.set(thr, sentinel)
        m.trunk(stream.handle)
        stream.synchronize()
        go_deep = m.decision.item() > 0.5
        if go_deep:
            m.body(stream.handle)
        stream.synchronize()
        reference[thr] = (go_deep, m.exit_probs.cpu().numpy(), m.out.cpu().numpy())
    assert reference[0.0][0] is False and reference[1.0][0] is True

    sg = cond_graph.split_graph(m.trunk, m.decision.data_ptr(), m.body, stream)
    try:
        print(f"MEASURE condition_kernel={sg.kernel!r}")
        for thr, (go_deep, exit_ref, out_ref) in reference.items():
            m.set(thr, sentinel)
            sg.launch(stream)
            stream.synchronize()
            exit_probs, out = m.exit_probs.cpu().numpy(), m.out.cpu().numpy()
            assert np.array_equal(exit_probs, exit_ref), f"threshold {thr}: trunk output differs"
            assert m.decision.item() == float(go_deep)
            if go_deep:
                np.testing.assert_allclose(
                    out,
                    out_ref,
                    rtol=1e-5,
                    atol=1e-6,
                    err_msg="deep path: body output differs from eager",
                )
                measure("split_graph_deep_max_abs_diff", float(np.abs(out - out_ref).max()))
            else:
                assert (out == sentinel).all(), "exit path: the body ran (output overwritten)"

        sh = cond_graph.split_host(m.trunk, m.decision.data_ptr(), m.body, stream)
        try:
            results = {}
            for thr, label in ((0.0, "exit"), (1.0, "deep")):
                m.set(thr)
                assert sh.launch(stream) is (thr == 1.0)
                stream.synchronize()

                def eager(h: int) -> None:
                    m.trunk(h)
                    with on(torch, h):  # the eager host decision: .item() syncs this stream
                        go_deep = m.decision.item() > 0.5
                    if go_deep:
                        m.body(h)

                for name, fn in (
                    ("split_graph", sg.launch),
                    ("split_host", sh.launch),
                    ("eager", eager),
                ):
                    t = timing.time_device(fn, stream, warmup_ms=50, repeat_ms=200)
                    results[(name, label)] = t
                    measure(f"{name}_{label}_gpu_compute_ms", t.gpu_compute.median)
                    measure(f"{name}_{label}_host_latency_ms", t.host_latency.median)
                    measure(f"{name}_{label}_enqueue_ms", t.enqueue.median)
        finally:
            sh.close()
    finally:
        sg.close()
    exit_ms = results[("split_graph", "exit")].gpu_compute.median
    deep_ms = results[("split_graph", "deep")].gpu_compute.median
    assert exit_ms < 0.5 * deep_ms, (
        f"split_graph exit {exit_ms:.4f} ms vs deep {deep_ms:.4f} ms: the untaken body seems to run"
    )


@pytest.mark.serial
def test_split_graph_condition_kernel_takes_the_decision(torch, stream):
    """``decide=DeviceDecision``: a trunk that writes no decision; the condition kernel takes it from
    the exit probabilities (max > threshold exits; NaN goes deep) and writes the exit flag."""
    reason = cond_graph.conditional_support()
    if reason:
        pytest.skip(f"conditional graph nodes unavailable: {reason}")
    m = SplitModel(torch)
    reference = {}
    for thr in (0.0, 1.0):  # the eager model, deciding on the host
        m.set(thr, -7.0)
        m.trunk(stream.handle)
        m.body(stream.handle)
        stream.synchronize()
        reference[thr] = (m.exit_probs.cpu().numpy(), m.out.cpu().numpy())

    def trunk_without_decision(h: int) -> None:
        t = m.torch
        with on(t, h):
            m.feats.copy_(t.relu(m.x @ m.w1))
            m.exit_probs.copy_(t.softmax(m.feats @ m.we, 1))

    # SplitModel decides on the max over the whole batch: all its probabilities are the input
    decide = cond_graph.DeviceDecision(
        m.exit_probs.data_ptr(), m.exit_probs.numel(), m.thr.data_ptr()
    )
    sg = cond_graph.split_graph(
        trunk_without_decision, m.decision.data_ptr(), m.body, stream, decide=decide
    )
    try:
        for thr, go_deep in ((0.0, False), (1.0, True)):
            m.set(thr, -7.0)
            m.decision.fill_(0.25)  # neither flag: the kernel must write it
            torch.cuda.synchronize()
            sg.launch(stream)
            stream.synchronize()
            assert m.decision.item() == float(go_deep), f"threshold {thr}: exit flag not written"
            exit_ref, out_ref = reference[thr]
            assert np.array_equal(m.exit_probs.cpu().numpy(), exit_ref)
            if go_deep:
                np.testing.assert_allclose(m.out.cpu().numpy(), out_ref, rtol=1e-5, atol=1e-6)
            else:
                assert (m.out.cpu().numpy() == -7.0).all(), "exit path: the body ran"
        # NaN probabilities go deep, as the fused model's `max > t` is false for NaN
        m.set(0.0, -7.0)
        m.x.fill_(float("nan"))
        torch.cuda.synchronize()
        sg.launch(stream)
        stream.synchronize()
        assert m.decision.item() == 1.0, "NaN probabilities must go deep"
        assert not (m.out.cpu().numpy() == -7.0).all(), "NaN: the body did not run"
    finally:
        sg.close()
    with pytest.raises(ValueError, match="n must be >= 1"):
        cond_graph.DeviceDecision(m.exit_probs.data_ptr(), 0, m.thr.data_ptr())


@pytest.mark.serial
def test_torch_split_graph_decides_in_the_condition_kernel(torch):
    """The torch split_graph hands the decision to the condition kernel (the trunk's capture has no
    amax / > / where); split_host keeps the trunk's decision. Both give the same flag and
    probabilities at every exit path: exits, never, NaN threshold, and the strict ``max > t`` at
    ``t`` = the max itself (deep) and just below it (exit)."""
    reason = cond_graph.conditional_support()
    if reason:
        pytest.skip(f"conditional graph nodes unavailable: {reason}")

    img = _image(3)
    engines = {
        s: StrategyEngine(*torch_halves("resnet8", "concat", "fp32"), s, [FEATS])
        for s in ("split_host", "split_graph")
    }
    try:

        def run(strategy: str, t: float) -> np.ndarray:
            return engines[strategy].run({"input": img, "threshold": np.array([t], np.float32)})[
                "output"
            ]

        fixed = ((0.0, 0.0), (1.0, 1.0), (float("nan"), 1.0))
        outs: dict[str, list[np.ndarray]] = {}
        for s in engines:
            top = np.float32(run(s, 0.0)[0, :-1].max())  # this engine's exit max probability
            cases = (*fixed, (top, 1.0), (np.nextafter(top, np.float32(0)), 0.0))
            outs[s] = []
            for t, flag in cases:
                out = run(s, t)
                assert out[0, -1] == flag, f"{s} at threshold {t!r}: flag {out[0, -1]}, not {flag}"
                outs[s].append(out)
        for (t, _), host, dev in zip(fixed, outs["split_host"], outs["split_graph"], strict=False):
            np.testing.assert_allclose(dev, host, rtol=1e-5, atol=1e-6, err_msg=f"threshold {t!r}")
        assert engines["split_graph"].trunk.device_decision, "split_graph: the trunk still decides"
        assert not engines["split_host"].trunk.device_decision, "split_host lost its decision"
    finally:
        for e in engines.values():
            e.close()


def test_condition_kernel_loads_from_cubin_and_ptx(torch):
    reason = cond_graph.conditional_support()
    if reason:
        pytest.skip(f"conditional graph nodes unavailable: {reason}")
    device = torch.cuda.current_device()
    for form, want in (("cubin", "cubin"), ("ptx", "PTX")):
        _, func, how = cond_graph._kernel(device, (form,))
        print(f"MEASURE condition_kernel_{form}={how!r}")
        assert func is not None and how.startswith(want), how


# --------------------------------------------------------------------------------------------------
# (e) interleaved timing feeds the ordering gate


@pytest.mark.serial
def test_interleaved_medians_order_known_workloads(torch, stream, measure):
    def sleeper(cycles):
        ext = torch.cuda.ExternalStream(stream.handle)

        def launch() -> None:
            with torch.cuda.stream(ext):
                torch.cuda._sleep(cycles)

        return launch

    labels, med = timing.interleaved_medians(
        {"fast": sleeper(100_000), "slow": sleeper(300_000)},
        stream,
        rounds=12,
        k=20,
        seed=1,
        warmup_ms=100,
    )
    assert labels == ["fast", "slow"] and med.shape == (12, 2)
    (result,) = stats.ordering_gate(med, labels, [("slow", "fast")])
    measure("interleaved_fast_ms", float(np.median(med[:, 0])))
    measure("interleaved_slow_ms", float(np.median(med[:, 1])))
    measure("interleaved_ratio", result.ratio)
    assert result.verdict is stats.Verdict.HOLDS, result.describe()
    assert 2.0 < result.ratio < 4.0, result.describe()


# --------------------------------------------------------------------------------------------------
# (f) the harness's GPU compute time is the GPU's own time (issue 14; README table:
#     python -m tests.gpu_harness_table)

_TWIN_TIMINGS: dict = {}


@pytest.fixture
def twin_timing(torch, stream, request):
    """The measurements of tests/gpu_harness_table.py for one zoo twin and precision (cached:
    the two tests below share them)."""
    key = request.node.callspec.params["twin"], request.node.callspec.params["precision"]
    if key not in _TWIN_TIMINGS:
        try:
            _TWIN_TIMINGS[key] = measure_twin(torch, *key, stream)
        except (BackendUnavailable, OSError) as exc:
            pytest.skip(
                f"the zoo twin {key[0]} cannot run on the torch backend: {exc} "
                "(zoo weights: python -m models.train NAME)"
            )
    return _TWIN_TIMINGS[key]


TWIN_CASES = [(t, p) for t in ZOO for p in ("fp32", "fp16")]


@pytest.mark.serial
@pytest.mark.parametrize(("twin", "precision"), TWIN_CASES)
def test_harness_gpu_time_matches_back_to_back(twin_timing, measure, twin, precision):
    r = twin_timing
    for name in ("harness_ms", "back_to_back_ms", "synced_ms", "enqueue_ms", "host_latency_ms"):
        measure(f"{twin}_{precision}_{name}", getattr(r, name))
    assert r.launch == "graph", f"{twin} {precision}: the twin did not capture: {r.launch}"
    assert abs(r.ratio_b2b - 1) <= 0.03, (
        f"{twin} {precision}: harness GPU compute median {r.harness_ms:.4f} ms vs back-to-back "
        f"{r.back_to_back_ms:.4f} ms (ratio {r.ratio_b2b:.3f}) is beyond 3 %: the harness is not "
        f"measuring the GPU's own time (enqueue median {r.enqueue_ms:.4f} ms; if the host cannot "
        "keep up with the GPU the numbers are enqueue-bound, see timing.DEFAULT_DEPTH)"
    )
    assert r.synced_ms >= 0.99 * r.harness_ms  # the previous method includes the host's launch


@pytest.mark.serial
@pytest.mark.parametrize(("twin", "precision"), TWIN_CASES)
def test_harness_gpu_time_is_not_below_the_cupti_floor(twin_timing, measure, twin, precision):
    r = twin_timing
    if r.cupti_error:
        pytest.skip(f"{twin} {precision}: {r.cupti_error}")
    measure(f"{twin}_{precision}_cupti_busy_ms", r.cupti_busy_ms)
    measure(f"{twin}_{precision}_kernels_per_replay", r.kernels)
    assert r.ratio_floor >= 0.97, (
        f"{twin} {precision}: harness {r.harness_ms:.4f} ms is more than 3 % below the GPU's "
        f"busy time recorded by CUPTI ({r.cupti_busy_ms:.4f} ms per replay): events missed work"
    )
    assert r.back_to_back_ms >= 0.97 * r.cupti_busy_ms
    assert r.ratio_floor < 1.3, (
        f"{twin} {precision}: harness {r.harness_ms:.4f} ms is {r.ratio_floor:.2f}x the CUPTI busy "
        "time: gaps between kernels that large mean the GPU waited for the host"
    )
