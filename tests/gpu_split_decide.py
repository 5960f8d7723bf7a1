"""Which part of split_graph's deciding condition kernel costs time at exit_never (CUDA GPU).

    python -m tests.gpu_split_decide [--cases alexnet:fp32,resnet8:fp32] [--rounds 40] [--k 20]

``tests.gpu_split_where`` found that split_graph with the decision in the condition kernel
(``cond_graph.DeviceDecision``) pays about 5 us more at exit_never when every replay has its own
event pair than back to back, while the same graph with the trunk's decision, and either graph at
exit_always, pays the usual 2 us. This script builds split_graph with variants of the deciding
kernel (same trunk and deep halves, cuDNN by heuristics) and times them with the twin, the trunk + head and the trunk,
interleaved in the same rounds:

- ``decide``: the kernel split_graph uses (writes the exit flag, then sets the condition);
- ``nowrite``: sets the condition only (no store of the exit flag);
- ``setfirst``: sets the condition, then stores the exit flag;
- ``fence``: stores the flag, ``__threadfence()``, sets the condition;
- ``td``: the trunk's own decision (amax / > / where) and the kernel that only reads it.

Per variant: the budget excess (never - twin - always + trunk, Hodges-Lehmann [95 %]) with an
event pair per replay, and never's per-replay minus back-to-back time.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from fixtures.gpu import cond_graph, cuda
from fixtures.measure import stats, timing
from tests import gpu_split_cost as cost
from tests import gpu_split_where as where
from tests.gpu_harness_table import back_to_back_ms, require_gpu

_BODY, _SIG = cond_graph.DECIDE_BODY, cond_graph.DECIDE_SIGNATURE
VARIANTS = {
    "decide": cond_graph.DECIDE_KERNEL_NAME,
    "nowrite": "exitgate_decide_nowrite",
    "setfirst": "exitgate_decide_setfirst",
    "fence": "exitgate_decide_fence",
}
EXTRA_SOURCE = f"""
extern "C" __global__ void exitgate_decide_nowrite{_SIG} {{{_BODY}
    cudaGraphSetConditional(handle, go);
}}
extern "C" __global__ void exitgate_decide_setfirst{_SIG} {{{_BODY}
    cudaGraphSetConditional(handle, go);
    *decision = go ? 1.0f : 0.0f;
}}
extern "C" __global__ void exitgate_decide_fence{_SIG} {{{_BODY}
    *decision = go ? 1.0f : 0.0f;
    __threadfence();
    cudaGraphSetConditional(handle, go);
}}
"""


def build_case(torch, model: str, precision: str, stream: cuda.Stream) -> dict:
    case: dict = {"fns": {}, "closers": [], "engines": [], "case": f"{model} {precision}"}
    cost.budget_graphs(torch, model, precision, stream, case, heuristics=True)
    for v, kernel in VARIANTS.items():
        cond_graph.DECIDE_KERNEL_NAME = kernel
        cond_graph._decide_function.cache_clear()
        for label, t in (("never", math.inf), ("always", -math.inf)):
            eng = cost.split_graph_engine(
                torch, model, precision, stream, case, f"{label}_{v}", t, heuristics=True
            )
            assert eng.trunk.device_decision, (label, v)
    cond_graph.DECIDE_KERNEL_NAME = VARIANTS["decide"]
    cond_graph._decide_function.cache_clear()
    for label, t in (("never", math.inf), ("always", -math.inf)):
        where.trunk_decision_graph(
            torch, model, precision, stream, case, f"{label}_td", t, heuristics=True
        )
    stream.synchronize()
    return case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="alexnet:fp32,resnet8:fp32")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args(argv)
    cases = where.parse_cases(ap, args)
    require_gpu(ap)
    import torch

    saved = (cond_graph.KERNEL_SOURCE, cond_graph.DECIDE_KERNEL_NAME)
    cond_graph.KERNEL_SOURCE = saved[0] + EXTRA_SOURCE  # the variants beside the real kernels
    cond_graph._kernel.cache_clear()  # a module compiled earlier in this process lacks them
    stream = cuda.Stream()
    try:
        for model, precision in cases:
            report(build_case(torch, model, precision, stream), stream, args.rounds, args.k)
    finally:
        cond_graph.KERNEL_SOURCE, cond_graph.DECIDE_KERNEL_NAME = saved
        cond_graph._kernel.cache_clear()
        cond_graph._decide_function.cache_clear()
        stream.close()
    return 0


def report(c: dict, stream: cuda.Stream, rounds: int, k: int) -> None:
    """Time one case's graphs (back to back, then interleaved) and print its table; free them."""
    fns = c["fns"]
    try:
        b2b = {lb: back_to_back_ms(fn, stream, n=200, runs=3) * 1e3 for lb, fn in fns.items()}
        labels, s = timing.interleaved_samples(fns, stream, rounds=rounds, k=k)
    finally:
        stream.synchronize()
    bm = stats.block_medians(s) * 1e3
    ms = {lb: bm[:, i] for i, lb in enumerate(labels)}
    print(f"\n### {c['case']}: us per replay (mixed = event pair per replay, interleaved)\n")
    print("| variant | never b2b | never mixed | mixed - b2b | always mixed | excess [95 %] |")
    print("|---|---|---|---|---|---|")
    for v in (*VARIANTS, "td"):
        n, a = f"never_{v}", f"always_{v}"
        est, lo, hi = stats.shift_interval(ms[n] - ms["twin"] - ms[a] + ms["trunk"])
        nm = float(np.median(ms[n]))
        print(
            f"| {v} | {b2b[n]:.1f} | {nm:.1f} | {nm - b2b[n]:+.1f} | "
            f"{float(np.median(ms[a])):.1f} | {est:+.1f} [{lo:+.1f}, {hi:+.1f}] |"
        )
    for lb in ("twin", "head", "trunk"):
        print(f"{lb}: b2b {b2b[lb]:.1f}, mixed {float(np.median(ms[lb])):.1f}")
    for fn in c["closers"]:
        fn()
    for e in c["engines"]:
        e.close()


if __name__ == "__main__":
    raise SystemExit(main())
