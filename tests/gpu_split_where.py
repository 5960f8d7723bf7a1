"""Why tests.gpu_split_variants and tests.gpu_split_cost disagree on split_graph's cost (CUDA GPU).

    python -m tests.gpu_split_where [--cases resnet56:fp16,alexnet:fp16,alexnet:fp32,resnet8:fp16]
                                    [--rounds 40] [--k 20]

gpu_split_variants (graphs replayed back to back, no profiler before the timing) found the deep
half inside split_graph's IF body at the twin's speed; gpu_split_cost (graphs interleaved in one
process, after a torch.profiler pass over each graph) found it 10-90 us slower. This script times
the SAME graphs three ways, before and after one torch.profiler (CUPTI) pass:

- ``b2b``: events around 200 replays queued back to back, / 200, median of 3 runs
  (``tests.gpu_harness_table.back_to_back_ms``, gpu_split_variants' method);
- ``solo``: ``timing.interleaved_samples`` with that graph alone (an event pair per replay, no
  other graph in between);
- ``mixed``: ``timing.interleaved_samples`` over all the graphs of the case (gpu_split_cost's
  method: random order per round, 5 re-warm replays, ``k`` event pairs).

Graphs per case (zoo model, precision): ``deep`` the deep half alone (raw capture); ``child`` the
same body as an unconditional child-graph node of an otherwise empty graph; ``if`` the same body
inside an IF node set true by the condition kernel (no trunk); ``twin``; ``head`` (trunk + exit
head) and ``trunk`` (gpu_split_cost's budget terms); ``never`` / ``always``: split_graph as
``StrategyEngine`` builds it (decision in the condition kernel, ``cond_graph.DeviceDecision``),
two engines; ``never_td`` / ``always_td``: split_graph with the trunk's own decision
(amax / > / where), ``SplitGraph.build`` without ``decide``. ``always1`` (b2b only): engine
``never``'s graph after its threshold is set to -inf (one engine for both).

Phase 1 times every case; then torch.profiler traces 50 replays of the first case's ``never``
graph; phase 2 times every case again. The kernel nodes of the deep half give a per-kernel cost.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np

from fixtures.backends.split import FEATS, GO_DEEP, StrategyEngine
from fixtures.backends.torch.halves import torch_halves
from fixtures.gpu import cond_graph, cuda
from fixtures.measure import stats, timing
from tests.gpu_harness_table import back_to_back_ms, profiled, require_gpu
from tests.gpu_split_cost import (
    budget_graphs,
    check_cases,
    check_rounds,
    feeds,
    made,
    split_graph_engine,
)
from tests.gpu_split_variants import STREAMS, combined_graph, exec_of, node_census, raw_graph


def trunk_decision_graph(
    torch,
    model: str,
    precision: str,
    stream,
    case: dict,
    label: str,
    t: float,
    *,
    heuristics: bool,
):
    """split_graph with the trunk's own decision (amax / > / where), as before DeviceDecision:
    StrategyEngine wires and warms the halves, ``SplitGraph.build`` captures without ``decide``."""
    halves = torch_halves(model, "concat", precision)
    eng = made(torch, StrategyEngine(*halves, "split_graph", [FEATS]), heuristics)
    case["engines"].append(eng)
    eng.load_inputs(feeds(t))
    assert not eng.trunk.device_decision
    sg = cond_graph.SplitGraph.build(
        eng.trunk.enqueue, eng.trunk.device_ptr(GO_DEEP), eng.deep.enqueue, stream
    )
    case["fns"][label] = lambda sg=sg: sg.launch(stream)
    case["closers"].append(sg.close)
    return eng


def parse_cases(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, str]]:
    """``--cases MODEL:PRECISION,...`` and ``--rounds``, checked before any GPU work (a usage
    error names the option and the bad value)."""
    check_rounds(ap, args.rounds)
    return check_cases(ap, args.cases.split(","), "--cases")


def build_case(
    torch, model: str, precision: str, stream: cuda.Stream, *, heuristics: bool = False
) -> dict:
    fns: dict[str, Callable[[], None]] = {}
    closers: list[Callable[[], object]] = []
    engines: list = []
    meta: dict = {}
    case = {"fns": fns, "closers": closers, "engines": engines}
    h = heuristics
    budget_graphs(torch, model, precision, stream, case, heuristics=h)
    for label, t in (("never", math.inf), ("always", -math.inf)):
        eng = split_graph_engine(torch, model, precision, stream, case, label, t, heuristics=h)
        assert eng.trunk.device_decision, label  # the decision in the condition kernel
        meta[f"{label}_engine"] = eng
    for label, t in (("never_td", math.inf), ("always_td", -math.inf)):
        meta[f"{label}_engine"] = trunk_decision_graph(
            torch, model, precision, stream, case, label, t, heuristics=h
        )
    # the deep half alone, as a child graph, inside an IF (decision fixed at 1.0), no trunk
    halves = torch_halves(model, "concat", precision)
    base = made(torch, StrategyEngine(*halves, "split_graph", [FEATS]), h)
    engines.append(base)
    base.load_inputs(feeds(math.inf))
    one = torch.ones(1, device="cuda")
    meta["one"] = one
    g = raw_graph(base.deep.enqueue, stream)
    meta["deep_nodes"] = dict(node_census(g))
    ex = exec_of(g)
    fns["deep"] = lambda ex=ex: ex.launch(stream)
    closers.append(ex.close)
    for label, mode in (("child", "child"), ("if", "if")):
        g = combined_graph(None, int(one.data_ptr()), base.deep.enqueue, stream, mode)
        meta[f"{label}_nodes"] = dict(node_census(g))
        ex = exec_of(g)
        fns[label] = lambda ex=ex: ex.launch(stream)
        closers.append(ex.close)
    g = raw_graph(engines[0].enqueue, stream)  # the twin's node types
    meta["twin_nodes"] = dict(node_census(g))
    cuda.bindings().runtime.cudaGraphDestroy(g)
    stream.synchronize()
    torch.cuda.synchronize()
    return {
        "fns": fns,
        "closers": closers,
        "engines": engines,
        "meta": meta,
        "case": f"{model} {precision}",
    }


def time_case(c: dict, stream: cuda.Stream, rounds: int, k: int) -> dict[str, dict[str, float]]:
    fns = c["fns"]
    out: dict[str, dict[str, float]] = {"b2b": {}, "solo": {}, "mixed": {}}
    for label, fn in fns.items():
        out["b2b"][label] = back_to_back_ms(fn, stream, n=200, runs=3) * 1e3
    eng = c["meta"]["never_engine"]  # one engine for never and always: its threshold toggled
    thr = eng.trunk.static_in["threshold"]
    thr.fill_(-math.inf)
    stream.synchronize()
    import torch

    torch.cuda.synchronize()
    out["b2b"]["always1"] = back_to_back_ms(fns["never"], stream, n=200, runs=3) * 1e3
    thr.fill_(math.inf)
    torch.cuda.synchronize()
    for label, fn in fns.items():
        labels, s = timing.interleaved_samples({label: fn}, stream, rounds=8, k=k, warmup_ms=30)
        out["solo"][label] = float(np.median(stats.block_medians(s)[:, 0])) * 1e3
    labels, s = timing.interleaved_samples(fns, stream, rounds=rounds, k=k)
    bm = stats.block_medians(s) * 1e3  # [round, label] us
    for i, label in enumerate(labels):
        out["mixed"][label] = float(np.median(bm[:, i]))
    ms = {label: bm[:, i] for i, label in enumerate(labels)}
    for sfx in ("", "_td"):
        exc = ms["never" + sfx] - ms["twin"] - ms["always" + sfx] + ms["trunk"]
        est, lo, hi = stats.shift_interval(exc)
        out.setdefault("excess_mixed", {})["never" + sfx] = (est, lo, hi)
    return out


def profile(torch, launch: Callable[[], None], stream: cuda.Stream, n: int = 50) -> None:
    prof = profiled(launch, stream, n, warm=0)
    print(
        f"(profiled: {sum(str(e.device_type).endswith('CUDA') for e in prof.events())} GPU "
        "activities)",
        flush=True,
    )


def report(c: dict, t: dict, phase: str) -> None:
    b, so, mx = t["b2b"], t["solo"], t["mixed"]
    meta = c["meta"]
    nk = meta["deep_nodes"].get("Kernel", 0)
    print(
        f"\n### {c['case']}, {phase}: us per replay (deep half: {nk} kernel nodes "
        f"{meta['deep_nodes']}; twin {meta['twin_nodes']}; if {meta['if_nodes']}; "
        f"child {meta['child_nodes']})\n"
    )
    print("| graph | b2b | solo (event pair/replay) | mixed (interleaved) |")
    print("|---|---|---|---|")
    for label in b:
        print(
            f"| {label} | {b[label]:.1f} | {so.get(label, math.nan):.1f} | "
            f"{mx.get(label, math.nan):.1f} |"
        )
    for name, d in (("b2b", b), ("solo", so), ("mixed", mx)):
        deep_twin = d["twin"] - d["trunk"]  # the deep half's kernels in the twin (approx.)
        if_body = d["never"] - d["always"]
        ex = d["never"] - d["twin"] - d["always"] + d["trunk"]
        ex_td = d["never_td"] - d["twin"] - d["always_td"] + d["trunk"]
        print(
            f"{name}: deep={d['deep']:.1f} child-deep={d['child'] - d['deep']:+.1f} "
            f"if-deep={d['if'] - d['deep']:+.1f} ({(d['if'] - d['deep']) / max(nk, 1):+.3f}/kernel)"
            f" | never-always={if_body:.1f} vs twin-trunk={deep_twin:.1f} "
            f"(IF body {(if_body - d['deep']) / max(nk, 1):+.3f} us/kernel over deep) | "
            f"excess never={ex:+.1f} never_td={ex_td:+.1f} | never-never_td="
            f"{d['never'] - d['never_td']:+.1f} always-always_td={d['always'] - d['always_td']:+.1f}"
        )
    if "always1" in b:
        print(f"b2b one engine: always1={b['always1']:.1f} vs two engines always={b['always']:.1f}")
    for lab, (est, lo, hi) in t["excess_mixed"].items():
        print(f"mixed excess {lab} (per round, HL [95 %]): {est:+.1f} [{lo:+.1f}, {hi:+.1f}] us")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="resnet56:fp16,alexnet:fp16,alexnet:fp32,resnet8:fp16")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--no-profile", action="store_true", help="skip the profiler and phase 2")
    ap.add_argument(
        "--cudnn-heuristics",
        action="store_true",
        help="cuDNN kernels by heuristics, not autotuning (as tests.gpu_split_cost's flag)",
    )
    args = ap.parse_args(argv)
    cases = parse_cases(ap, args)
    require_gpu(ap)
    import torch

    stream = cuda.Stream()
    print(
        f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
        f"driver {cuda.driver_version()}, runtime {cuda.runtime_version()}",
        flush=True,
    )
    built = []
    for model, precision in cases:
        c = build_case(torch, model, precision, stream, heuristics=args.cudnn_heuristics)
        built.append(c)
        report(c, time_case(c, stream, args.rounds, args.k), "phase 1 (no profiler yet)")
    if not args.no_profile:
        profile(torch, built[0]["fns"]["never"], stream)
        for c in built:
            report(c, time_case(c, stream, args.rounds, args.k), "phase 2 (after torch.profiler)")
    for c in built:
        stream.synchronize()
        for fn in c["closers"]:
            fn()
        for e in c["engines"]:
            e.close()
    for s in STREAMS:
        s.close()
    stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
