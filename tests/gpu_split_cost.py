"""Where split_graph's never-exit time goes, on a CUDA GPU (torch halves, CUDA-graph replays).

    python -m tests.gpu_split_cost [--models resnet8,resnet56,alexnet] [--precisions fp32,fp16]

For each zoo model it prints back-to-back replay time (events around N replays / N) and the GPU
activities per replay (CUPTI through torch.profiler) of: the no-exit twin, the trunk + exit head
(what exit_always costs at least), the trunk alone, split_graph at exit_never and at exit_always;
then issue 15's budget -- split_graph at exit_never within 5 us of the twin + the exit head's own
kernels (trunk+head minus trunk) + the decision and conditional node (split_graph at exit_always
minus trunk+head) -- and the kernels split_graph runs beyond the twin, by name.
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections import Counter

import numpy as np

from fixtures.gpu import cuda
from fixtures.measure import timing
from models.zoo import ZOO
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
    DURATIONS.clear()
    for e in ev:  # us per replay, by kernel name (for --detail)
        DURATIONS[e.name[:70]] = DURATIONS.get(e.name[:70], 0.0) + (
            e.time_range.end - e.time_range.start) / n  # fmt: skip
    return Counter({k: v / n for k, v in names.items()}), busy


DURATIONS: dict[str, float] = {}


def trunk_only(torch, model: str, precision: str, stream: cuda.Stream):
    """``(launch, close)``: a CUDA graph of the zoo model's trunk alone (the twin's first part)."""
    from models.zoo import load_backbone

    dtype = torch.float16 if precision == "fp16" else torch.float32
    cl = torch.channels_last
    net = load_backbone(ZOO[model]).to("cuda", dtype).to(memory_format=cl)
    x = torch.randn(1, 3, 32, 32, device="cuda")
    ext = torch.cuda.ExternalStream(stream.handle)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.stream(ext):
        net.trunk(x.to(dtype).contiguous(memory_format=cl))
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, stream=ext):
            y = net.trunk(x.to(dtype).contiguous(memory_format=cl))

    def launch() -> None:
        with torch.cuda.stream(ext):
            graph.replay()

    return launch, lambda: (y, graph.reset())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--precisions", default="fp16,fp32")
    ap.add_argument("--detail", action="store_true", help="GPU time per kernel name, twin vs never")
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
    budget_rows: list[str] = []
    for model in args.models.split(","):
        for precision in args.precisions.split(","):
            row, closers = {}, []
            twin = TorchEngine(model, "plain", precision, "cuda")
            head = TorchEngine(model, "exit_head", precision, "cuda")
            trunk, deep = torch_halves(model, "concat", precision)
            split = StrategyEngine(trunk, deep, "split_graph", [FEATS])
            names, durations = {}, {}
            for label, eng, t in (("twin", twin, None), ("head", head, None),
                                  ("never", split, math.inf), ("always", split, -math.inf)):  # fmt: skip
                feeds = {"input": img} if t is None else {"input": img,
                                                          "threshold": np.array([t], np.float32)}  # fmt: skip
                launch, _, close = timing.device_launcher(eng, feeds, stream)
                closers.append(close)
                row[label] = back_to_back_ms(launch, stream)
                names[label], _ = kernels(torch, launch, stream)
                durations[label] = dict(DURATIONS)
            launch, close = trunk_only(torch, model, precision, stream)
            closers.append(close)
            row["trunk"] = back_to_back_ms(launch, stream)
            stream.synchronize()
            for c in closers:
                c()
            head_ms = row["head"] - row["trunk"]  # the exit head's own kernels (+ its output copy)
            cond = row["always"] - row["head"]  # decision, condition kernel, IF node (body off)
            excess = row["never"] - (row["twin"] + head_ms + cond)
            budget_rows.append(f"| {model} | {precision} | {row['twin']:.4f} | {head_ms * 1e3:.1f} | "
                               f"{cond * 1e3:.1f} | {row['never']:.4f} | {excess * 1e3:+.1f} | "
                               f"{'yes' if excess <= 0.005 else 'NO'} |")  # fmt: skip
            if args.detail:
                keys = sorted(set(durations["twin"]) | set(durations["never"]))
                print(f"\n{model} {precision}: GPU us per replay by kernel (twin / never)")
                for k in keys:
                    a, b = durations["twin"].get(k, 0.0), durations["never"].get(k, 0.0)
                    if abs(a - b) >= 0.3:
                        print(f"  {a:7.2f} {b:7.2f}  {k}")
            extra = names["never"] - names["twin"]
            extras[(model, precision)] = extra
            print(f"| {model} | {precision} | {row['twin']:.4f} | {row['head']:.4f} | "
                  f"{row['never']:.4f} | {row['always']:.4f} | "
                  f"+{(row['never'] - row['twin']) * 1e3:.1f} us, {sum(extra.values()):.0f} kernels | "
                  f"{sum(names['twin'].values()):.0f} / {sum(names['head'].values()):.0f} / "
                  f"{sum(names['never'].values()):.0f} |")  # fmt: skip
            for e in (split, twin, head):
                e.close()
    print("\nissue 15's budget: split_graph never <= twin + exit head + conditional node + 5 us")
    print("| model | precision | twin ms | exit head us | decision + condition node us | "
          "split_graph never ms | never - (twin + head + cond) us | within 5 us |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(budget_rows))
    for (model, precision), extra in extras.items():
        print(f"\n{model} {precision}: kernels split_graph(never) runs beyond the twin:")
        for k, v in extra.most_common():
            print(f"  {v:4.1f}  {k}")
    stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
