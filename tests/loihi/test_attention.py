"""attention_counts against its definition, head by head in int64: C_h = (Q_h K_h^T) V_h on
the (dim, N) layout, and the accumulate count sum(Q K^T) + sum([A != 0] V)."""
import numpy as np
import pytest

from nmc_deploy.loihi.attention import attention_counts


@pytest.mark.parametrize("seed", range(6))
def test_attention_counts_equal_int64_definition(seed):
    rng = np.random.default_rng(seed)
    heads, d, N, rows = int(rng.integers(1, 4)), int(rng.integers(1, 6)), \
        int(rng.integers(2, 9)), int(rng.integers(1, 5))
    dim = heads * d
    q, k, v = (rng.random((rows, dim * N)) < rng.uniform(0.1, 0.9) for _ in range(3))
    C, ops = attention_counts(q, k, v, heads, dim, N)
    assert C.dtype == np.int64 and C.shape == (rows, dim * N) and ops.dtype == np.int64
    for r in range(rows):
        Q, K, V = (x[r].reshape(heads, d, N).astype(np.int64) for x in (q, k, v))
        want_ops = 0
        for h in range(heads):
            A = Q[h].T @ K[h]  # (N, N)
            want = (A @ V[h].T).T  # (d, N)
            assert np.array_equal(C[r].reshape(heads, d, N)[h], want)
            want_ops += A.sum() + ((A != 0).sum(axis=0) * V[h].sum(axis=0)).sum()
        assert ops[r] == want_ops
