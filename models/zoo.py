"""The model zoo: ``ModelSpec`` records and the ONNX files the suites run.

Every zoo model exists in four ONNX variants, all exported from the same committed weights:
``concat`` and ``separate`` (the two flag layouts of the early-exit network), ``plain`` (the no-exit
twin) and ``traced`` (the negative control: the exit traced away). Exports are cached by content
(weights hash, variant, exporter and architecture code), so torch is needed only the first time.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import export
from ._io import sha256_file
from .artifacts import ArtifactCache

if TYPE_CHECKING:  # torch: imported only when a model is built
    from .nets import Backbone

__all__ = [
    "LAYOUTS",
    "VARIANTS",
    "ZOO",
    "ModelSpec",
    "Recipe",
    "load_backbone",
    "onnx_path",
    "weights_path",
]

LAYOUTS = ("concat", "separate")
VARIANTS = (*LAYOUTS, "plain", "traced")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Recipe:
    """How ``python -m models.train`` makes a model's weights from the project's dataset: Adam with a
    one-cycle learning rate, batches of 128, BranchyNet's joint loss (exit head + deep branch)."""

    epochs: int
    lr: float
    train_samples: int


@dataclass(frozen=True)
class ModelSpec:
    """One zoo model: its architecture, its training recipe and how the suites run it.

    ``architecture`` names the factory ``"module:function"``; ``function(num_classes)`` returns an
    untrained ``models.nets.Backbone`` (trunk, exit_head, deep). It is imported only when a model is
    built (it imports torch). The weights file ``weights/<name>.npz`` is made by
    ``python -m models.train <name>`` following ``recipe``.
    """

    name: str
    architecture: str
    recipe: Recipe
    default_threshold: float = 0.9
    num_classes: int = 10
    input_shape: tuple[int, ...] = (1, 3, 32, 32)

    @property
    def weights(self) -> str:
        return f"{self.name}.npz"

    def _factory(self):
        module, sep, attr = self.architecture.partition(":")
        if not sep or not module or not attr:
            raise ValueError(
                f"zoo model {self.name!r}: architecture {self.architecture!r} is not "
                "'module:function'"
            )
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"zoo model {self.name!r}: architecture {self.architecture!r} cannot "
                f"be imported: {exc}"
            ) from exc

    def build(self) -> Backbone:
        """A fresh, untrained backbone of this architecture (imports torch)."""
        return self._factory()(self.num_classes)

    def source_file(self) -> Path:
        """The file that defines the architecture (part of the export cache key)."""
        module = self.architecture.partition(":")[0]
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ValueError(f"zoo model {self.name!r}: no module {module!r}")
        return Path(spec.origin)


# To add a model: one entry here, then `python -m models.train <name>` writes its weights.
ZOO: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("resnet8", "models.nets:resnet8", Recipe(epochs=6, lr=3e-3, train_samples=6000)),
        ModelSpec(
            "resnet56", "models.nets:resnet56", Recipe(epochs=8, lr=3e-3, train_samples=4000)
        ),
        ModelSpec("alexnet", "models.nets:alexnet", Recipe(epochs=10, lr=2e-3, train_samples=6000)),
    )
}


def weights_path(spec: ModelSpec) -> Path:
    path = WEIGHTS_DIR / spec.weights
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: zoo weights missing; regenerate them with `python -m models.train {spec.name}`"
        )
    return path


def load_backbone(spec: ModelSpec) -> Backbone:
    """The trained torch backbone (eval mode, float32)."""
    import numpy as np
    import torch

    backbone = spec.build()
    with np.load(weights_path(spec)) as npz:
        state = {k: torch.from_numpy(np.asarray(npz[k])) for k in npz.files}
    ref = backbone.state_dict()
    state = {k: v.to(ref[k].dtype) for k, v in state.items()}
    backbone.load_state_dict(state, strict=True)
    return backbone.eval()


def _export_code_digest(spec: ModelSpec) -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    files = [here / "nets.py", here / "export.py"]
    files += [f for f in [spec.source_file().resolve()] if f not in files]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def onnx_path(spec: ModelSpec, variant: str, cache: ArtifactCache | None = None) -> Path:
    """Path of the cached ONNX export of ``spec`` in ``variant`` (exported on first use)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown zoo variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    cache = cache or ArtifactCache()
    key = {
        "model": spec.name,
        "variant": variant,
        "weights_sha256": sha256_file(weights_path(spec)),
        "export_code": _export_code_digest(spec),
    }
    hit = cache.valid("zoo_onnx", key, ".onnx")
    if hit is not None:
        return hit

    def build() -> bytes:
        backbone = load_backbone(spec)
        if variant in LAYOUTS:
            model = export.export_early_exit(backbone, variant)
        elif variant == "plain":
            model = export.export_plain(backbone)
        else:
            model = export.export_traced_control(backbone)
        return model.SerializeToString()

    return cache.get_or_build("zoo_onnx", key, build, ".onnx").path
