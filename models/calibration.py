"""Calibration images for INT8: where they come from, how they are checked, batched and hashed.

``calibration_images()`` draws a seeded subset of the project's own train split (never the eval
split, so calibration does not see the images the suites score). ``calibration_images(source)``
loads a user's CIFAR-10 batch folder or ``.npy`` instead (``models.dataset.load_images``). Either way
the result is checked to be float32 NCHW ``(N, 3, 32, 32)``, finite and non-empty; anything else is a
``DataError`` naming the file. ``iter_batches`` feeds a TensorRT entropy calibrator (fixed batch size)
and ``calibration_hash`` keys caches by the calibration set's content.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import numpy as np

from .dataset import IMAGE_SHAPE, DataError, load_images, train_split

__all__ = [
    "DEFAULT_SEED",
    "DataError",
    "calibration_hash",
    "calibration_images",
    "iter_batches",
    "validate_images",
]

DEFAULT_SEED = 0


def validate_images(
    images: object, origin: str, shape: tuple[int, ...] = IMAGE_SHAPE
) -> np.ndarray:
    """Return ``images`` if it is a float32 ``(N, *shape)`` array of finite values, else DataError.

    ``origin`` names where the images came from (a file, or "calibration array") in the message.
    """
    if not isinstance(images, np.ndarray):
        raise DataError(f"{origin}: expected a numpy array of images, got {type(images).__name__}")
    want = "(N," + ",".join(str(d) for d in shape) + ")"
    if images.ndim != 1 + len(shape) or tuple(images.shape[1:]) != tuple(shape):
        raise DataError(
            f"{origin}: calibration images must have shape {want} (float32 NCHW), "
            f"got {tuple(images.shape)}"
        )
    if images.dtype != np.float32:
        raise DataError(
            f"{origin}: calibration images must be float32 (normalised like the evaluation data), "
            f"got {images.dtype}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{origin}: no calibration images (N = 0)")
    if not np.isfinite(images).all():
        raise DataError(f"{origin}: calibration images contain NaN or infinite values")
    return images


def calibration_images(
    source: str | os.PathLike[str] | None = None, n: int = 256, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """``n`` calibration images, float32 NCHW: a seeded subset of ``source`` or of the train split.

    With fewer than ``n`` images in ``source`` all of them are used. The subset keeps the source's
    order, so the same ``(source, n, seed)`` always gives the same array (and the same hash).
    """
    if n <= 0:
        raise ValueError(f"number of calibration images must be positive, got {n}")
    if source is None:
        x, origin = train_split().x, "train split"
    else:
        x, origin = load_images(source).x, os.fspath(source)
    x = validate_images(x, origin)
    if x.shape[0] > n:
        idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], n, replace=False))
        x = x[idx]
    return np.ascontiguousarray(x)


def iter_batches(
    images: np.ndarray, batch_size: int, drop_last: bool = True
) -> Iterator[np.ndarray]:
    """Contiguous float32 batches of ``batch_size`` images, in order.

    A TensorRT calibrator declares one batch size, so by default a short final batch is dropped;
    ``drop_last=False`` yields it too.
    """
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    images = validate_images(images, "calibration array", tuple(images.shape[1:]))
    stop = images.shape[0] - images.shape[0] % batch_size if drop_last else images.shape[0]
    for start in range(0, stop, batch_size):
        yield np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)


def calibration_hash(images: np.ndarray) -> str:
    """SHA-256 of the calibration set's dtype, shape and bytes (stable across runs and machines)."""
    arr = np.ascontiguousarray(images)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()
