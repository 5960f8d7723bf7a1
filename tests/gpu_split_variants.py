"""Why split_graph's deep branch costs more than the twin's: capture variants back to back (CUDA GPU).

    python -m tests.gpu_split_variants [--cases alexnet:fp32,alexnet:fp16,resnet8:fp32]
                                       [--trace-dir DIR]

Issue 15's budget asks split_graph at exit_never to cost no more than the no-exit twin + the exit
head's own kernels + the decision and conditional node (+ 5 us); ``tests.gpu_split_cost`` measures
that. This script separates the candidate causes of the excess by timing the same torch halves
(``fixtures.backends.torch.halves.torch_halves``) replayed from differently built CUDA graphs, back to back
(events around N replays / N, median of runs; ``tests.gpu_harness_table.back_to_back_ms``):

- ``twin``: the no-exit twin (``torch.cuda.graph``), the reference;
- ``never`` / ``always``: split_graph as the torch strategy builds it (``StrategyEngine``: its
  condition kernel takes the decision, ``cond_graph.DeviceDecision``);
- ``trunkhalf``: the trunk half alone (trunk + exit head + decision), raw stream capture;
- deep half alone, captured four ways: ``deep_raw`` (raw capture on the main stream), ``deep_raw2``
  (raw capture on a fresh stream), ``deep_ctg`` (cudaStreamBeginCaptureToGraph into an empty
  graph on a fresh stream: the body's method, unconditional), ``deep_torch`` (``torch.cuda.graph``);
- ``if_only``: the condition kernel (decision fixed at 1.0) + an IF node around the deep half,
  no trunk; ``child_only``: the same with an unconditional child-graph node;
- whole network, one graph, built three more ways: ``split_child`` (trunk + condition kernel +
  an unconditional child graph holding the deep half), ``split_linear`` (trunk then deep half in
  one plain capture, no condition at all), ``split_ifchild`` (the IF body holds a child-graph node
  cloned from ``deep_raw``'s graph);
- ``split_fused``: split_graph whose condition kernel takes the decision itself
  (``cond_graph.DeviceDecision``) from a trunk that computes no decision (no amax / > / where),
  rebuilt here (the same graph as ``never`` since the strategy decides on the device);
  ``never_rebuilt``, ``split_child``, ``split_linear`` and ``trunkhalf`` keep the trunk's own
  decision, as split_graph did before;
- ``seq``: the trunk-half graph then the ``deep_raw`` graph, two launches.

Then, under ``torch.profiler`` (CUPTI), for the main variants: kernels per replay, the kernels' busy
time, and the gaps (replay time minus busy); per-position kernel durations and launch grids of
``twin``, ``never`` and ``split_linear`` go to ``--trace-dir`` (one text file per case) so the deep
branch's kernels can be compared one by one. The node types of the graphs are counted too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from fixtures.backends.split import FEATS, GO_DEEP, StrategyEngine
from fixtures.backends.torch.engine import TorchEngine
from fixtures.backends.torch.halves import torch_halves
from fixtures.gpu import cond_graph, cuda
from fixtures.gpu.cuda import Stream, check
from fixtures.measure import timing
from tests.gpu_harness_table import back_to_back_ms, profiled, require_gpu


def _rt():
    return cuda.bindings().runtime


# --------------------------------------------------------------------------------------------------
# graph builders


def warm(enqueue: Callable[[int], object], stream: Stream) -> None:
    """One eager enqueue on ``stream`` (its allocator blocks, cuBLAS workspace), synchronised."""
    enqueue(stream.handle)
    stream.synchronize()


def raw_graph(enqueue: Callable[[int], object], stream: Stream) -> Any:
    """A plain raw stream capture of ``enqueue`` on ``stream``: the cudaGraph_t (not instantiated)."""
    rt = _rt()
    warm(enqueue, stream)
    mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    check(rt.cudaStreamBeginCapture(stream.raw, mode), "cudaStreamBeginCapture")
    try:
        enqueue(stream.handle)
    finally:
        graph = check(rt.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture")
    return graph


def ctg_graph(enqueue: Callable[[int], object], stream: Stream, *, warmed: bool = False) -> Any:
    """cudaGraphCreate + cudaStreamBeginCaptureToGraph on ``stream`` (the IF body's method)."""
    rt = _rt()
    if not warmed:
        warm(enqueue, stream)
    graph = check(rt.cudaGraphCreate(0), "cudaGraphCreate")
    cond_graph._begin_capture_to_graph(stream, graph)
    try:
        enqueue(stream.handle)
    finally:
        check(rt.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture")
    return graph


def combined_graph(
    trunk: Callable[[int], object] | None,
    decision_ptr: int,
    body: Callable[[int], object],
    stream: Stream,
    mode: str,
    child: Any = None,
    set_cond: Callable[[Any, Stream], None] | None = None,
) -> Any:
    """One graph: [trunk] -> condition kernel -> body, where the body is (``mode``):

    ``if``: an IF node whose body is captured with cudaStreamBeginCaptureToGraph on a fresh stream
    (SplitGraph.build's method); ``child``: an unconditional child-graph node, its graph captured
    the same way; ``ifchild``: an IF node whose body holds a clone of ``child`` (a cudaGraph_t);
    ``linear``: the body captured on ``stream`` itself right after the trunk (no condition kernel).
    """
    rt = _rt()
    body_stream = Stream()
    if trunk is not None:
        warm(trunk, stream)
    warm(body, body_stream)
    mode_c = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    check(rt.cudaStreamBeginCapture(stream.raw, mode_c), "cudaStreamBeginCapture")
    try:
        if trunk is not None:
            trunk(stream.handle)
        if mode == "linear":
            body(stream.handle)
        elif mode == "child":  # no conditional handle: one without its node fails instantiation
            graph, deps = cond_graph._capture_graph_and_deps(stream)
            sub = ctg_graph(body, body_stream, warmed=True)
            node = check(rt.cudaGraphAddChildGraphNode(graph, deps, len(deps), sub), "child")
            rt.cudaGraphDestroy(sub)
            cond_graph._set_capture_deps(stream, [node])
        else:
            graph, _ = cond_graph._capture_graph_and_deps(stream)
            flags = rt.cudaGraphConditionalHandleFlags.cudaGraphCondAssignDefault
            handle = check(rt.cudaGraphConditionalHandleCreate(graph, 0, flags), "handle")
            if set_cond is None:
                cond_graph._launch_set_conditional(handle, decision_ptr, stream)
            else:
                set_cond(handle, stream)
            graph, deps = cond_graph._capture_graph_and_deps(stream)
            if mode in ("if", "ifchild"):
                params = rt.cudaGraphNodeParams()
                params.type = rt.cudaGraphNodeType.cudaGraphNodeTypeConditional
                params.conditional.handle = handle
                params.conditional.type = rt.cudaGraphConditionalNodeType.cudaGraphCondTypeIf
                params.conditional.size = 1
                node = cond_graph._add_node(graph, deps, params)
                body_graph = params.conditional.phGraph_out[0]
                if mode == "if":
                    cond_graph._begin_capture_to_graph(body_stream, body_graph)
                    body(body_stream.handle)
                    check(rt.cudaStreamEndCapture(body_stream.raw), "EndCapture(body)")
                else:
                    check(rt.cudaGraphAddChildGraphNode(body_graph, None, 0, child), "child in IF")
            else:
                raise ValueError(mode)
            cond_graph._set_capture_deps(stream, [node])
    except BaseException:
        cond_graph._abort_capture(stream, body_stream)
        body_stream.close()
        raise
    graph = check(rt.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture")
    STREAMS.append(body_stream)
    return graph


STREAMS: list[Stream] = []


def node_census(graph: Any) -> Counter:
    """Node types of a cudaGraph_t (top level), e.g. Counter({'Kernel': 30, 'Memset': 2})."""
    rt = _rt()
    _, n = check(rt.cudaGraphGetNodes(graph, 0), "cudaGraphGetNodes")
    nodes = check(rt.cudaGraphGetNodes(graph, int(n)), "cudaGraphGetNodes")[0] if n else []
    out: Counter = Counter()
    for node in nodes:
        t = check(rt.cudaGraphNodeGetType(node), "cudaGraphNodeGetType")
        out[getattr(t, "name", str(t)).replace("cudaGraphNodeType", "")] += 1
    return out


def exec_of(graph: Any) -> cuda.GraphExec:
    try:
        return cuda.instantiate(graph)
    finally:
        _rt().cudaGraphDestroy(graph)


# --------------------------------------------------------------------------------------------------
# profiling


def profile_sequence(launch: Callable[[], None], stream: Stream, n: int = 40) -> list[dict]:
    """Per-position GPU activity of one replay, averaged over ``n`` replays (chrome trace)."""
    prof = profiled(launch, stream, n)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    ev = [
        e
        for e in trace.get("traceEvents", [])
        if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and e.get("ph") == "X"
    ]
    ev.sort(key=lambda e: float(e["ts"]))
    if not ev or len(ev) % n:
        return [
            {
                "name": f"<{len(ev)} activities for {n} replays: not aligned>",
                "dur": 0.0,
                "gap": 0.0,
                "grid": "",
                "block": "",
            }
        ]
    k = len(ev) // n
    rows = []
    for i in range(k):
        durs, gaps = [], []
        for r in range(n):
            e = ev[r * k + i]
            durs.append(float(e["dur"]))
            if i:
                p = ev[r * k + i - 1]
                gaps.append(float(e["ts"]) - (float(p["ts"]) + float(p["dur"])))
        e0 = ev[i]
        a = e0.get("args", {})
        rows.append(
            {
                "name": e0["name"],
                "dur": float(np.median(durs)),
                "gap": float(np.median(gaps)) if gaps else 0.0,
                "grid": str(a.get("grid", "")),
                "block": str(a.get("block", "")),
                "smem": a.get("shared memory", ""),
                "regs": a.get("registers per thread", ""),
            }
        )
    return rows


def seq_summary(rows: list[dict]) -> tuple[int, float, float]:
    return len(rows), sum(r["dur"] for r in rows), sum(r["gap"] for r in rows)


# --------------------------------------------------------------------------------------------------


def run_case(torch, model: str, precision: str, stream: Stream, trace_dir: str | None) -> None:
    img = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    closers: list[Callable[[], object]] = []
    launches: dict[str, Callable[[], None]] = {}
    census: dict[str, Counter] = {}
    errors: dict[str, str] = {}
    keep: list[Any] = []

    twin = TorchEngine(model, "plain", precision, "cuda")
    launch, _, close = timing.device_launcher(twin, {"input": img}, stream)
    launches["twin"] = launch
    closers.append(close)
    try:  # the twin's graph as a raw capture, for its node types only
        g = raw_graph(twin.enqueue, stream)
        census["twin(raw)"] = node_census(g)
        _rt().cudaGraphDestroy(g)
    except Exception as exc:  # noqa: BLE001
        errors["twin census"] = repr(exc)

    trunk, deep = torch_halves(model, "concat", precision)
    split = StrategyEngine(trunk, deep, "split_graph", [FEATS])
    feeds = {"input": img, "threshold": np.array([math.inf], np.float32)}
    launch, _, close = timing.device_launcher(split, feeds, stream)
    launches["never"] = launch
    closers.append(close)
    trunk.device_decision = False  # the strategy's graph decides in its condition kernel; the
    # variants below capture the trunk half with its own decision (amax / > / where) again
    thr = trunk.static_in["threshold"]
    keep.append(trunk.static_out[FEATS])

    def always() -> None:
        split.enqueue(stream.handle)

    one = torch.ones(1, device="cuda")  # a decision fixed at "go deep"

    def build(label: str, make: Callable[[], Any]) -> None:
        try:
            g = make()
            census[label] = node_census(g)
            ex = exec_of(g)
            keep.append(trunk.static_out.get(FEATS))
            launches[label] = lambda ex=ex: ex.launch(stream)
            closers.append(ex.close)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not stop the others
            errors[label] = f"{type(exc).__name__}: {exc}"
            cuda._clear_error()

    s2, s3 = Stream(), Stream()
    STREAMS.extend([s2, s3])
    build("trunkhalf", lambda: raw_graph(trunk.enqueue, stream))
    # the deep half reads the trunk's feats tensor of the last capture: rebuild the order so that
    # every deep graph reads the same tensor as the never graph's body would (any feats will do
    # for timing; they are kept alive)
    build("deep_raw", lambda: raw_graph(deep.enqueue, stream))
    deep_raw_graph = raw_graph(deep.enqueue, stream)  # kept as a cudaGraph_t for split_ifchild
    build("deep_raw2", lambda: raw_graph(deep.enqueue, s2))
    build("deep_ctg", lambda: ctg_graph(deep.enqueue, s3))

    def deep_torch_graph():
        g = torch.cuda.CUDAGraph()
        ext = torch.cuda.ExternalStream(stream.handle)
        feats = deep._input(FEATS)
        with torch.inference_mode(), torch.cuda.stream(ext):
            deep._softmax_into(deep.net.deep(feats), deep._probs_out(1.0))
            torch.cuda.synchronize()
            with torch.cuda.graph(g, stream=ext):
                deep._softmax_into(deep.net.deep(feats), deep._probs_out(1.0))
        return g

    try:
        tg = deep_torch_graph()
        ext = torch.cuda.ExternalStream(stream.handle)

        def replay_torch() -> None:
            with torch.cuda.stream(ext):
                tg.replay()

        launches["deep_torch"] = replay_torch
        closers.append(tg.reset)
    except Exception as exc:  # noqa: BLE001
        errors["deep_torch"] = f"{type(exc).__name__}: {exc}"

    ptr_one = int(one.data_ptr())
    go = trunk.device_ptr(GO_DEEP)
    build("if_only", lambda: combined_graph(None, ptr_one, deep.enqueue, stream, "if"))
    build("child_only", lambda: combined_graph(None, ptr_one, deep.enqueue, stream, "child"))
    build("never_rebuilt", lambda: combined_graph(trunk.enqueue, go, deep.enqueue, stream, "if"))
    build("split_child", lambda: combined_graph(trunk.enqueue, go, deep.enqueue, stream, "child"))
    build("split_linear", lambda: combined_graph(trunk.enqueue, go, deep.enqueue, stream, "linear"))
    build(
        "split_ifchild",
        lambda: combined_graph(trunk.enqueue, go, deep.enqueue, stream, "ifchild", deep_raw_graph),
    )
    _rt().cudaGraphDestroy(deep_raw_graph)

    def trunk_nodecision(h: int) -> None:  # TorchTrunk.enqueue without amax / > / where
        trunk.device_decision = True
        try:
            trunk.enqueue(h)
        finally:
            trunk.device_decision = False

    try:  # the condition kernel takes the decision (cond_graph.DeviceDecision)
        decide = cond_graph.DeviceDecision(
            int(trunk._probs_out(0.0).data_ptr()), trunk.classes, int(thr.data_ptr())
        )
        fused = cond_graph.SplitGraph.build(
            trunk_nodecision, go, deep.enqueue, stream, decide=decide
        )
        keep.append(trunk.static_out.get(FEATS))
        launches["split_fused"] = lambda: fused.launch(stream)
        closers.append(fused.close)
    except Exception as exc:  # noqa: BLE001
        errors["split_fused"] = f"{type(exc).__name__}: {exc}"
    if "trunkhalf" in launches and "deep_raw" in launches:
        a, b = launches["trunkhalf"], launches["deep_raw"]
        launches["seq"] = lambda: (a(), b())
    thr.fill_(math.inf)
    stream.synchronize()
    torch.cuda.synchronize()

    times: dict[str, float] = {}
    for label, fn in launches.items():
        times[label] = back_to_back_ms(fn, stream)
    thr.fill_(-math.inf)
    torch.cuda.synchronize()
    times["always"] = back_to_back_ms(always, stream)
    if "split_fused" in launches:
        times["fused_always"] = back_to_back_ms(launches["split_fused"], stream)
        go_host = float(trunk.static_out[GO_DEEP].item())
        print(f"(split_fused at threshold -inf leaves go_deep = {go_host}: 0.0 expected)")
    thr.fill_(math.inf)
    torch.cuda.synchronize()
    if "split_fused" in launches:
        launches["split_fused"]()
        stream.synchronize()
        print(
            f"(split_fused at threshold inf: go_deep = {float(trunk.static_out[GO_DEEP].item())}"
            ": 1.0 expected)"
        )

    seqs: dict[str, list[dict]] = {}
    for label in (
        "twin",
        "never",
        "never_rebuilt",
        "split_linear",
        "split_child",
        "split_ifchild",
        "trunkhalf",
        "deep_raw",
        "deep_ctg",
        "deep_torch",
        "if_only",
        "child_only",
        "split_fused",
    ):
        if label in launches:
            try:
                seqs[label] = profile_sequence(launches[label], stream)
            except Exception as exc:  # noqa: BLE001
                errors[f"profile {label}"] = repr(exc)

    print(f"\n## {model} {precision}\n")
    print("| variant | back-to-back us | kernels/replay | busy us | replay - busy us |")
    print("|---|---|---|---|---|")
    for label, t in times.items():
        if label in seqs:
            k, busy, _ = seq_summary(seqs[label])
            print(f"| {label} | {t * 1e3:.1f} | {k} | {busy:.1f} | {t * 1e3 - busy:.1f} |")
        else:
            print(f"| {label} | {t * 1e3:.1f} | | | |")
    t = {k: v * 1e3 for k, v in times.items()}
    if all(k in t for k in ("twin", "never", "always", "trunkhalf", "deep_raw")):
        print(
            f"\nnever - always = {t['never'] - t['always']:.1f} us (deep half inside the IF); "
            f"deep_raw = {t['deep_raw']:.1f}; deep_ctg = {t.get('deep_ctg', float('nan')):.1f}; "
            f"deep_torch = {t.get('deep_torch', float('nan')):.1f}; "
            f"if_only = {t.get('if_only', float('nan')):.1f}; "
            f"child_only = {t.get('child_only', float('nan')):.1f}"
        )
        print(
            f"never - split_linear = {t['never'] - t.get('split_linear', math.nan):+.1f} us; "
            f"never - split_child = {t['never'] - t.get('split_child', math.nan):+.1f} us; "
            f"never - split_ifchild = {t['never'] - t.get('split_ifchild', math.nan):+.1f} us; "
            f"never - split_fused = {t['never'] - t.get('split_fused', math.nan):+.1f} us; "
            f"always - fused_always = {t['always'] - t.get('fused_always', math.nan):+.1f} us; "
            f"IF on (never - split_linear) = {t['never'] - t.get('split_linear', math.nan):.1f},"
            f" IF off (always - trunkhalf) = {t['always'] - t['trunkhalf']:.1f} us; "
            f"seq - (trunkhalf + deep_raw) = "
            f"{t.get('seq', math.nan) - t['trunkhalf'] - t['deep_raw']:+.1f} us"
        )
    print("\nnode types: " + "; ".join(f"{k}: {dict(v)}" for k, v in census.items()))
    for k, v in errors.items():
        print(f"ERROR {k}: {v}")
    if trace_dir:
        os.makedirs(trace_dir, exist_ok=True)
        with open(os.path.join(trace_dir, f"seq_{model}_{precision}.txt"), "w") as f:
            for label, rows in seqs.items():
                k, busy, gaps = seq_summary(rows)
                f.write(f"\n### {label}: {k} activities, busy {busy:.2f} us, gaps {gaps:.2f} us\n")
                for i, r in enumerate(rows):
                    f.write(
                        f"{i:3d} {r['dur']:7.2f} {r['gap']:6.2f} {r['grid']:>14} "
                        f"{r['block']:>14} {r.get('smem', '')!s:>6} {r.get('regs', '')!s:>4} "
                        f"{r['name'][:110]}\n"
                    )
    stream.synchronize()
    for c in reversed(closers):
        try:
            c()
        except Exception:  # noqa: BLE001
            pass
    split.close()
    twin.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="alexnet:fp32,alexnet:fp16,resnet8:fp32")
    ap.add_argument("--trace-dir", default=None)
    args = ap.parse_args(argv)
    require_gpu(ap)
    import torch

    stream = cuda.Stream()
    print(
        f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
        f"driver {cuda.driver_version()}, runtime {cuda.runtime_version()}"
    )
    for case in args.cases.split(","):
        model, precision = case.split(":")
        try:
            run_case(torch, model, precision, stream, args.trace_dir)
        except Exception as exc:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            print(f"ERROR case {case}: {exc}")
    stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
