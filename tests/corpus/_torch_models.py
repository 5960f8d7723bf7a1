"""PyTorch sources of the corpus models (imported by ``make_corpus.py`` only; needs torch).

One tiny network (``TinyNet``: trunk, exit head, deep branch) is trained once; every wrapper below
reuses its modules and differs only in how the exit is written, because *that* is what decides what
the exporter emits. The wrappers are module-level classes so that ``torch.jit.script`` can read
their source.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 10


class TinyNet(nn.Module):
    """trunk: 3->w conv/2; exit head: w->w conv/2, GAP, FC; deep: w->2w->2w convs/2, GAP, FC."""

    def __init__(self, width: int = 8, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        w = width
        self.trunk = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1), nn.ReLU())
        self.exit_head = nn.Sequential(
            nn.Conv2d(w, w, 3, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(w, num_classes),
        )
        self.deep = nn.Sequential(
            nn.Conv2d(w, 2 * w, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * w, num_classes),
        )


def train(x: np.ndarray, y: np.ndarray, seed: int, epochs: int, width: int = 8) -> TinyNet:
    """Joint training of both heads (BranchyNet's summed loss), seeded, a few seconds on a CPU."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    net = TinyNet(width)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            h = net.trunk(xt[idx])
            loss = F.cross_entropy(net.exit_head(h), yt[idx]) + F.cross_entropy(
                net.deep(h), yt[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def components(net: TinyNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exit logits, exit softmax, deep softmax) for NCHW images."""
    h = net.trunk(torch.from_numpy(x))
    logits = net.exit_head(h)
    return (
        logits.numpy(),
        torch.softmax(logits, 1).numpy(),
        torch.softmax(net.deep(h), 1).numpy(),
    )


class _Parts(nn.Module):
    def __init__(self, net: TinyNet) -> None:
        super().__init__()
        self.trunk, self.exit_head, self.deep = net.trunk, net.exit_head, net.deep


# --- torch.jit.script + the legacy (TorchScript) exporter -------------------------------------


class ScriptReduceMaxConcat(_Parts):
    """``if bool(p.max() > threshold.max())``: the threshold reached through ReduceMax."""

    __constants__ = ("deep_flag_columns",)  # a constant in the scripted graph, as a literal is

    def __init__(self, net: TinyNet, deep_flag_columns: int = 1) -> None:
        super().__init__(net)
        self.deep_flag_columns = deep_flag_columns

    def forward(self, x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        p = torch.softmax(self.exit_head(h), dim=1)
        if bool(p.max() > threshold.max()):
            out = torch.cat([p, torch.zeros(p.size(0), 1)], dim=1)
        else:
            q = torch.softmax(self.deep(h), dim=1)
            out = torch.cat([q, torch.ones(q.size(0), self.deep_flag_columns)], dim=1)
        return out


class ScriptReshapeSeparate(_Parts):
    """``threshold.reshape(())``; two outputs, the flag of shape [1]."""

    def forward(
        self, x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        p = torch.softmax(self.exit_head(h), dim=1)
        if bool(p.max() > threshold.reshape(())):
            probs, flag = p, torch.zeros(1)
        else:
            probs, flag = torch.softmax(self.deep(h), dim=1), torch.ones(1)
        return probs, flag


class ScriptScalarFlag(_Parts):
    """``threshold[0]``; two outputs, the flag a scalar constant in each branch."""

    def forward(
        self, x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        p = torch.softmax(self.exit_head(h), dim=1)
        if bool(p.max() > threshold[0]):
            probs, flag = p, torch.tensor(0.0)
        else:
            probs, flag = torch.softmax(self.deep(h), dim=1), torch.tensor(1.0)
        return probs, flag


class ScriptShapeMismatch(ScriptReduceMaxConcat):
    """Negative control: the branches return [N,11] and [N,12] (a real static shape mismatch)."""

    def __init__(self, net: TinyNet) -> None:
        super().__init__(net, deep_flag_columns=2)


class TracedItem(_Parts):
    """Negative control: the forum user's host-side ``if p.max().item() > t.item()`` (traced)."""

    def forward(self, x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        p = torch.softmax(self.exit_head(h), dim=1)
        if p.max().item() > threshold.item():
            return torch.cat([p, torch.zeros_like(p[:, :1])], dim=1)
        q = torch.softmax(self.deep(h), dim=1)
        return torch.cat([q, torch.ones_like(q[:, :1])], dim=1)


# --- torch.cond + the dynamo exporter ---------------------------------------------------------


def _flagged(q: torch.Tensor, value: float, layout: str, flag_shape: str):
    if layout == "none":
        return q
    column = torch.full_like(q[:, :1], value)
    if layout == "concat":
        return torch.cat([q, column], dim=1)
    if layout == "concat_mismatch":  # negative control: 1 flag column on exit, 2 on the deep branch
        return torch.cat([q, q.new_full((q.shape[0], 1 + int(value)), value)], dim=1)
    if flag_shape == "[N,1]":
        return q, column
    if flag_shape == "[1]":
        return q, q.new_full((1,), value)
    if flag_shape == "scalar":
        return q, q.new_full((), value)
    raise ValueError(f"unknown flag shape {flag_shape!r}")


class CondExit(_Parts):
    """``torch.cond`` on the exit head's score; the exit written in one of several ways.

    ``compare`` (how the source code states the exit):
      ``gt``: ``score > t``; ``ge``: ``score >= t``; ``lt_swapped``: ``t < score``;
      ``not_le``: ``torch.logical_not(score <= t)``; ``lt``: ``score < t`` (entropy);
      ``le_deep_first``: ``torch.cond(score <= t, deep, exit)`` (then-branch is the deep one);
      ``const_true``: ``torch.cond(torch.tensor(True), exit, deep)`` (negative control).
    """

    def __init__(
        self,
        net: TinyNet,
        *,
        criterion: str = "max_softmax",
        compare: str = "gt",
        layout: str = "concat",
        flag_shape: str = "column",
        threshold_access: str = "reshape",
    ) -> None:
        super().__init__(net)
        self.criterion, self.compare = criterion, compare
        self.layout, self.flag_shape = layout, flag_shape
        self.threshold_access = threshold_access

    def forward(self, x: torch.Tensor, threshold: torch.Tensor):
        h = self.trunk(x)
        logits = self.exit_head(h)
        p = torch.softmax(logits, dim=1)
        if self.criterion == "max_softmax":
            score = p.max()
        elif self.criterion == "max_logit":
            score = logits.max()
        elif self.criterion == "entropy":
            score = -(p * torch.log(p)).sum()
        else:
            raise ValueError(self.criterion)
        t = threshold.reshape(()) if self.threshold_access == "reshape" else threshold
        layout, flag_shape = self.layout, self.flag_shape

        def leave(h: torch.Tensor, p: torch.Tensor):
            return _flagged(p.clone(), 0.0, layout, flag_shape)

        def go_deep(h: torch.Tensor, p: torch.Tensor):
            return _flagged(torch.softmax(self.deep(h), dim=1), 1.0, layout, flag_shape)

        c = self.compare
        if c == "le_deep_first":
            return torch.cond(score <= t, go_deep, leave, (h, p))
        if c == "const_true":
            return torch.cond(torch.tensor(True), leave, go_deep, (h, p))
        pred = {
            "gt": lambda: score > t,
            "ge": lambda: score >= t,
            "lt_swapped": lambda: t < score,
            "not_le": lambda: torch.logical_not(score <= t),
            "lt": lambda: score < t,
        }[c]()
        return torch.cond(pred, leave, go_deep, (h, p))


def as_numpy(out) -> list[np.ndarray]:
    if isinstance(out, torch.Tensor):
        out = (out,)
    return [o.detach().numpy() for o in out]
