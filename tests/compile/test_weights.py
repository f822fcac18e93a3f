"""Lava's weight grid: quantized weights are final (Lava's clip/truncate is a no-op)."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from nmc_deploy.compile.weights import quantize_weights
from nmc_deploy.loihi.synapses import lava_effective_weights


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from(["mixed", "exc", "inh"]),
       st.floats(1e-3, 1e4))
def test_quantized_weights_sit_on_lavas_grid(seed, sign, scale):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(7, 9)) * scale * (rng.random((7, 9)) < 0.6)
    if sign == "exc":
        dense = np.abs(dense)
    elif sign == "inh":
        dense = -np.abs(dense)
    q = quantize_weights(sp.csr_matrix(dense))
    w = q.weights.toarray()
    assert np.array_equal(lava_effective_weights(w), w)  # Lava's clip/truncate is a no-op
    step = 2 ** q.weight_exp * (2 if (dense.min() < 0 < dense.max()) else 1)
    err = np.abs(w * 2.0 ** q.weight_exp - dense)
    if q.clipped == 0 and -8 < q.weight_exp < 7:
        assert err.max() <= step / 2 + 1e-9 * scale
    assert np.all(w[dense == 0] == 0)  # no synapse is created where there was none


def test_clamped_exponent_keeps_weights_on_lavas_grid():
    # review B2: R = [-40000, 100] clamps the exponent at 7; the positive weight rounds to 0
    # and Lava would see an inhibitory matrix (-256 -> -255). Stored weights must be final.
    q = quantize_weights(sp.csr_matrix(np.array([[-40000.0, 100.0]])))
    w = q.weights.toarray()
    assert q.weight_exp == 7
    assert np.array_equal(lava_effective_weights(w), w)


def test_weight_bits_above_8_are_rejected():
    from nmc_deploy.errors import LoweringError

    with pytest.raises(LoweringError, match="weight_bits \\(9\\) exceeds 8"):
        quantize_weights(sp.csr_matrix(np.ones((2, 2))), weight_bits=9)
