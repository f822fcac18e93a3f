"""Shared weights equal their expanded matrices: products, counts, fan-outs, rows, scaling."""
import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.compile.matrices import conv2d_matrix
from nmc_deploy.program.shared_weights import (ConvShared, TokenShared, add_weights, as_csr,
                                               compose, scale_rows, source_fanout,
                                               stored_values, usage_counts)


def _random_conv(rng):
    groups = int(rng.choice([1, 2]))
    cig, co = int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    H, W = (int(v) for v in rng.integers(4, 8, 2))
    stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    pad = tuple(int(v) for v in rng.integers(0, 2, 2))
    dil = tuple(int(v) for v in rng.integers(1, 3, 2))
    k = rng.integers(-3, 4, (co, cig, kh, kw)).astype(np.float64)
    return ConvShared(k, (cig * groups, H, W), stride, pad, dil, groups), \
        conv2d_matrix(k, (H, W), stride, pad, dil, groups)


@pytest.mark.parametrize("seed", range(25))
def test_conv_shared_equals_its_expanded_matrix(seed):
    rng = np.random.default_rng(seed)
    c, m = _random_conv(rng)
    if min(c.out_hw) <= 0:
        pytest.skip("empty output")
    assert c.shape == m.shape and c.nnz == m.nnz and usage_counts(c).sum() == m.nnz
    assert (abs(c.tocsr() - m)).sum() == 0
    x = rng.integers(0, 4, (m.shape[1], 6))
    ci = c.with_values(stored_values(c).astype(np.int32))
    assert np.array_equal(ci @ x, np.asarray(m @ x).astype(np.int64))  # exact integers
    assert np.allclose(c @ x[:, 0].astype(float), m @ x[:, 0])
    assert np.array_equal(source_fanout(c), np.diff(m.tocsc().indptr))
    a, b = sorted(int(v) for v in rng.integers(0, m.shape[0] + 1, 2))
    if b > a:
        assert abs(c.rows_csr(a, b) - m[a:b]).sum() == 0
    r = np.repeat(rng.random(c.kernel.shape[0]), m.shape[0] // c.kernel.shape[0])
    assert np.allclose(scale_rows(c, r).toarray(), (sp.diags(r) @ m).toarray())
    assert isinstance(scale_rows(c, r), ConvShared)
    r_tok = rng.random(m.shape[0])  # not constant per channel: expands, still exact
    assert np.allclose(as_csr(scale_rows(c, r_tok)).toarray(), (sp.diags(r_tok) @ m).toarray())


@pytest.mark.parametrize("seed", range(10))
def test_token_shared_equals_kron(seed):
    rng = np.random.default_rng(seed)
    k = sp.random(5, 4, 0.5, random_state=seed, format="csr")
    t = TokenShared(k, 6)
    m = sp.kron(k, sp.identity(6), format="csr")
    assert t.nnz == m.nnz and t.stored == k.nnz
    x = rng.integers(0, 3, (24, 7))
    ti = t.with_values(np.round(stored_values(t) * 100).astype(np.int32))
    assert np.array_equal(ti @ x, ti.tocsr() @ x)
    assert np.array_equal(source_fanout(t), np.diff(m.tocsc().indptr))
    assert abs(t.rows_csr(5, 23) - m[5:23]).sum() == 0
    t2 = TokenShared(sp.random(3, 5, 0.6, random_state=seed + 50, format="csr"), 6)
    prod = compose(t2, t)
    assert isinstance(prod, TokenShared)
    assert np.allclose(prod.toarray(), (t2.tocsr() @ m).toarray())
    assert isinstance(compose(t, sp.identity(24, format="csr") * 2.0), TokenShared)
    assert isinstance(add_weights(t, t), TokenShared)
    assert np.allclose(add_weights(t, m).toarray(), 2 * m.toarray())  # mixed: expands


def test_compose_with_an_identity_keeps_the_matrix():
    """``a @ I`` and ``I @ a`` are ``a`` itself (its arrays, not a copy): a head composed onto
    the identity terms of a residual stream stays one matrix."""
    from nmc_deploy.program.shared_weights import compose

    rng = np.random.default_rng(0)
    a = sp.random(5, 7, density=0.5, random_state=rng, format="csr")
    right = compose(a, sp.identity(7, format="csr"))
    left = compose(sp.identity(5, format="csr"), a)
    assert np.shares_memory(right.data, a.data) and np.shares_memory(left.data, a.data)
    scaled = compose(a, sp.identity(7, format="csr") * 2.0)  # not an identity: a product
    assert not np.shares_memory(scaled.data, a.data) and np.allclose(scaled.toarray(), 2 * a.toarray())
