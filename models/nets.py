"""PyTorch definitions of the zoo: BranchyNet-style early-exit CIFAR networks and their twins.

Every network is split the same way: ``trunk`` (the common stem and first stage), ``exit_head`` (a
small classifier after the first stage), ``deep`` (the rest of the network and its classifier).
``EarlyExitNet`` runs the trunk, the exit head, then a data-dependent ``torch.cond``: if the exit
head's max softmax is strictly greater than ``threshold`` it returns early (exit flag 0), else it runs
the deep branch (exit flag 1). ``PlainNet`` is the no-exit twin (trunk + deep, same weights).
``TracedExitNet`` is the negative control: the forum user's ``if x.item() > t`` that tracing freezes.

The architectures (``resnet8``, ``resnet56``, ``alexnet``) are factories ``f(num_classes) ->
Backbone`` that a zoo ``ModelSpec`` names; a new model's factory may live here or in its own module.
Importing this module imports torch: only the zoo's export and training paths do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Backbone",
    "EarlyExitNet",
    "PlainNet",
    "TracedExitNet",
    "alexnet",
    "resnet8",
    "resnet56",
]


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x))


def _stage(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
    blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class Backbone(nn.Module):
    """trunk -> (exit_head | deep); each returns logits or features."""

    def __init__(self, trunk: nn.Module, exit_head: nn.Module, deep: nn.Module) -> None:
        super().__init__()
        self.trunk, self.exit_head, self.deep = trunk, exit_head, deep


def _resnet(n: int, num_classes: int) -> Backbone:
    # CIFAR ResNet (He et al. 2016): 6n+2 layers, widths 16/32/64. Exit after the first stage.
    trunk = nn.Sequential(_conv_bn(3, 16), _stage(16, 16, n, 1))
    exit_head = nn.Sequential(
        _conv_bn(16, 32, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
    deep = nn.Sequential(
        _stage(16, 32, n, 2),
        _stage(32, 64, n, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )
    return Backbone(trunk, exit_head, deep)


def alexnet(num_classes: int = 10) -> Backbone:
    # The CIFAR AlexNet (5 conv + 3 FC), narrowed so that it trains on a CPU in minutes.
    trunk = nn.Sequential(
        nn.Conv2d(3, 32, 5, 1, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),  # 16x16
    )
    exit_head = nn.Sequential(
        nn.Conv2d(32, 64, 3, 2, 1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )
    deep = nn.Sequential(
        nn.Conv2d(32, 96, 5, 1, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),  # 8x8
        nn.Conv2d(96, 192, 3, 1, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(192, 128, 3, 1, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(128, 128, 3, 1, 1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),  # 4x4
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, num_classes),
    )
    return Backbone(trunk, exit_head, deep)


def resnet8(num_classes: int = 10) -> Backbone:
    return _resnet(1, num_classes)


def resnet56(num_classes: int = 10) -> Backbone:
    return _resnet(9, num_classes)


class EarlyExitNet(nn.Module):
    """forward(input, threshold) with a real data-dependent exit (``torch.cond``).

    ``layout="concat"``: one output (N, C+1), last column = exit flag.
    ``layout="separate"``: outputs ``probs`` (N, C) and ``exit_flag`` (N, 1).
    The exit is decided on the whole batch; the zoo exports batch 1.
    """

    def __init__(self, backbone: Backbone, layout: str = "concat") -> None:
        super().__init__()
        if layout not in ("concat", "separate"):
            raise ValueError(f"unknown flag layout {layout!r}: expected concat or separate")
        self.backbone, self.layout = backbone, layout

    def forward(self, x: torch.Tensor, threshold: torch.Tensor):
        b = self.backbone
        feats = b.trunk(x)
        p_exit = torch.softmax(b.exit_head(feats), dim=1)
        pred = p_exit.max() > threshold.reshape(())
        layout = self.layout

        def leave(feats: torch.Tensor, p_exit: torch.Tensor):
            flag = torch.zeros_like(p_exit[:, :1])
            if layout == "concat":
                return torch.cat([p_exit, flag], dim=1)
            return p_exit.clone(), flag

        def go_deep(feats: torch.Tensor, p_exit: torch.Tensor):
            p = torch.softmax(b.deep(feats), dim=1)
            flag = torch.ones_like(p[:, :1])
            if layout == "concat":
                return torch.cat([p, flag], dim=1)
            return p, flag

        return torch.cond(pred, leave, go_deep, (feats, p_exit))


class PlainNet(nn.Module):
    """The no-exit twin: trunk + deep branch, same weights, one ``probs`` output."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.backbone.deep(self.backbone.trunk(x)), dim=1)


class TracedExitNet(nn.Module):
    """The negative control: a Python ``if`` on ``.item()``; tracing freezes one branch."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        feats = b.trunk(x)
        p_exit = torch.softmax(b.exit_head(feats), dim=1)
        if p_exit.max().item() > threshold.item():  # the field bug: a host-side branch
            return torch.cat([p_exit, torch.zeros_like(p_exit[:, :1])], dim=1)
        p = torch.softmax(b.deep(feats), dim=1)
        return torch.cat([p, torch.ones_like(p[:, :1])], dim=1)
