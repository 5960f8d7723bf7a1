"""The model zoo: ``ModelSpec`` records and the ONNX files the suites run.

Every zoo model exists in four ONNX variants, all exported from the same committed weights:
``concat`` and ``separate`` (the two flag layouts of the early-exit network), ``plain`` (the no-exit
twin) and ``traced`` (the negative control: the exit traced away). Exports are cached by content
(weights hash, variant, exporter code and torch version), so torch is needed only the first time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ._io import sha256_file
from .artifacts import ArtifactCache

__all__ = ["LAYOUTS", "VARIANTS", "ZOO", "ModelSpec", "load_backbone", "onnx_path", "weights_path"]

LAYOUTS = ("concat", "separate")
VARIANTS = (*LAYOUTS, "plain", "traced")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: str
    default_threshold: float = 0.9
    num_classes: int = 10
    input_shape: tuple[int, ...] = (1, 3, 32, 32)

    @property
    def weights(self) -> str:
        return f"{self.name}.npz"


ZOO: dict[str, ModelSpec] = {
    s.name: s for s in (ModelSpec("resnet8", "resnet8"), ModelSpec("resnet56", "resnet56"),
                        ModelSpec("alexnet", "alexnet"))
}  # fmt: skip


def weights_path(spec: ModelSpec) -> Path:
    path = WEIGHTS_DIR / spec.weights
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: zoo weights missing; regenerate them with `python -m models.train {spec.name}`"
        )
    return path


def load_backbone(spec: ModelSpec):
    """The trained torch backbone (eval mode, float32)."""
    import numpy as np
    import torch

    from .nets import build_backbone

    backbone = build_backbone(spec.arch, spec.num_classes)
    with np.load(weights_path(spec)) as npz:
        state = {k: torch.from_numpy(np.asarray(npz[k])) for k in npz.files}
    ref = backbone.state_dict()
    state = {k: v.to(ref[k].dtype) for k, v in state.items()}
    backbone.load_state_dict(state, strict=True)
    return backbone.eval()


def _export_code_digest() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("nets.py", "export.py"):
        h.update((here / name).read_bytes())
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
        "export_code": _export_code_digest(),
    }
    hit = cache.valid("zoo_onnx", key, ".onnx")
    if hit is not None:
        return hit

    def build() -> bytes:
        from . import export

        backbone = load_backbone(spec)
        if variant in LAYOUTS:
            model = export.export_early_exit(backbone, variant)
        elif variant == "plain":
            model = export.export_plain(backbone)
        else:
            model = export.export_traced_control(backbone)
        return model.SerializeToString()

    return cache.get_or_build("zoo_onnx", key, build, ".onnx").path
