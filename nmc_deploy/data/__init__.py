"""Image data sets as integer arrays (numpy only; no torch here).

Every loader returns an :class:`ImageDataset` whose images are non-negative integers in
``0..levels``. The float model sees ``x / levels``; the fixed-point program receives the
integers themselves as graded spikes, so float, fixed-point and Lava runs all start from
the same numbers (deployment decision 4 in docs/architecture.md).

New loaders register with :func:`register_dataset` and are then reachable by name from
the CLI (``--dataset NAME [--data-path PATH]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DatasetError

__all__ = ["ImageDataset", "load_dataset", "register_dataset", "dataset_names"]


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image data set with a fixed train/test split.

    Images are integer arrays of shape ``(n, channels, height, width)`` holding
    ``0..levels``; labels are ``int64`` class indices.
    """

    name: str
    x_train: np.ndarray  # (n_train, C, H, W) integers in 0..levels
    y_train: np.ndarray  # (n_train,) int64
    x_test: np.ndarray  # (n_test, C, H, W) integers in 0..levels
    y_test: np.ndarray  # (n_test,) int64
    levels: int  # largest intensity; the float model sees x / levels
    num_classes: int

    def __post_init__(self):
        for arr in (self.x_train, self.y_train, self.x_test, self.y_test):
            arr.setflags(write=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    def test_subset(self, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` test samples (all when ``n`` is None)."""
        if n is None:
            return self.x_test, self.y_test
        return self.x_test[:n], self.y_test[:n]


_LOADERS: dict[str, Callable[[Path | None], ImageDataset]] = {}


def register_dataset(name: str):
    """Decorator: register ``loader(path) -> ImageDataset`` under ``name``."""

    def deco(fn):
        _LOADERS[name] = fn
        return fn

    return deco


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, path: str | Path | None = None) -> ImageDataset:
    """Load a registered data set by name (``path`` for loaders that read user files)."""
    if name not in _LOADERS:
        raise DatasetError(
            f"dataset '{name}': unknown; choose one of {', '.join(dataset_names())}"
        )
    return _LOADERS[name](Path(path) if path is not None else None)


@register_dataset("digits")
def load_digits(path: Path | None = None) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, intensities 0..16).

    Split: stratified, 80 % train / 20 % test (360 images), ``random_state=0``; fixed, so
    every stage and every run sees the same test images.
    """
    from sklearn.datasets import load_digits as _sk_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_digits()
    x = bunch.images.astype(np.int64).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return ImageDataset("digits", x_tr, y_tr, x_te, y_te, levels=16, num_classes=10)


# Loaders of user-supplied files, one module each; importing them registers them. They sit
# at the end because they import ImageDataset and register_dataset from this module.
from .cifar10 import load_cifar10  # noqa: E402
from .mnist import load_mnist  # noqa: E402

__all__ += ["load_mnist", "load_cifar10"]
