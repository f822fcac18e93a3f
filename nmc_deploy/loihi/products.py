"""Batched integer-exact products of shared synapse kernels: samples x steps x tokens as the batch.

A shared synapse group stores one kernel and applies it at every token or position
(:mod:`nmc_deploy.program.shared_weights`). On a batch of R rows (one per sample and step),
each row a source's flat output in C order, its synaptic input is a matrix product with the
rows, and the tokens or positions, as the batch; the expanded (C_out N, C_in N) matrix is
never formed:

* :func:`token_product`, a token-parallel layer on the (C, N) layout::

      y[r, o, n] = sum_i K[o, i] x[r, i, n]       (one (C_out, C_in) @ (C_in, N) per row)

* :func:`conv_product`, a zero-padded convolution with stride, dilation and channel groups
  on (C, H, W) rows, as im2col: the kernel taps of every output position of every row
  become the columns of one (C_in/G kH kW, rows H_out W_out) matrix per group, one product
  per group (a depthwise convolution, one input channel per output channel, as a
  multiply-add per tap on the rows as they are, without a padded copy; a one-valued kernel
  on spikes, the compiler's pools, counts in bytes)::

      y[r, o, p, q] = sum_(i, a, b) K[o, i, a, b] x[r, g(o) C_in/G + i,
                                                    p s0 - p0 + a d0, q s1 - p1 + b d1]

Exactness. The products run in the ``dtype`` the caller chooses with :func:`exact_dtype`:
for integer kernels and integer rows, every partial sum of a product is an integer of
magnitude at most ``bound = max_o sum_i |K[o, i]| * max |x|``, so it is represented
exactly, whatever the order of summation (BLAS blocking, FMA), while ``bound < 2**24``
(float32) or ``bound < 2**53`` (float64). Beyond that the product runs in int64 (numpy's
own loop: slow, but exact). With float rows or kernels it is an ordinary floating-point
product.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["FLOAT32_EXACT", "FLOAT64_EXACT", "IM2COL_BYTES", "ONE_PRODUCT_MACS",
           "ROWS_LAST_POSITIONS",
           "exact_dtype", "token_product", "conv_product"]

FLOAT32_EXACT = 2.0 ** 24  # integers of magnitude < 2**24 are exact in float32 (24-bit mantissa)
FLOAT64_EXACT = 2.0 ** 53  # and < 2**53 in float64
IM2COL_BYTES = 16 * 2 ** 20  # rows of a convolution are unfolded in chunks of at most this size (measured: 16 MB chunks, which stay in cache while BLAS reads them, beat 64 MB by ~7 %)
# A token kernel of at least this many weights multiplies all rows in one product (the rows
# transposed to (C_in, R N) first); a smaller one runs one product per row, cheaper than the
# transposition. One large product also keeps BLAS's threads in step on a busy machine.
ONE_PRODUCT_MACS = 128 * 128
# A convolution with at most this many output positions unfolds with the rows innermost.
ROWS_LAST_POSITIONS = 256


def exact_dtype(bound: float) -> np.dtype:
    """The cheapest dtype in which integer products whose partial sums are bounded by ``bound``
    in magnitude are exact: float32, float64, or int64 beyond 2**53."""
    if bound < FLOAT32_EXACT:
        return np.dtype(np.float32)
    if bound < FLOAT64_EXACT:
        return np.dtype(np.float64)
    return np.dtype(np.int64)


def token_product(kernel, x: np.ndarray, n_tokens: int, dtype) -> np.ndarray:
    """``y[r] = K @ x[r]`` on the (C, N) token layout of each row; see the module docstring.

    Parameters
    ----------
    kernel : ndarray or scipy sparse matrix
        (C_out, C_in); a dense array should already be of ``dtype`` (it is not copied then).
    x : ndarray
        (R, C_in N) rows of any numeric or bool dtype.
    n_tokens : int
        N, tokens per row.
    dtype : numpy dtype
        Arithmetic of the product (see :func:`exact_dtype`).

    Returns
    -------
    ndarray
        (R, C_out, N) of ``dtype``, possibly a transposed view.
    """
    c_out, c_in = kernel.shape
    rows = x.shape[0]
    X = x.reshape(rows, c_in, n_tokens)
    if sp.issparse(kernel) or c_out * c_in >= ONE_PRODUCT_MACS:
        cols = np.empty((c_in, rows, n_tokens), dtype)
        cols[...] = X.transpose(1, 0, 2)
        k = kernel.astype(dtype) if sp.issparse(kernel) else kernel.astype(dtype, copy=False)
        y = np.asarray(k @ cols.reshape(c_in, rows * n_tokens))
        return y.reshape(c_out, rows, n_tokens).transpose(1, 0, 2)
    return np.matmul(kernel.astype(dtype, copy=False), X.astype(dtype, copy=False))


def conv_out_hw(in_hw, k_hw, stride, padding, dilation) -> tuple[int, int]:
    """Output height and width of a zero-padded convolution (may be <= 0: no output)."""
    return tuple((in_hw[i] + 2 * padding[i] - dilation[i] * (k_hw[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))


def _tap_range(n_out: int, n_in: int, offset: int, stride: int) -> tuple[int, int]:
    """Outputs ``lo .. hi-1`` whose input ``o stride + offset`` lies in ``0 .. n_in-1``."""
    lo = max(0, -(offset // stride) if offset < 0 else 0)
    while lo * stride + offset < 0:
        lo += 1
    hi = min(n_out, (n_in - 1 - offset) // stride + 1) if n_in - 1 - offset >= 0 else 0
    return lo, max(lo, hi)


def _depthwise(k: np.ndarray, X: np.ndarray, out_hw, stride, padding, dilation,
               dtype) -> np.ndarray:
    """A depthwise convolution (one input channel per output channel) of the (R, C, H, W)
    rows ``X`` as a multiply-add per kernel tap on the rows as they are (no padded or
    unfolded copy: each tap adds into the outputs whose input is inside the image);
    returns (R, C, H_out W_out) of ``dtype``. A kernel of one value ``c`` (the compiler's
    pools) on spikes counts the taps in bytes, then multiplies by ``c`` once."""
    rows, c, H, W = X.shape
    ho, wo = out_hw
    _, _, kh, kw = k.shape
    flat = k.reshape(-1)
    counts = X.dtype == bool and kh * kw < 256 and bool(np.all(flat == flat[0]))
    if counts:
        X = X.view(np.uint8)
        y = np.zeros((rows, c, ho, wo), np.uint8)
    else:
        X = X.astype(dtype, copy=False)
        y = np.zeros((rows, c, ho, wo), dtype)
        tmp = np.empty_like(y)
    for a in range(kh):
        i_off = a * dilation[0] - padding[0]
        p_lo, p_hi = _tap_range(ho, H, i_off, stride[0])
        for b in range(kw):
            j_off = b * dilation[1] - padding[1]
            q_lo, q_hi = _tap_range(wo, W, j_off, stride[1])
            w = k[:, 0, a, b]
            if p_hi <= p_lo or q_hi <= q_lo or not np.any(w):
                continue
            i0, j0 = p_lo * stride[0] + i_off, q_lo * stride[1] + j_off
            src = X[:, :, i0:i0 + stride[0] * (p_hi - p_lo - 1) + 1:stride[0],
                    j0:j0 + stride[1] * (q_hi - q_lo - 1) + 1:stride[1]]
            out = y[:, :, p_lo:p_hi, q_lo:q_hi]
            if counts:
                out += src
            else:
                t = tmp[:, :, :p_hi - p_lo, :q_hi - q_lo]
                np.multiply(src, w[None, :, None, None], out=t)
                out += t
    if counts:
        y = y.astype(dtype)
        if flat.size and flat[0] != 1:
            y *= flat[0]
    return y.reshape(rows, c, ho * wo)


def conv_product(kernel: np.ndarray, x: np.ndarray, in_shape, *, stride=(1, 1), padding=(0, 0),
                 dilation=(1, 1), groups: int = 1, dtype=np.float64) -> np.ndarray:
    """A convolution of each row, ``(R, C_in H W) -> (R, C_out, H_out W_out)``; see the
    module docstring.

    ``kernel``: (C_out, C_in/groups, kH, kW); ``in_shape``: (C_in, H, W). Rows are unfolded
    (im2col) in chunks of at most :data:`IM2COL_BYTES`. Returns an array of ``dtype``,
    possibly a transposed view.
    """
    co, cig, kh, kw = kernel.shape
    ci, H, W = (int(v) for v in in_shape)
    ho, wo = conv_out_hw((H, W), (kh, kw), stride, padding, dilation)
    rows = x.shape[0]
    k = kernel.astype(dtype, copy=False)
    if rows == 0 or ho <= 0 or wo <= 0:
        return np.zeros((rows, co, max(ho, 0) * max(wo, 0)), dtype)
    if cig == 1 and co == groups == ci:
        return _depthwise(k, x.reshape(rows, ci, H, W), (ho, wo), stride, padding, dilation,
                          dtype)
    out = None
    p0, p1 = (int(v) for v in padding)
    per_row = ci * kh * kw * ho * wo + ci * (H + 2 * p0) * (W + 2 * p1)
    chunk = max(1, IM2COL_BYTES // (per_row * np.dtype(dtype).itemsize))
    if chunk < rows:
        out = np.empty((rows, co, ho * wo), dtype)
    X = x.reshape(rows, ci, H, W)
    # small images put the rows last, (C_in, H, W, r): every tap copy then moves runs of r
    # values instead of runs of W_out
    rows_last = ho * wo <= ROWS_LAST_POSITIONS
    for r0 in range(0, rows, chunk):
        xs = X[r0:r0 + chunk]
        r = xs.shape[0]
        if rows_last:
            xp = np.zeros((ci, H + 2 * p0, W + 2 * p1, r), dtype)
            xp[:, p0:p0 + H, p1:p1 + W] = xs.transpose(1, 2, 3, 0)
        elif p0 == p1 == 0:
            xp = xs.astype(dtype, copy=False).transpose(1, 2, 3, 0)
        else:
            xp = np.zeros((r, ci, H + 2 * p0, W + 2 * p1), dtype)
            xp[:, :, p0:p0 + H, p1:p1 + W] = xs
            xp = xp.transpose(1, 2, 3, 0)  # a view: (ci, H, W, r) in rows-first memory

        def tap(a, b):  # (ci, ho, wo, r): the inputs tap (a, b) meets at every output
            y0, x0 = a * dilation[0], b * dilation[1]
            return xp[:, y0:y0 + stride[0] * (ho - 1) + 1:stride[0],
                      x0:x0 + stride[1] * (wo - 1) + 1:stride[1]]

        # im2col with the taps first, (C_in kH kW, [H_out W_out r] or [r H_out W_out]),
        # then one product per group
        shape = (ci, kh, kw, ho, wo, r) if rows_last else (ci, kh, kw, r, ho, wo)
        cols = np.empty(shape, dtype)
        for a in range(kh):
            for b in range(kw):
                cols[:, a, b] = tap(a, b) if rows_last else tap(a, b).transpose(0, 3, 1, 2)
        if groups == 1:
            y = k.reshape(co, ci * kh * kw) @ cols.reshape(ci * kh * kw, r * ho * wo)
        else:
            kg = k.reshape(groups, co // groups, cig * kh * kw)
            y = np.matmul(kg, cols.reshape(groups, cig * kh * kw, r * ho * wo))
        y = y.reshape(co, ho * wo, r).transpose(2, 0, 1) if rows_last else \
            y.reshape(co, r, ho * wo).transpose(1, 0, 2)
        if out is None:
            return y
        out[r0:r0 + r] = y
    return out
