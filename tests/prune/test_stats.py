"""Intervals and paired tests of nmc_deploy.prune.stats against scipy and by construction."""
import math

import numpy as np
import pytest
from scipy import stats as sst

from nmc_deploy.prune.stats import mean_interval, paired_difference, recovered_fraction


def test_uncorrected_interval_is_scipys_t_interval(rng):
    v = rng.normal(0.9, 0.02, size=10)
    iv = mean_interval(v)
    lo, hi = sst.t.interval(0.95, 9, loc=v.mean(), scale=sst.sem(v))
    assert iv.n == 10 and iv.mean == pytest.approx(v.mean())
    assert (iv.low, iv.high) == pytest.approx((lo, hi))


def test_paired_difference_is_scipys_paired_t_test_without_correction(rng):
    a, b = rng.normal(0.9, 0.02, 10), rng.normal(0.88, 0.02, 10)
    iv = paired_difference(a, b)
    assert iv.p_t == pytest.approx(sst.ttest_rel(a, b).pvalue)
    assert iv.p_wilcoxon == pytest.approx(sst.wilcoxon(a - b).pvalue)


def test_correction_widens_by_the_nadeau_bengio_factor(rng):
    v = rng.normal(0.0, 1.0, 10)
    plain, corr = mean_interval(v), mean_interval(v, test_train_ratio=0.25)
    factor = math.sqrt((1 / 10 + 0.25) / (1 / 10))
    assert corr.high - corr.low == pytest.approx(factor * (plain.high - plain.low))
    assert corr.mean == plain.mean
    d = paired_difference(v + 1.0, np.ones(10), test_train_ratio=0.25)
    assert d.p_t > paired_difference(v + 1.0, np.ones(10)).p_t


def test_degenerate_cases():
    same = paired_difference([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert same.mean == 0 and same.p_t == 1.0 and same.p_wilcoxon is None
    assert math.isnan(mean_interval([0.5]).low)
    assert math.isnan(paired_difference([2.0, 2.0], [1.0, 1.0]).p_t)  # no spread
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        mean_interval([1.0, float("nan")])


def test_recovered_fraction_by_construction(rng):
    dense = 0.98 + rng.normal(0, 0.003, 10)
    plain = dense - 0.08
    half = dense - 0.04  # recovers exactly half of every replicate's loss
    iv = recovered_fraction(dense, plain, half, resamples=2000)
    assert iv.mean == pytest.approx(0.5)
    assert iv.low == pytest.approx(0.5) and iv.high == pytest.approx(0.5) and iv.dropped == 0
    tiny = recovered_fraction(dense, dense - 0.001 + rng.normal(0, 0.01, 10), half,
                              resamples=2000)  # the loss is within noise: resamples dropped
    assert tiny.dropped > 100 and math.isnan(tiny.low)
    noisy = recovered_fraction(dense, plain, half + rng.normal(0, 0.01, 10), resamples=2000)
    assert noisy.low < noisy.mean < noisy.high
    assert recovered_fraction(dense, plain, half, seed=1, resamples=2000) == \
        recovered_fraction(dense, plain, half, seed=1, resamples=2000)
    assert math.isnan(recovered_fraction(plain, dense, half).mean)  # no loss: undefined
