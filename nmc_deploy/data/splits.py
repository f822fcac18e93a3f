"""Repeated stratified k-fold splits of a data set (numpy only).

A data set's train and test splits are pooled (digits: all 1,797 images) and dealt into
``k`` folds class by class, so that every fold holds each class's images in proportion
(fold sizes of one class differ by at most one image). Replicate ``(repeat, fold)`` tests
on fold ``fold`` of repeat ``repeat`` and trains on the other ``k - 1`` folds; over one
repeat every image is tested exactly once. The deal depends only on the labels, ``k`` and
the seed, so a replicate is the same on every machine and in every run.
"""
from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from . import ImageDataset

__all__ = ["pooled", "stratified_folds", "fold_dataset"]


def pooled(dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: the training split followed by the test split."""
    return (np.concatenate([dataset.x_train, dataset.x_test]),
            np.concatenate([dataset.y_train, dataset.y_test]))


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Test indices of each of ``k`` folds, stratified by label (sorted within a fold).

    Per class (in label order) the class's indices are shuffled with
    ``numpy.random.default_rng(seed)`` and dealt round-robin, starting at the fold after the
    one the previous class ended on, so that folds differ in size by at most one image.

    Raises
    ------
    DatasetError
        If ``k`` is below 2 or a class has fewer than ``k`` images.
    """
    y = np.asarray(labels)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise DatasetError(f"stratified_folds: k ({k!r}) must be an integer >= 2")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < k:
        c = classes[int(np.argmin(counts))]
        raise DatasetError(f"stratified_folds: class {c} has {counts.min()} images, fewer "
                           f"than k ({k}); lower k")
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    start = 0
    for c in classes:
        members = rng.permutation(np.flatnonzero(y == c))
        for j, index in enumerate(members):
            folds[(start + j) % k].append(int(index))
        start = (start + len(members)) % k
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]


def fold_dataset(dataset: ImageDataset, k: int, fold: int, seed: int) -> ImageDataset:
    """The replicate that tests on fold ``fold`` of ``stratified_folds(pooled y, k, seed)``.

    Training images are the other folds' in pooled order; test images the fold's. The
    name records the replicate: ``"<name> fold <fold>/<k> seed <seed>"``.
    """
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < k:
        raise DatasetError(f"fold_dataset: fold ({fold!r}) must be in 0..{k - 1}")
    x, y = pooled(dataset)
    test = stratified_folds(y, k, seed)[fold]
    train = np.setdiff1d(np.arange(len(y)), test, assume_unique=True)
    return ImageDataset(f"{dataset.name} fold {fold}/{k} seed {seed}", x[train], y[train],
                        x[test], y[test], levels=dataset.levels,
                        num_classes=dataset.num_classes)
