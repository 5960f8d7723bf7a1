"""The project's own 10-class 32x32 dataset, and loaders for data users bring.

No download is ever made. The synthetic set is seeded and cheap to make (numpy only): each class is
an oriented colour grating with a class-specific texture; *easy* samples show one class with little
noise, *hard* samples blend in a second class and more noise. A network trained on it is confident on
easy samples and unsure on hard ones, so at a threshold like 0.9 some inputs exit early and some do
not, and exit rate and accuracy per exit are meaningful numbers.

Images are float32 NCHW (N, 3, 32, 32), roughly zero mean and unit variance; labels are int64.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "DataError",
    "Dataset",
    "eval_split",
    "load_cifar10",
    "load_images",
    "make_dataset",
    "train_split",
]

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)

# Seeds of the fixed splits: part of the dataset's identity (a change retrains the zoo).
TRAIN_SEED, EVAL_SEED = 20261122, 7
DATASET_VERSION = "synthetic-v1"


class DataError(ValueError):
    """Data a user supplied cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32 (N, 3, 32, 32)
    y: np.ndarray  # int64 (N,)
    hard: np.ndarray  # bool (N,): True for blended/noisy samples (all False for real data)
    name: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, n: int) -> Dataset:
        return Dataset(self.x[:n], self.y[:n], self.hard[:n], self.name)


def _class_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.arange(NUM_CLASSES)
    angles = c * (np.pi / NUM_CLASSES)  # 10 orientations, 18 degrees apart
    freqs = np.where(c % 2 == 0, 2.0, 3.5)  # cycles per image
    hue = c / NUM_CLASSES * 2 * np.pi
    colors = 0.5 + 0.5 * np.stack([np.cos(hue), np.cos(hue - 2.1), np.cos(hue + 2.1)], 1)
    return angles, freqs, colors.astype(np.float32)


def _render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render one clean image per label with a random phase and a small random shift."""
    angles, freqs, colors = _class_params()
    n = labels.shape[0]
    yy, xx = np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 32), indexing="ij")
    a = angles[labels][:, None, None]
    f = freqs[labels][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    u = xx[None] * np.cos(a) + yy[None] * np.sin(a)
    grating = np.sin(np.pi * f * u + phase)
    # A class-specific blob position adds a second cue that a small network can use.
    bx = np.cos(angles[labels] * 2)[:, None, None] * 0.5
    by = np.sin(angles[labels] * 2)[:, None, None] * 0.5
    blob = np.exp(-((xx[None] - bx) ** 2 + (yy[None] - by) ** 2) / 0.08)
    lum = 0.6 * grating + 0.8 * blob
    img = lum[:, None] * colors[labels][:, :, None, None]
    return img.astype(np.float32)


def make_dataset(n: int, seed: int, hard_fraction: float = 0.5) -> Dataset:
    """Make ``n`` labelled images; a fraction ``hard_fraction`` of them are hard."""
    if n <= 0:
        raise ValueError(f"dataset size must be positive, got {n}")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, n)
    hard = rng.random(n) < hard_fraction
    other = (y + rng.integers(1, NUM_CLASSES, n)) % NUM_CLASSES
    base = _render(y, rng)
    distractor = _render(other, rng)
    # Easy: pure class, light noise. Hard: 30-48 % of a second class mixed in, heavy noise.
    mix = np.where(hard, rng.uniform(0.3, 0.48, n), rng.uniform(0.0, 0.1, n)).astype(np.float32)
    noise = np.where(hard, rng.uniform(0.5, 0.9, n), rng.uniform(0.05, 0.2, n)).astype(np.float32)
    m = mix[:, None, None, None]
    x = (1 - m) * base + m * distractor
    x = x + noise[:, None, None, None] * rng.standard_normal(x.shape, dtype=np.float32)
    x = (x - x.mean()) / (x.std() + 1e-6)
    return Dataset(x.astype(np.float32), y.astype(np.int64), hard, f"{DATASET_VERSION}-s{seed}")


def train_split(n: int = 6000) -> Dataset:
    return make_dataset(n, TRAIN_SEED)


def eval_split(n: int = 512) -> Dataset:
    """The evaluation split every suite uses (disjoint seed from training)."""
    return make_dataset(n, EVAL_SEED)


def _normalize_uint8_nhwc(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    x = (x - CIFAR_MEAN) / CIFAR_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 python batch holds and nothing else.

    A batch is a dict of str/bytes keys, lists of ints and strings, and one uint8 numpy array.
    Besides the built-in containers (which need no lookup) the only names such a pickle asks for
    are numpy's array reconstruction (``numpy.core.multiarray._reconstruct`` in the official Python 2
    batches, ``numpy._core.multiarray._reconstruct`` when re-pickled with numpy 2), ``numpy.ndarray``,
    ``numpy.dtype`` and, in a protocol-2 pickle written by Python 3, ``_codecs.encode(text,
    'latin1')`` for bytes. Any other name (``os.system``, ``builtins.eval``, ...) is refused before
    anything is called, so a planted batch file cannot run code.
    """

    def find_class(self, module: str, name: str) -> object:
        allowed = _BATCH_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which a CIFAR-10 batch never contains; "
                "refusing to load it (exitgate reads CIFAR-10 batches without running code)"
            )
        return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` restricted to what pickle protocol 2 uses for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1, np.uint8))[0]  # numpy's, wherever it lives
_BATCH_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


def _read_batch(f: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as uint8 NHWC images and int64 labels; DataError names the file."""
    try:
        with open(f, "rb") as fh:
            d = _BatchUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure: a bad or hostile file
        raise DataError(f"{f}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(d, dict):
        raise DataError(f"{f}: not a CIFAR-10 python batch (a {type(d).__name__}, not a dict)")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or (data.shape[1] != 3 * 32 * 32)
    ):
        raise DataError(
            f"{f}: not a CIFAR-10 python batch: 'data' must be a uint8 array of shape (N, 3072), "
            f"got {getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    if (
        not isinstance(labels, list)
        or len(labels) != data.shape[0]
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < NUM_CLASSES for v in labels
        )
    ):
        raise DataError(
            f"{f}: not a CIFAR-10 python batch: 'labels' must be a list of {data.shape[0]} "
            f"integers in 0..{NUM_CLASSES - 1}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, np.int64)


def load_cifar10(root: str | os.PathLike[str], split: str = "test") -> Dataset:
    """Load the real CIFAR-10 python batches (``cifar-10-batches-py``) from a local folder.

    The batches are pickles; they are read with a restricted unpickler that admits only the
    containers and numpy arrays a batch holds (:class:`_BatchUnpickler`), never arbitrary code.
    """
    root = Path(root)
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    xs, ys = [], []
    for name in names:
        f = root / name
        if not f.is_file():
            raise DataError(
                f"{f}: missing. Expected the extracted 'cifar-10-batches-py' folder "
                "(files data_batch_1..5, test_batch) from https://www.cs.toronto.edu/~kriz/cifar.html"
            )
        x, y = _read_batch(f)
        xs.append(x)
        ys.append(y)
    x = _normalize_uint8_nhwc(np.concatenate(xs))
    y = np.concatenate(ys)
    return Dataset(x, y, np.zeros(len(y), bool), f"cifar10-{split}")


def load_images(path: str | os.PathLike[str]) -> Dataset:
    """Load user images: a CIFAR-10 batch folder, or a ``.npy`` of NCHW or NHWC images.

    uint8 arrays are scaled like CIFAR-10; float arrays are taken as already normalised. Labels are
    unknown for ``.npy`` (set to -1).
    """
    p = Path(path)
    if p.is_dir():
        return load_cifar10(p, "test")
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.suffix != ".npy":
        raise DataError(f"{p}: expected a .npy file or a cifar-10-batches-py folder")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{p}: not a readable .npy file ({exc})") from exc
    if arr.ndim != 4:
        raise DataError(
            f"{p}: expected 4-D images (N,3,32,32) or (N,32,32,3), got shape {arr.shape}"
        )
    if arr.shape[1:] == (3, 32, 32):
        nchw = arr
    elif arr.shape[1:] == (32, 32, 3):
        nchw = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"{p}: expected images of shape (N,3,32,32) or (N,32,32,3), got {arr.shape}"
        )
    if arr.dtype == np.uint8:
        x = _normalize_uint8_nhwc(nchw.transpose(0, 2, 3, 1))
    elif np.issubdtype(arr.dtype, np.floating):
        x = np.ascontiguousarray(nchw, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{p}: contains NaN or infinite values")
    else:
        raise DataError(f"{p}: dtype {arr.dtype} is not supported (use uint8 or float32)")
    return Dataset(x, np.full(len(x), -1, np.int64), np.zeros(len(x), bool), f"npy:{p.name}")
