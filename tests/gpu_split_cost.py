"""Where split_graph's never-exit time goes, on a CUDA GPU (torch halves, CUDA-graph replays).

    python -m tests.gpu_split_cost [--models resnet8,resnet56,alexnet] [--precisions fp32,fp16]

For each zoo model it prints back-to-back replay time (events around N replays / N) and the GPU
activities per replay (CUPTI through torch.profiler) of: the no-exit twin, the trunk + exit head
(what exit_always costs at least), split_graph at exit_never and at exit_always; then the kernels
split_graph runs beyond the twin, by name (issue 15's budget: the twin + the exit head's own
kernels + the conditional node + 5 us).
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections import Counter

import numpy as np

from fixtures import cuda, timing
from tests.gpu_harness_table import back_to_back_ms


def kernels(torch, launch, stream: cuda.Stream, n: int = 50) -> tuple[Counter, float]:
    """GPU activity names per replay (averaged), and busy time per replay (ms)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):
        launch()
    stream.synchronize()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*Profiler clears events", UserWarning)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                launch()
            stream.synchronize()
    ev = [e for e in prof.events() if e.device_type == DeviceType.CUDA
          and e.time_range.end > e.time_range.start]  # fmt: skip
    names = Counter(e.name[:70] for e in ev)
    busy = sum(e.time_range.end - e.time_range.start for e in ev) / 1e3 / n
    return Counter({k: v / n for k, v in names.items()}), busy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet8,resnet56,alexnet")
    ap.add_argument("--precisions", default="fp16,fp32")
    args = ap.parse_args(argv)
    import torch

    from fixtures.backends.torch import TorchEngine
    from fixtures.strategies import FEATS, StrategyEngine, torch_halves

    stream = cuda.Stream()
    img = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    print("| model | precision | twin ms | trunk+head ms | split_graph never ms | split_graph always "
          "ms | never beyond twin | kernels twin / head / never |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    extras = {}
    for model in args.models.split(","):
        for precision in args.precisions.split(","):
            row, closers = {}, []
            twin = TorchEngine(model, "plain", precision, "cuda")
            head = TorchEngine(model, "exit_head", precision, "cuda")
            trunk, deep = torch_halves(model, "concat", precision)
            split = StrategyEngine(trunk, deep, "split_graph", [FEATS])
            names = {}
            for label, eng, t in (("twin", twin, None), ("head", head, None),
                                  ("never", split, math.inf), ("always", split, -math.inf)):  # fmt: skip
                feeds = {"input": img} if t is None else {"input": img,
                                                          "threshold": np.array([t], np.float32)}  # fmt: skip
                launch, _, close = timing.device_launcher(eng, feeds, stream)
                closers.append(close)
                row[label] = back_to_back_ms(launch, stream)
                names[label], _ = kernels(torch, launch, stream)
            stream.synchronize()
            for c in closers:
                c()
            extra = names["never"] - names["twin"]
            extras[(model, precision)] = extra
            print(f"| {model} | {precision} | {row['twin']:.4f} | {row['head']:.4f} | "
                  f"{row['never']:.4f} | {row['always']:.4f} | "
                  f"+{(row['never'] - row['twin']) * 1e3:.1f} us, {sum(extra.values()):.0f} kernels | "
                  f"{sum(names['twin'].values()):.0f} / {sum(names['head'].values()):.0f} / "
                  f"{sum(names['never'].values()):.0f} |")  # fmt: skip
            for e in (split, twin, head):
                e.close()
    for (model, precision), extra in extras.items():
        print(f"\n{model} {precision}: kernels split_graph(never) runs beyond the twin:")
        for k, v in extra.most_common():
            print(f"  {v:4.1f}  {k}")
    stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
