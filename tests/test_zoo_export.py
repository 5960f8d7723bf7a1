"""Self-test of the zoo: every ONNX export computes what its PyTorch module computes (fp32, CPU).

This checks the project's own exporter, not a user's engine, so it lives here and not in suites/.
The eager side runs as one batch: the modules are per-sample (BatchNorm in eval mode), so the trunk,
the exit head and the deep branch over a batch give each image what it gets alone, and the early
exit is applied per image from the exit head's confidence, exactly as ``EarlyExitNet`` decides it
for a batch of one. The ONNX side runs the exported batch-1 graph image by image in onnxruntime, so
its ``If`` picks the branch. The thresholds force exit_always (0.0) and exit_never (1.0) and leave
the default to the data. The last tests show that the comparison fails on a perturbed weight and on
a graph that took the wrong branch (the traced negative control).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="install PyTorch (pip install -e '.[zoo]') to compare "
    "the zoo's export with the eager module",
)
ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime")

from models import dataset  # noqa: E402
from models.train import branch_probs  # noqa: E402
from models.zoo import LAYOUTS, ZOO, ModelSpec, Recipe, load_backbone, onnx_path, weights_path  # noqa: E402

N_IMAGES = 48
TOLERANCE = 1e-4
PATHS = {"exit_always": 0.0, "exit_never": 1.0, "exit_default": None}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return dataset.eval_split().take(N_IMAGES).x


def _threshold(spec: ModelSpec, path: str) -> float:
    t = PATHS[path]
    return spec.default_threshold if t is None else t


def eager(backbone, x: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(probs, flag) of the eager module over a batch; ``threshold=None``: the no-exit twin."""
    p_exit, p_deep = branch_probs(backbone, x)
    if threshold is None:
        return p_deep, np.ones(len(x), np.float32)
    leave = p_exit.max(1) > np.float32(threshold)
    return np.where(leave[:, None], p_exit, p_deep), (~leave).astype(np.float32)


def exported(path, x: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(probs, flag) of an exported zoo graph run one image at a time in onnxruntime."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # batch-1 CIFAR graphs: threads only add contention
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    probs, flags = [], []
    for img in x:
        feeds = {"input": img[None]}
        if "threshold" in names:
            feeds["threshold"] = np.array([threshold], np.float32)
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
        if "output" in outs:  # concat layout (and the traced control): last column is the flag
            p, f = outs["output"][:, :-1], outs["output"][:, -1]
        elif "exit_flag" in outs:
            p, f = outs["probs"], outs["exit_flag"].reshape(-1)
        else:  # plain: always the deep path
            p, f = outs["probs"], np.ones(1, np.float32)
        probs.append(p[0])
        flags.append(float(f[0]))
    return np.stack(probs), np.asarray(flags, np.float32)


def disagreement(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> str | None:
    """Why two (probs, flag) runs differ, or None when they agree."""
    flips = np.flatnonzero(a[1] != b[1])
    if len(flips):
        return f"different exits on inputs {flips[:5].tolist()} ({len(flips)} of {len(a[1])})"
    diff = float(np.abs(a[0] - b[0]).max())
    if not diff < TOLERANCE:
        return f"max |diff| {diff:.3g} >= {TOLERANCE}"
    return None


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("model", list(ZOO))
def test_export_matches_eager(model: str, layout: str, path: str, images: np.ndarray) -> None:
    spec = ZOO[model]
    t = _threshold(spec, path)
    want = eager(load_backbone(spec), images, t)
    got = exported(onnx_path(spec, layout), images, t)
    if path == "exit_always":
        assert not want[1].any(), "threshold 0.0 did not force the exit for every image"
    elif path == "exit_never":
        assert want[1].all(), "threshold 1.0 did not force the deep path for every image"
    else:
        assert 0 < want[1].sum() < len(images), (
            f"{model}: the default threshold {t} sends every image one way; the exit_default "
            "comparison would not exercise the If"
        )
    why = disagreement(want, got)
    assert why is None, f"{model} {layout} {path}: eager vs ONNX: {why}"


@pytest.mark.parametrize("model", list(ZOO))
def test_plain_export_matches_eager(model: str, images: np.ndarray) -> None:
    spec = ZOO[model]
    why = disagreement(
        eager(load_backbone(spec), images, None), exported(onnx_path(spec, "plain"), images, None)
    )
    assert why is None, f"{model} plain: eager vs ONNX: {why}"


def test_comparison_catches_a_perturbed_weight(images: np.ndarray) -> None:
    spec = ZOO["resnet8"]
    backbone = load_backbone(spec)
    with torch.no_grad():
        backbone.deep[-1].bias[0] += 0.05  # a small change in the deep classifier only
    got = exported(onnx_path(spec, "concat"), images, 1.0)
    why = disagreement(eager(backbone, images, 1.0), got)
    assert why is not None and "max |diff|" in why, why
    # the same weights untouched agree: the failure above is the perturbation's
    assert disagreement(eager(load_backbone(spec), images, 1.0), got) is None


def test_comparison_catches_a_wrong_branch(images: np.ndarray) -> None:
    """The traced control froze one branch at export: at the default threshold it disagrees."""
    spec = ZOO["resnet8"]
    t = spec.default_threshold
    why = disagreement(
        eager(load_backbone(spec), images, t), exported(onnx_path(spec, "traced"), images, t)
    )
    assert why is not None and "different exits" in why, why


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        ("models.nets", "is not 'module:function'"),
        ("models.nets:resnet9", "cannot be imported: module 'models.nets' has no attribute"),
        ("models.no_such:net", "cannot be imported: No module named 'models.no_such'"),
    ],
)
def test_a_bad_architecture_names_the_model(architecture: str, message: str) -> None:
    spec = ModelSpec("mine", architecture, Recipe(epochs=1, lr=1e-3, train_samples=128))
    want = re.escape(f"zoo model 'mine': architecture {architecture!r} {message}")
    with pytest.raises(ValueError, match=want):
        spec.build()


@pytest.mark.parametrize("model", list(ZOO))
def test_spec_architecture_fits_its_weights(model: str) -> None:
    """Each spec's architecture has exactly the tensors, of the shapes, its weights file holds."""
    spec = ZOO[model]
    state = spec.build().state_dict()
    with np.load(weights_path(spec)) as npz:
        shapes = {k: npz[k].shape for k in npz.files}
    assert shapes == {k: tuple(v.shape) for k, v in state.items()}, model
