"""Repeated stratified k-fold: a partition, stratified, deterministic, replicate by replicate."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmc_deploy.data import ImageDataset
from nmc_deploy.data.splits import fold_dataset, pooled, stratified_folds
from nmc_deploy.errors import DatasetError


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 7), st.integers(0, 10_000), st.lists(st.integers(7, 30), min_size=2,
                                                           max_size=6))
def test_folds_partition_the_pool_and_are_stratified(k, seed, per_class):
    y = np.repeat(np.arange(len(per_class)), per_class)
    np.random.default_rng(seed).shuffle(y)
    folds = stratified_folds(y, k, seed)
    assert len(folds) == k
    together = np.sort(np.concatenate(folds))
    assert np.array_equal(together, np.arange(len(y)))  # every image in exactly one fold
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for c, n in enumerate(per_class):  # each class split as evenly as possible
        counts = [int((y[f] == c).sum()) for f in folds]
        assert max(counts) - min(counts) <= 1 and sum(counts) == n
    again = stratified_folds(y, k, seed)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))


def test_other_seeds_deal_other_folds(digits):
    _, y = pooled(digits)
    a, b = stratified_folds(y, 5, 0), stratified_folds(y, 5, 1)
    assert not np.array_equal(a[0], b[0])


def test_fold_dataset_tests_on_the_fold_and_trains_on_the_rest(digits):
    x, y = pooled(digits)
    assert len(y) == 1797
    seen = []
    for fold in range(5):
        d = fold_dataset(digits, 5, fold, seed=3)
        assert len(d.y_test) + len(d.y_train) == 1797
        assert d.levels == digits.levels and d.num_classes == 10
        assert "fold" in d.name and "seed 3" in d.name
        train = set(map(bytes, d.x_train.reshape(len(d.y_train), -1)))
        test = set(map(bytes, d.x_test.reshape(len(d.y_test), -1)))
        assert not train & test  # the 1,797 digits images are distinct
        seen.append(d.x_test.reshape(len(d.y_test), -1))
    # every image is tested once over the five folds
    rows = np.concatenate(seen)
    assert len(rows) == 1797
    assert sorted(map(bytes, rows.astype(np.int64))) == sorted(map(bytes, x.reshape(1797, -1)))


def test_bad_fold_arguments_are_one_line_errors():
    y = np.repeat(np.arange(3), 4)
    with pytest.raises(DatasetError, match="k"):
        stratified_folds(y, 1, 0)
    with pytest.raises(DatasetError, match="fewer than k"):
        stratified_folds(y, 5, 0)
    ds = ImageDataset("t", np.zeros((8, 1, 2, 2), np.int64), np.arange(8) % 2,
                      np.zeros((4, 1, 2, 2), np.int64), np.arange(4) % 2, levels=1,
                      num_classes=2)
    with pytest.raises(DatasetError, match="fold"):
        fold_dataset(ds, 2, 2, 0)
