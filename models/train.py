"""Train the zoo's weights on the project's own dataset, reproducibly, on the CPU.

    python -m models.train            # all zoo models (a few minutes on 2 cores)
    python -m models.train resnet8    # one model

BranchyNet's joint objective: the sum of the cross-entropy of the exit head and of the deep branch.
Weights are written (atomically) to ``models/weights/<name>.npz`` with matrices in float16 to keep
the repository small, and ``models/weights/manifest.json`` records how each file was made and what it
scores (accuracy per exit, exit rate at the default threshold) on the evaluation split. Each model's
architecture and recipe (epochs, learning rate, training samples) come from its ``ModelSpec`` in
``models/zoo.py``; recipes are chosen so each model trains in minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import dataset
from ._io import atomic_write_bytes, atomic_write_text, file_lock, sha256_bytes
from .zoo import ZOO

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"

SEED = 1234


def state_to_npz(state: dict) -> bytes:
    arrays = {}
    for k, v in state.items():
        a = v.detach().cpu().numpy()
        arrays[k] = a.astype(np.float16) if a.ndim > 1 else a  # matrices/filters: float16
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def branch_probs(backbone, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of the exit head and of the deep branch for a batch ``x`` (N, 3, 32, 32), eager."""
    import torch

    with torch.no_grad():
        f = backbone.trunk(torch.from_numpy(x))
        p_exit = torch.softmax(backbone.exit_head(f), 1).numpy()
        p_deep = torch.softmax(backbone.deep(f), 1).numpy()
    return p_exit, p_deep


def evaluate(backbone, data: dataset.Dataset, threshold: float) -> dict:
    p_exit, p_deep = branch_probs(backbone, data.x)
    y = data.y
    exits = p_exit.max(1) > threshold
    final = np.where(exits[:, None], p_exit, p_deep).argmax(1)
    return {
        "threshold": threshold,
        "exit_rate": float(exits.mean()),
        "accuracy_exit_head_all": float((p_exit.argmax(1) == y).mean()),
        "accuracy_deep_all": float((p_deep.argmax(1) == y).mean()),
        "accuracy_of_exited": float((final[exits] == y[exits]).mean()) if exits.any() else None,
        "accuracy_of_deep_path": float((final[~exits] == y[~exits]).mean())
        if (~exits).any()
        else None,
        "accuracy_overall": float((final == y).mean()),
        "exit_rate_easy": float(exits[~data.hard].mean()),
        "exit_rate_hard": float(exits[data.hard].mean()),
    }


def train(name: str) -> dict:
    import torch
    import torch.nn.functional as F

    spec = ZOO[name]
    epochs, lr, n_train = spec.recipe.epochs, spec.recipe.lr, spec.recipe.train_samples
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = dataset.train_split(n_train)
    backbone = spec.build()
    opt = torch.optim.Adam(backbone.parameters(), lr=lr)
    steps = epochs * ((n_train + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x_all, y_all = torch.from_numpy(data.x), torch.from_numpy(data.y)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        backbone.train()
        perm = torch.randperm(n_train, generator=gen)
        total = 0.0
        for i in range(0, n_train, 128):
            idx = perm[i : i + 128]
            x, y = x_all[idx], y_all[idx]
            f = backbone.trunk(x)
            loss = F.cross_entropy(backbone.exit_head(f), y) + F.cross_entropy(backbone.deep(f), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"{name}: epoch {epoch + 1}/{epochs} loss {total / n_train:.3f}", file=sys.stderr)
    backbone.eval()
    blob = state_to_npz(backbone.state_dict())
    atomic_write_bytes(WEIGHTS_DIR / spec.weights, blob)
    metrics = evaluate(backbone, dataset.eval_split(), spec.default_threshold)
    return {
        "file": spec.weights,
        "sha256": sha256_bytes(blob),
        "arch": spec.architecture,
        "dataset": dataset.DATASET_VERSION,
        "train_seed": dataset.TRAIN_SEED,
        "train_samples": n_train,
        "epochs": epochs,
        "lr": lr,
        "seed": SEED,
        "torch": torch.__version__,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "eval": metrics,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", default=list(ZOO), help="zoo models (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in ZOO]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}: expected some of {', '.join(ZOO)}")
    for name in args.names:
        record = train(name)
        print(json.dumps({name: record["eval"]}, indent=1))
        with file_lock(MANIFEST):  # re-read under the lock: parallel trainings merge
            manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
            manifest[name] = record
            atomic_write_text(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
