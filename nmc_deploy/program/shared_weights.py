"""Synapse matrices stored once and shared: token-parallel layers and convolutions.

A token-parallel linear layer (a 1x1 convolution over the tokens of a (C, N) stream) is one
``C_out x C_in`` matrix applied to each of N tokens; a convolution is one kernel applied at
every output position. Loihi stores such weights once per core and lets every source
"atom" (token, input position) reuse the synapse list through population axons (nengo-loihi:
``Axon`` with population atoms and ``Synapse.set_population_weights``; docs lava-and-loihi.md
§2). The program therefore holds the shared matrix plus its token/position map, never the
expanded copies:

* :class:`TokenShared` ``M = kernel (x) I_N``: ``M[o N + n, i N + n] = kernel[o, i]``;
* :class:`ConvShared` ``M @ x.ravel() == conv2d(x, kernel).ravel()`` on C-order (C, H, W).

Both behave like a sparse matrix where the compiler and the simulators need it: ``shape``,
``nnz`` (the *expanded* number of synapses, what the unshared matrix would hold), ``@`` with
dense vectors and 2-D arrays (integer products are exact), ``tocsr()`` (the expanded matrix,
for small programs and Lava's Sparse), ``abs()``. Stored weights: ``stored`` (count),
``values`` (the stored nonzeros) with ``usage`` (expanded copies of each), ``with_values``.

The generic helpers (:func:`compose`, :func:`add_weights`, :func:`scale_rows`,
:func:`as_csr`, :func:`stored_values`, :func:`source_fanout`) take a scipy matrix or a shared
one, so the lowering and the quantizer need not know which they hold; a product or sum the
shared forms cannot express falls back to the expanded CSR (correct, only bigger).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..ir.nodes import conv_output_hw

__all__ = ["TokenShared", "ConvShared", "SharedWeights", "is_shared", "as_csr", "compose",
           "add_weights", "scale_rows", "stored_values", "replace_values", "usage_counts",
           "source_fanout", "EXACT_FLOAT_BOUND"]

EXACT_FLOAT_BOUND = 2.0 ** 52  # integer sums below this are exact in float64 products


def _is_int(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.integer)


def _exact_product(w_abs_max: float, fan_in: int, x: np.ndarray) -> bool:
    """True when ``W @ x`` of integers is exact in float64."""
    if not _is_int(x):
        return False
    x_max = float(np.abs(x).max(initial=0))
    return w_abs_max * fan_in * x_max < EXACT_FLOAT_BOUND


@dataclass(frozen=True, eq=False)
class TokenShared:
    """``M = kernel (x) I_N`` on the (C, N) token layout (flat index ``c N + n``)::

        y[o N + n] = sum_i kernel[o, i] x[i N + n]          for every token n

    ``kernel``: (C_out, C_in) scipy CSR (float64 before quantization, int32 after); exact
    zeros are absent synapses.
    """

    kernel: sp.csr_matrix
    n_tokens: int

    def __post_init__(self):
        k = sp.csr_matrix(self.kernel)
        if not k.has_canonical_format:  # scipy canonicalizes in place on e.g. max()
            k = k.copy()
            k.sum_duplicates()
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "n_tokens", int(self.n_tokens))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.kernel.shape[0] * self.n_tokens, self.kernel.shape[1] * self.n_tokens)

    @property
    def dtype(self):
        return self.kernel.dtype

    @property
    def nnz(self) -> int:
        """Expanded synapses (one copy per token)."""
        return int(self.kernel.nnz) * self.n_tokens

    @property
    def stored(self) -> int:
        return int(self.kernel.nnz)

    @property
    def values(self) -> np.ndarray:
        return self.kernel.data

    @property
    def usage(self) -> np.ndarray:
        return np.full(self.kernel.nnz, self.n_tokens, np.int64)

    def with_values(self, values: np.ndarray) -> "TokenShared":
        k = sp.csr_matrix((np.asarray(values), self.kernel.indices.copy(),
                           self.kernel.indptr.copy()), shape=self.kernel.shape)
        k.eliminate_zeros()
        return TokenShared(k, self.n_tokens)

    def __abs__(self) -> "TokenShared":
        return TokenShared(abs(self.kernel), self.n_tokens)

    def __matmul__(self, x):
        x = np.asarray(x)
        c_in, n = self.kernel.shape[1], self.n_tokens
        k = self.kernel
        exact = _is_int(k) and _exact_product(float(abs(k).max()) if k.nnz else 0.0,
                                              c_in, x)
        if exact:
            k = k.astype(np.float64)
            xx = x.astype(np.float64)
        else:
            xx = x
        if x.ndim == 1:
            y = np.asarray(k @ xx.reshape(c_in, n)).reshape(-1)
        else:
            cols = x.shape[1]
            y = np.asarray(k @ xx.reshape(c_in, n * cols)).reshape(-1, cols)
        return y.astype(np.int64) if exact else y

    def tocsr(self) -> sp.csr_matrix:
        return sp.kron(self.kernel, sp.identity(self.n_tokens, format="csr",
                                                dtype=self.kernel.dtype), format="csr")

    def toarray(self) -> np.ndarray:
        return self.tocsr().toarray()

    def rows_csr(self, start: int, stop: int) -> sp.csr_matrix:
        """Expanded rows ``[start, stop)`` (one per neuron) as CSR."""
        n = self.n_tokens
        rows = np.arange(start, stop)
        o, t = rows // n, rows % n
        k = self.kernel
        lens = np.diff(k.indptr)[o]
        indptr = np.concatenate([[0], np.cumsum(lens)])
        pos = np.concatenate([np.arange(k.indptr[a], k.indptr[a + 1]) for a in o]) \
            if len(o) else np.zeros(0, np.int64)
        cols = k.indices[pos] * n + np.repeat(t, lens)
        return sp.csr_matrix((k.data[pos], cols, indptr), shape=(stop - start, self.shape[1]))

    def scale_rows(self, r: np.ndarray) -> "TokenShared | None":
        """``diag(r) @ M`` when ``r`` is constant over tokens per channel, else None."""
        r = np.broadcast_to(np.asarray(r, np.float64), (self.shape[0],)).reshape(
            -1, self.n_tokens)
        if not np.all(r == r[:, :1]):
            return None
        return TokenShared(sp.csr_matrix(sp.diags(r[:, 0]) @ self.kernel), self.n_tokens)

    def scale_cols(self, c: np.ndarray) -> "TokenShared | None":
        """``M @ diag(c)`` when ``c`` is constant over tokens per channel, else None."""
        c = np.broadcast_to(np.asarray(c, np.float64), (self.shape[1],)).reshape(
            -1, self.n_tokens)
        if not np.all(c == c[:, :1]):
            return None
        return TokenShared(sp.csr_matrix(self.kernel @ sp.diags(c[:, 0])), self.n_tokens)

    def fanout(self) -> np.ndarray:
        """Nonzero weights per source neuron (expanded), (C_in N,)."""
        counts = np.bincount(self.kernel.indices, minlength=self.kernel.shape[1])
        return np.repeat(counts, self.n_tokens)


@dataclass(frozen=True, eq=False)
class ConvShared:
    """``M @ x.ravel() == conv2d(x, kernel).ravel()`` for x of ``in_shape`` (C_in, H, W),
    zero padding, ``groups`` channel groups::

        y[o, p, q] = sum_(i, a, b) kernel[o, i, a, b] x[g(o) C_in/groups + i,
                                                      p s0 - p0 + a d0, q s1 - p1 + b d1]

    ``kernel``: (C_out, C_in/groups, kH, kW) ndarray (float64, or int32 after
    quantization); exact zeros are absent synapses. 1-d convolutions use H = 1.
    """

    kernel: np.ndarray
    in_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_output_hw(self.in_shape[1:], self.kernel.shape[2:], self.stride,
                              self.padding, self.dilation)

    @property
    def shape(self) -> tuple[int, int]:
        ho, wo = self.out_hw
        return (self.kernel.shape[0] * ho * wo, int(np.prod(self.in_shape)))

    @property
    def dtype(self):
        return self.kernel.dtype

    def _valid(self, axis: int) -> list[np.ndarray]:
        """Per kernel offset along ``axis`` (0: y, 1: x): (output index, input index) pairs
        that land inside the input."""
        out_n = self.out_hw[axis]
        size = self.in_shape[1 + axis]
        o = np.arange(out_n)
        pairs = []
        for a in range(self.kernel.shape[2 + axis]):
            i = o * self.stride[axis] - self.padding[axis] + a * self.dilation[axis]
            ok = (i >= 0) & (i < size)
            pairs.append((o[ok], i[ok]))
        return pairs

    def _tap_counts(self) -> np.ndarray:
        """(kH, kW) valid output positions per kernel tap."""
        vy = np.array([len(p[0]) for p in self._valid(0)])
        vx = np.array([len(p[0]) for p in self._valid(1)])
        return np.outer(vy, vx)

    @property
    def nnz(self) -> int:
        """Expanded synapses (one per output position a nonzero tap reaches)."""
        nz = (self.kernel != 0).sum(axis=(0, 1))
        return int((nz * self._tap_counts()).sum())

    @property
    def stored(self) -> int:
        return int(np.count_nonzero(self.kernel))

    @property
    def values(self) -> np.ndarray:
        return self.kernel[self.kernel != 0]

    @property
    def usage(self) -> np.ndarray:
        taps = np.broadcast_to(self._tap_counts(), self.kernel.shape)
        return taps[self.kernel != 0].astype(np.int64)

    def _replace(self, kernel) -> "ConvShared":
        return ConvShared(kernel, self.in_shape, self.stride, self.padding, self.dilation,
                          self.groups)

    def with_values(self, values: np.ndarray) -> "ConvShared":
        values = np.asarray(values)
        k = np.zeros(self.kernel.shape, values.dtype)
        k[self.kernel != 0] = values
        return self._replace(k)

    def __abs__(self) -> "ConvShared":
        return self._replace(np.abs(self.kernel))

    def __matmul__(self, x):
        x = np.asarray(x)
        vec = x.ndim == 1
        cols = 1 if vec else x.shape[1]
        co, cig, kh, kw = self.kernel.shape
        ci, H, W = self.in_shape
        ho, wo = self.out_hw
        k = self.kernel
        fan_in = cig * kh * kw
        exact = _is_int(k) and _exact_product(float(np.abs(k).max(initial=0)), fan_in, x)
        dtype = np.float64 if (exact or not (_is_int(k) and _is_int(x))) else np.int64
        X = x.reshape(ci, H, W, cols).astype(dtype, copy=False)
        kk = k.astype(dtype, copy=False)
        y = np.zeros((co, ho, wo, cols), dtype)
        cpo = co // self.groups
        vy, vx = self._valid(0), self._valid(1)
        for a in range(kh):
            oy, iy = vy[a]
            if not len(oy):
                continue
            for b in range(kw):
                ox, ix = vx[b]
                if not len(ox):
                    continue
                tap = kk[:, :, a, b]
                if not np.any(tap):
                    continue
                patch = X[:, iy][:, :, ix]  # (ci, len(oy), len(ox), cols)
                for g in range(self.groups):
                    src = patch[g * cig:(g + 1) * cig].reshape(cig, -1)
                    part = tap[g * cpo:(g + 1) * cpo] @ src
                    y[g * cpo:(g + 1) * cpo, oy[0]:oy[-1] + 1, ox[0]:ox[-1] + 1] += \
                        part.reshape(cpo, len(oy), len(ox), cols)
        y = y.reshape(co * ho * wo, cols)
        if exact:
            y = y.astype(np.int64)
        return y.reshape(-1) if vec else y

    def tocsr(self, channels: tuple[int, int] | None = None) -> sp.csr_matrix:
        """The expanded matrix (or only the rows of output channels ``[c0, c1)``)."""
        co, cig, kh, kw = self.kernel.shape
        ci, H, W = self.in_shape
        ho, wo = self.out_hw
        c0, c1 = channels if channels is not None else (0, co)
        cpo = co // self.groups
        vy, vx = self._valid(0), self._valid(1)
        rows, cols, vals = [], [], []
        for a in range(kh):
            for b in range(kw):
                oy, iy = vy[a]
                ox, ix = vx[b]
                o, i = np.nonzero(self.kernel[c0:c1, :, a, b])
                if not len(o) or not len(oy) or not len(ox):
                    continue
                o = o + c0
                cin = (o // cpo) * cig + i
                pos_out = (oy[:, None] * wo + ox[None, :]).ravel()
                pos_in = (iy[:, None] * W + ix[None, :]).ravel()
                rows.append(((o * ho * wo)[:, None] + pos_out[None, :]).ravel())
                cols.append(((cin * H * W)[:, None] + pos_in[None, :]).ravel())
                vals.append(np.repeat(self.kernel[o, i, a, b], len(pos_out)))
        n_rows = (c1 - c0) * ho * wo
        if not rows:
            return sp.csr_matrix((n_rows, self.shape[1]), dtype=self.kernel.dtype)
        r = np.concatenate(rows) - c0 * ho * wo
        m = sp.csr_matrix((np.concatenate(vals), (r, np.concatenate(cols))),
                          shape=(n_rows, self.shape[1]))
        m.sum_duplicates()
        return m

    def toarray(self) -> np.ndarray:
        return self.tocsr().toarray()

    def rows_csr(self, start: int, stop: int) -> sp.csr_matrix:
        """Expanded rows ``[start, stop)`` as CSR."""
        per = self.out_hw[0] * self.out_hw[1]
        c0, c1 = start // per, (stop - 1) // per + 1
        return self.tocsr((c0, c1))[start - c0 * per:stop - c0 * per]

    def scale_rows(self, r: np.ndarray) -> "ConvShared | None":
        """``diag(r) @ M`` when ``r`` is constant per output channel, else None."""
        co = self.kernel.shape[0]
        r = np.broadcast_to(np.asarray(r, np.float64), (self.shape[0],)).reshape(co, -1)
        if not np.all(r == r[:, :1]):
            return None
        return self._replace(self.kernel * r[:, 0].reshape(-1, 1, 1, 1))

    def scale_cols(self, c: np.ndarray) -> "ConvShared | None":
        """``M @ diag(c)`` when ``c`` is constant per input channel, else None."""
        ci = self.in_shape[0]
        c = np.broadcast_to(np.asarray(c, np.float64), (self.shape[1],)).reshape(ci, -1)
        if not np.all(c == c[:, :1]):
            return None
        co, cig = self.kernel.shape[:2]
        cpo = co // self.groups
        per_in = c[:, 0]
        factor = np.stack([per_in[(o // cpo) * cig:(o // cpo + 1) * cig] for o in range(co)])
        return self._replace(self.kernel * factor[:, :, None, None])

    def fanout(self) -> np.ndarray:
        """Nonzero weights per source neuron (expanded), (C_in H W,)."""
        co, cig, kh, kw = self.kernel.shape
        ci, H, W = self.in_shape
        cpo = co // self.groups
        nz = self.kernel != 0
        per_in = np.zeros((ci, kh, kw), np.int64)  # targets per input channel and tap
        for g in range(self.groups):
            per_in[g * cig:(g + 1) * cig] = nz[g * cpo:(g + 1) * cpo].sum(axis=0)
        out = np.zeros((ci, H, W), np.int64)
        vy, vx = self._valid(0), self._valid(1)
        for a in range(kh):
            for b in range(kw):
                iy, ix = vy[a][1], vx[b][1]
                if len(iy) and len(ix):
                    out[:, iy[:, None], ix[None, :]] += per_in[:, a, b][:, None, None]
        return out.ravel()


SharedWeights = (TokenShared, ConvShared)


def is_shared(w) -> bool:
    return isinstance(w, SharedWeights)


def as_csr(w) -> sp.csr_matrix:
    """``w`` as an (expanded) scipy CSR matrix."""
    return w.tocsr() if is_shared(w) else sp.csr_matrix(w)


def _diagonal(m) -> np.ndarray | None:
    """The diagonal of a square scipy matrix that has no other entries (else None)."""
    if is_shared(m) or m.shape[0] != m.shape[1]:
        return None
    m = sp.csr_matrix(m)
    n = m.shape[0]
    if m.nnz > n or np.any(np.diff(m.indptr) > 1):
        return None
    rows = np.repeat(np.arange(n), np.diff(m.indptr))
    if np.any(m.indices != rows):
        return None
    d = np.zeros(n, np.float64)
    d[rows] = m.data
    return d


def _is_identity(m) -> bool:
    """True for a scipy identity matrix (square, one stored 1 per row on the diagonal)."""
    if is_shared(m) or m.shape[0] != m.shape[1] or m.nnz != m.shape[0]:
        return False
    m = sp.csr_matrix(m)
    return bool(np.all(m.data == 1) and np.array_equal(m.indices, np.arange(m.shape[0]))
                and np.array_equal(m.indptr, np.arange(m.shape[0] + 1)))


def compose(a, b):
    """``a @ b`` of two weight matrices (scipy or shared), kept shared where possible.

    An identity factor returns the other operand itself (no copy): a head read by every
    population of a fan-in residual stream is then one matrix, not one per population.
    """
    if _is_identity(b):
        return a if is_shared(a) else sp.csr_matrix(a)
    if _is_identity(a):
        return b if is_shared(b) else sp.csr_matrix(b)
    if not is_shared(a) and not is_shared(b):
        return sp.csr_matrix(a @ b)
    if is_shared(a):
        d = _diagonal(b)
        if d is not None:
            out = a.scale_cols(d)
            if out is not None:
                return out
    if is_shared(b):
        d = _diagonal(a)
        if d is not None:
            out = b.scale_rows(d)
            if out is not None:
                return out
    if isinstance(a, TokenShared) and isinstance(b, TokenShared) and \
            a.n_tokens == b.n_tokens:
        return TokenShared(sp.csr_matrix(a.kernel @ b.kernel), a.n_tokens)
    return sp.csr_matrix(as_csr(a) @ as_csr(b))


def _same_conv(a: ConvShared, b: ConvShared) -> bool:
    return (a.kernel.shape == b.kernel.shape and a.in_shape == b.in_shape and
            a.stride == b.stride and a.padding == b.padding and a.dilation == b.dilation and
            a.groups == b.groups)


def add_weights(a, b):
    """``a + b`` of two weight matrices (scipy or shared), kept shared where possible."""
    if isinstance(a, TokenShared) and isinstance(b, TokenShared) and \
            a.n_tokens == b.n_tokens and a.kernel.shape == b.kernel.shape:
        return TokenShared(sp.csr_matrix(a.kernel + b.kernel), a.n_tokens)
    if isinstance(a, ConvShared) and isinstance(b, ConvShared) and _same_conv(a, b):
        return a._replace(a.kernel + b.kernel)
    if not is_shared(a) and not is_shared(b):
        return a + b
    return as_csr(a) + as_csr(b)


def scale_rows(w, r):
    """``diag(r) @ w`` (``r`` a scalar or one value per row), kept shared where possible."""
    r = np.broadcast_to(np.asarray(r, np.float64), (w.shape[0],))
    if is_shared(w):
        out = w.scale_rows(r)
        return out if out is not None else sp.csr_matrix(sp.diags(r) @ w.tocsr())
    return sp.csr_matrix(sp.diags(r) @ w)


def stored_values(w) -> np.ndarray:
    """The stored nonzero weights (a shared matrix: each once; scipy: ``data``)."""
    return w.values if is_shared(w) else sp.csr_matrix(w).data


def replace_values(w, values: np.ndarray):
    """``w`` with its stored values replaced (same positions; zeros become absent)."""
    if is_shared(w):
        return w.with_values(values)
    w = sp.csr_matrix(w)
    out = sp.csr_matrix((np.asarray(values), w.indices.copy(), w.indptr.copy()),
                        shape=w.shape)
    out.eliminate_zeros()
    return out


def usage_counts(w) -> np.ndarray:
    """Expanded copies of each stored value (ones for a scipy matrix)."""
    return w.usage if is_shared(w) else np.ones(sp.csr_matrix(w).nnz, np.int64)


def source_fanout(w) -> np.ndarray:
    """Nonzero weights per source neuron (column), expanded."""
    if is_shared(w):
        return w.fanout()
    return np.diff(sp.csc_matrix(w).indptr)
