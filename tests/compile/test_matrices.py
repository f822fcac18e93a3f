"""Dense matrices of the linear nodes: exact against torch; pruned weights stay absent."""
import numpy as np
import pytest
import torch

from nmc_deploy.compile.matrices import conv1d_matrix, conv2d_matrix, sumpool2d_matrix


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 1, 1), (1, 0, 2), (2, 2, 3)])
def test_conv2d_matrix_equals_torch(rng, stride, padding, groups):
    w = rng.normal(size=(6, 6 // groups, 3, 3)) * (rng.random((6, 6 // groups, 3, 3)) < 0.7)
    x = rng.normal(size=(6, 7, 5))
    m = conv2d_matrix(w, (7, 5), (stride, stride), (padding, padding), (1, 1), groups)
    y = torch.nn.functional.conv2d(torch.tensor(x)[None], torch.tensor(w), stride=stride,
                                   padding=padding, groups=groups)[0].numpy()
    assert np.allclose(m @ x.ravel(), y.ravel())
    assert m.nnz <= np.count_nonzero(w) * 35  # pruned weights are absent synapses


def test_conv1d_and_sumpool_matrices(rng):
    w = rng.normal(size=(4, 3, 1))
    x = rng.normal(size=(3, 9))
    assert np.allclose(conv1d_matrix(w, 9) @ x.ravel(), (w[:, :, 0] @ x).ravel())
    s = (rng.random((2, 4, 4)) < 0.5).astype(float)
    pooled = torch.nn.functional.max_pool2d(torch.tensor(s)[None], 3, 2, 1)[0].numpy()
    assert np.array_equal((sumpool2d_matrix((2, 4, 4), (3, 3), (2, 2), (1, 1)) @ s.ravel()) > 0.5,
                          pooled.ravel() > 0.5)  # OR of spikes == max-pool of spikes
