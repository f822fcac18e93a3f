"""Batched shared-kernel products equal the expanded matrices, exactly, in every dtype."""
import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.compile.matrices import conv2d_matrix
from nmc_deploy.loihi import products
from nmc_deploy.loihi.products import conv_product, exact_dtype, token_product


def _random_conv(rng):
    """A convolution with random groups (depthwise sometimes), kernel, stride, padding and
    dilation; None if its output is empty."""
    groups = int(rng.choice([1, 2, 3]))
    cig, cpo = (1, 1) if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    H, W = (int(v) for v in rng.integers(3, 9, 2))
    stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    pad = tuple(int(v) for v in rng.integers(0, 3, 2))
    dil = tuple(int(v) for v in rng.integers(1, 3, 2))
    if any(H_ + 2 * p - d * (k - 1) - 1 < 0 for H_, p, d, k in
           ((H, pad[0], dil[0], kh), (W, pad[1], dil[1], kw))):
        return None
    k = rng.integers(-256, 256, (groups * cpo, cig, kh, kw))
    k[rng.random(k.shape) < 0.3] = 0
    return k, (cig * groups, H, W), stride, pad, dil, groups


@pytest.mark.parametrize("rows_last", [0, 10 ** 6])  # both im2col layouts
@pytest.mark.parametrize("seed", range(60))
def test_conv_product_equals_expanded_matrix(seed, rows_last, monkeypatch):
    monkeypatch.setattr(products, "ROWS_LAST_POSITIONS", rows_last)
    rng = np.random.default_rng(seed)
    case = _random_conv(rng)
    if case is None:
        pytest.skip("empty output")
    k, in_shape, stride, pad, dil, groups = case
    m = conv2d_matrix(k.astype(float), in_shape[1:], stride, pad, dil, groups)
    x = rng.integers(0, 3, (7, int(np.prod(in_shape))))
    if seed % 3 == 0:
        x = x.astype(bool)  # spikes
    expected = np.asarray(m @ x.T.astype(float)).T
    for dtype in (np.float32, np.float64, np.int64):
        y = conv_product(k, x, in_shape, stride=stride, padding=pad, dilation=dil,
                         groups=groups, dtype=dtype)
        assert y.dtype == dtype and y.shape[0] == 7
        assert np.array_equal(y.reshape(7, -1), expected), dtype


@pytest.mark.parametrize("rows_last", [0, 10 ** 6])
def test_conv_product_in_chunks_equals_one_chunk(rng, monkeypatch, rows_last):
    monkeypatch.setattr(products, "ROWS_LAST_POSITIONS", rows_last)
    k = rng.integers(-9, 9, (6, 4, 3, 3))
    x = rng.random((13, 4 * 5 * 5)) < 0.4
    whole = conv_product(k, x, (4, 5, 5), padding=(1, 1), dtype=np.float32)
    monkeypatch.setattr(products, "IM2COL_BYTES", 1)  # one row per chunk
    assert np.array_equal(conv_product(k, x, (4, 5, 5), padding=(1, 1), dtype=np.float32),
                          whole)


@pytest.mark.parametrize("c_out,c_in,density", [(5, 4, 0.5), (3, 7, 1.0), (130, 128, 0.3),
                                                 (40, 50, 0.02)])
def test_token_product_equals_kron(rng, c_out, c_in, density):
    # small dense (a product per row), large dense (one product), sparse kernels
    n, rows = 6, 9
    k = sp.random(c_out, c_in, density, random_state=int(rng.integers(1000)), format="csr")
    k.data = np.round(k.data * 500 - 250)
    k.eliminate_zeros()
    x = rng.integers(0, 4, (rows, c_in * n))
    expected = (sp.kron(k, sp.identity(n), format="csr") @ x.T).T
    for dtype in (np.float32, np.float64, np.int64):
        for kernel in (k.toarray().astype(dtype), k):
            y = token_product(kernel, x, n, dtype)
            assert y.shape == (rows, c_out, n) and y.dtype == dtype
            assert np.array_equal(y.reshape(rows, -1), expected)


def test_exact_dtype_switches_where_float32_would_round():
    assert exact_dtype(2 ** 24 - 1) == np.float32
    assert exact_dtype(2 ** 24) == np.float64
    assert exact_dtype(2 ** 53) == np.int64
    # a sum of 2**24 + 1 is not representable in float32; the float64 the bound asks for is
    k = np.array([[2 ** 12, 2 ** 12, 1]])
    x = np.array([[2 ** 11, 2 ** 11, 1]])
    bound = float(np.abs(k).sum() * x.max())
    y = token_product(k.astype(exact_dtype(bound)), x, 1, exact_dtype(bound))
    assert int(y[0, 0, 0]) == 2 ** 24 + 1
    assert int(token_product(k.astype(np.float32), x, 1, np.float32)[0, 0, 0]) != 2 ** 24 + 1


@pytest.mark.parametrize("value", [1, 3, -2])
@pytest.mark.parametrize("seed", range(6))
def test_constant_depthwise_kernel_on_spikes_counts_taps(seed, value):
    # the compiler's pools: one weight value everywhere, spikes in; counted in bytes
    rng = np.random.default_rng(seed)
    c, H, W = int(rng.integers(1, 5)), int(rng.integers(3, 9)), int(rng.integers(3, 9))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    pad = tuple(int(v) for v in rng.integers(0, 2, 2))
    k = np.full((c, 1, kh, kw), value)
    m = conv2d_matrix(k.astype(float), (H, W), stride, pad, (1, 1), c)
    x = rng.random((5, c * H * W)) < 0.5
    expected = np.asarray(m @ x.T.astype(float)).T
    for dtype in (np.float32, np.float64, np.int64):
        y = conv_product(k, x, (c, H, W), stride=stride, padding=pad, groups=c, dtype=dtype)
        assert y.dtype == dtype
        assert np.array_equal(y.reshape(5, -1), expected), dtype
