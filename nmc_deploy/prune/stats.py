"""Intervals and paired tests for results of repeated k-fold replicates (numpy and scipy).

Replicates of repeated k-fold cross-validation are not independent: any two train on
largely the same images. Their plain t-interval is too narrow, so intervals and tests here
use the corrected resampled t statistic of Nadeau & Bengio (2003, "Inference for the
generalization error", Machine Learning 52: 239-281), which inflates the variance of the
mean of ``n`` replicate values by ``(1/n + n_test/n_train) / (1/n)``::

    t = mean(d) / sqrt((1/n + n_test/n_train) * var(d)),   n - 1 degrees of freedom

with ``d`` the per-replicate values (or paired differences). ``n_test/n_train = 0`` gives
the ordinary (independent replicates) t-interval. Beside it, the exact Wilcoxon
signed-rank test makes no normality assumption (it is not corrected for the overlap; scipy
computes it exactly without ties or zero differences, else by the normal approximation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

__all__ = ["Interval", "mean_interval", "paired_difference", "recovered_fraction"]


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval and (paired) test p-values.

    ``p_t`` tests mean 0 with the corrected t statistic; ``p_wilcoxon`` is the signed-rank
    test of median 0 (None for fewer than 2 nonzero values or not a paired difference).
    """

    n: int  # replicates
    mean: float
    low: float
    high: float
    confidence: float  # e.g. 0.95
    p_t: float | None = None
    p_wilcoxon: float | None = None
    dropped: int | None = None  # bootstrap resamples without a defined value

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _corrected_t(values: np.ndarray, test_train_ratio: float, confidence: float
                 ) -> tuple[float, float, float, float]:
    """``(mean, low, high, p)`` of the corrected resampled t-interval and test of mean 0."""
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    var = float(values.var(ddof=1))
    se = math.sqrt((1.0 / n + test_train_ratio) * var)
    if se == 0.0:  # every value equal: no spread to test against (undefined unless all 0)
        return mean, mean, mean, (1.0 if mean == 0.0 else math.nan)
    q = float(_stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    p = float(2.0 * _stats.t.sf(abs(mean) / se, n - 1))
    return mean, mean - q * se, mean + q * se, p


def _check(values, test_train_ratio: float, confidence: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError("interval: values must be finite")
    if not 0.0 < confidence < 1.0 or test_train_ratio < 0.0:
        raise ValueError("interval: confidence must be in (0, 1), test_train_ratio >= 0")
    return v


def mean_interval(values, test_train_ratio: float = 0.0, confidence: float = 0.95
                  ) -> Interval:
    """Mean of replicate values with the corrected t confidence interval."""
    v = _check(values, test_train_ratio, confidence)
    mean, low, high, _ = _corrected_t(v, test_train_ratio, confidence)
    return Interval(len(v), mean, low, high, confidence)


def paired_difference(a, b, test_train_ratio: float = 0.0, confidence: float = 0.95
                      ) -> Interval:
    """``a - b`` per replicate: mean, corrected t interval, corrected t and Wilcoxon p."""
    a = _check(a, test_train_ratio, confidence)
    b = _check(b, test_train_ratio, confidence)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.shape} and {b.shape} replicates differ")
    d = a - b
    mean, low, high, p = _corrected_t(d, test_train_ratio, confidence)
    p_w = None
    if np.count_nonzero(d) >= 2:
        p_w = float(_stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return Interval(len(d), mean, low, high, confidence, p_t=p, p_wilcoxon=p_w)


def recovered_fraction(dense, plain, compensated, confidence: float = 0.95,
                       resamples: int = 10_000, seed: int = 0) -> Interval:
    """Fraction of the pruning loss a compensation recovers, with a bootstrap interval.

    ``(mean(compensated) - mean(plain)) / (mean(dense) - mean(plain))`` over paired
    replicates; the interval is the percentile interval of that ratio over ``resamples``
    resamplings of the replicates with replacement (seeded), which treats replicates as
    independent: unlike the t intervals it is *not* corrected for overlapping training
    sets, so it is too narrow for k-fold replicates. Resamples whose loss is not positive
    are dropped (their ratio is undefined) and counted in ``dropped``; the interval is NaN
    when the loss itself is not positive or more than 5 % of the resamples are dropped.
    """
    d, p, c = (_check(v, 0.0, confidence) for v in (dense, plain, compensated))
    if not d.shape == p.shape == c.shape:
        raise ValueError("recovered_fraction: replicate counts differ")
    loss = d.mean() - p.mean()
    if loss <= 0.0:
        return Interval(len(d), math.nan, math.nan, math.nan, confidence)
    point = float((c.mean() - p.mean()) / loss)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(resamples, len(d)))
    losses = d[idx].mean(1) - p[idx].mean(1)
    gains = c[idx].mean(1) - p[idx].mean(1)
    ok = losses > 0.0
    dropped = int(resamples - ok.sum())
    alpha = (1.0 - confidence) / 2.0
    low = high = math.nan
    if dropped <= 0.05 * resamples:
        low, high = np.quantile(gains[ok] / losses[ok], [alpha, 1.0 - alpha])
    return Interval(len(d), point, float(low), float(high), confidence, dropped=dropped)
