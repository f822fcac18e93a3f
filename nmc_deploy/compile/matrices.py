"""Pure kernels: linear graph ops as sparse matrices over C-order flattened tensors."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..ir.nodes import conv_output_hw

__all__ = ["conv2d_matrix", "conv1d_matrix", "sumpool2d_matrix"]


def conv2d_matrix(weight, input_hw, stride, padding, dilation=(1, 1), groups=1) -> sp.csr_matrix:
    """Matrix ``M`` with ``M @ x.ravel() == conv2d(x, weight).ravel()`` (zero padding).

    ``weight``: (C_out, C_in/groups, kH, kW); x: (C_in, H, W). Exact zeros of ``weight`` give
    no entry (pruned synapses stay absent).
    """
    weight = np.asarray(weight)
    co, cig, kh, kw = weight.shape
    H, W = (int(v) for v in input_hw)
    ho, wo = conv_output_hw((H, W), (kh, kw), stride, padding, dilation)
    cpg_out = co // groups
    rows, cols, vals = [], [], []
    oy, ox = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    for o in range(co):
        g = o // cpg_out
        for ci in range(cig):
            c_in = g * cig + ci
            for dy in range(kh):
                for dx in range(kw):
                    w = weight[o, ci, dy, dx]
                    if w == 0:
                        continue
                    iy = oy * stride[0] - padding[0] + dy * dilation[0]
                    ix = ox * stride[1] - padding[1] + dx * dilation[1]
                    ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
                    rows.append((o * ho * wo + oy * wo + ox)[ok])
                    cols.append((c_in * H * W + iy * W + ix)[ok])
                    vals.append(np.full(int(ok.sum()), w, dtype=np.float64))
    n_out, n_in = co * ho * wo, cig * groups * H * W
    if not rows:
        return sp.csr_matrix((n_out, n_in))
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_out, n_in))
    m.sum_duplicates()
    return m


def conv1d_matrix(weight, length, stride=1, padding=0, dilation=1, groups=1) -> sp.csr_matrix:
    """1-d convolution over (C, N) as a matrix (via the 2-d kernel with height 1)."""
    w = np.asarray(weight)[:, :, None, :]
    return conv2d_matrix(w, (1, length), (1, stride), (0, padding), (1, dilation), groups)


def sumpool2d_matrix(input_chw, kernel_size, stride, padding) -> sp.csr_matrix:
    """Window sum per channel; padding contributes nothing."""
    c = int(input_chw[0])
    w = np.zeros((c, 1, *kernel_size))
    w[:, 0] = 1.0
    return conv2d_matrix(w, input_chw[1:], stride, padding, (1, 1), groups=c)
