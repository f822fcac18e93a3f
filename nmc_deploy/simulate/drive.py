"""The synaptic drive of a population for all steps of a batch: ``a_in`` of every neuron.

Fixed point (:func:`fixed_drive`), per population::

    a_in = sum over groups g of (W_g @ x_src(g)) << weight_exp_g        (>> if negative)

on (T*B, n) rows (:meth:`~nmc_deploy.simulate.sources.SourceStreams.rows`). A shared-weight
group (token-parallel layer, convolution) runs as one batched product with samples x steps
x tokens as the batch (:mod:`nmc_deploy.loihi.products`), never as the expanded matrix; any
other group keeps the sparse product of :func:`~nmc_deploy.loihi.synapses.synaptic_input`.
Groups into one population that share the same stored weights, the same exponent and the
same lag (a residual stream read by the next layer: one kernel, several source populations)
form one *stage*: their sources are summed first, ``W s1 << e + W s2 << e == W (s1 + s2) << e``
in integers, so the stage costs one product. A negative exponent floors each group's sum on
its own; such a stage is the merged product minus the groups' remainders, which for spike
sources come from a few *packed* products of ``W mod 2**k`` (several groups' sources in the
bit fields of one float; :func:`_floor_sum`).

Every product is integer-exact (:func:`~nmc_deploy.loihi.products.exact_dtype` bounds its
partial sums), so the drive equals the integer one, value for value. When the bound of the
whole drive (the sum over stages and recurrent groups of ``max row sum |W| * max |x| *
2**weight_exp``) is below :data:`~nmc_deploy.loihi.neurons.F64_INPUT_LIMIT`, the drive is
returned in float64 (integers, exact) and the neurons step in float64
(:func:`~nmc_deploy.loihi.neurons.lif_fixed_step_f64`); otherwise in int64.

Float (:func:`float_drive`): ``sum_g W_g @ x`` per group in float64, the lowered graph's
real matrices, with the arithmetic of the shared matrices' ``@`` (results unchanged).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..loihi.neurons import F64_INPUT_LIMIT
from ..loihi.products import FLOAT32_EXACT, conv_product, exact_dtype, token_product
from ..loihi.synapses import synaptic_input
from ..program import SourceKind
from ..program.shared_weights import ConvShared, TokenShared, is_shared, source_fanout

__all__ = ["Stage", "PopulationPlan", "plan_program", "fixed_drive", "float_drive",
           "DENSE_KERNEL_DENSITY"]

# A token-parallel kernel at least this dense runs as a dense (BLAS) product; a sparser one
# as a sparse product (measured crossover on this project's 2-core machine: ~5 %).
DENSE_KERNEL_DENSITY = 0.05


def _max_row_abs_sum(w) -> float:
    """``max_o sum_i |W[o, i]|`` (of the stored kernel: the same for every expanded row)."""
    if isinstance(w, TokenShared):
        k = abs(w.kernel)
        return float(k.sum(axis=1).max()) if k.nnz else 0.0
    if isinstance(w, ConvShared):
        k = np.abs(w.kernel.astype(np.float64))
        return float(k.reshape(k.shape[0], -1).sum(axis=1).max(initial=0.0))
    k = abs(sp.csr_matrix(w)).astype(np.float64)
    return float(k.sum(axis=1).max()) if k.nnz else 0.0


def _same_weights(a, b) -> bool:
    """True if shared matrices ``a`` and ``b`` store the same weights at the same places."""
    if isinstance(a, TokenShared) and isinstance(b, TokenShared):
        ka, kb = a.kernel, b.kernel
        if a.n_tokens != b.n_tokens or ka.shape != kb.shape or ka.dtype != kb.dtype:
            return False
        if ka.has_canonical_format and kb.has_canonical_format:  # same arrays: same matrix
            return (np.array_equal(ka.indptr, kb.indptr) and
                    np.array_equal(ka.indices, kb.indices) and np.array_equal(ka.data, kb.data))
        return (ka != kb).nnz == 0
    if isinstance(a, ConvShared) and isinstance(b, ConvShared):
        return (a.in_shape == b.in_shape and a.stride == b.stride and a.padding == b.padding
                and a.dilation == b.dilation and a.groups == b.groups and
                a.kernel.dtype == b.kernel.dtype and a.kernel.shape == b.kernel.shape and
                np.array_equal(a.kernel, b.kernel))
    return False


@dataclass
class Stage:
    """Groups into one population computed as one product of ``weights`` (see the module
    docstring): their sources summed, then ``(W @ x) << weight_exp``."""

    groups: list
    weights: object  # TokenShared, ConvShared or a scipy matrix
    weight_exp: int
    lag: int
    w_bound: float  # max row sum |W|
    reused: bool = False  # another stage reads the same sources (their sum is kept)
    _kernels: dict = field(default_factory=dict)  # kernels ready for the products

    @property
    def sources(self) -> list[str]:
        return [g.source for g in self.groups]

    @property
    def input_key(self) -> tuple:
        return (tuple(self.sources), self.lag)

    def can_take(self, g) -> bool:
        return (is_shared(g.weights) and g.lag == self.lag and g.weight_exp == self.weight_exp
                and _same_weights(self.weights, g.weights))

    @property
    def folded_shift(self) -> int:
        """The left shift multiplied into the kernel of an integer product (a non-negative
        exponent; a negative one shifts the product afterwards)."""
        return max(self.weight_exp, 0)

    def kernel(self, dtype, shift: int | None = None):
        """``W * 2**shift`` (default :attr:`folded_shift`) as the product wants it: dense
        of ``dtype``, or sparse (exact: a power of two only changes the exponent)."""
        shift = self.folded_shift if shift is None else shift
        key = (np.dtype(dtype), shift)
        if key not in self._kernels:
            scale = 2 ** shift if shift >= 0 else 2.0 ** shift  # an int keeps int kernels int
            self._kernels[key] = _ready(self.weights.kernel, key[0]) * scale
        return self._kernels[key]

    def residual_kernel(self, bits: int, dtype):
        """``W mod 2**bits`` (non-negative) as the product wants it, and its largest row sum."""
        key = ("mod", bits, np.dtype(dtype))
        if key not in self._kernels:
            k = self.weights.kernel
            k = k.copy() if sp.issparse(k) else np.array(k)
            if sp.issparse(k):
                k.data = np.mod(k.data, 1 << bits)
                k.eliminate_zeros()
            else:
                k = np.mod(k, 1 << bits)
            rows = np.asarray(k.sum(axis=1) if sp.issparse(k) else
                              k.reshape(k.shape[0], -1).sum(axis=1, dtype=np.int64))
            self._kernels[key] = (_ready(k, key[2]), int(rows.max(initial=0)))
        return self._kernels[key]

    def apply(self, kernel, x: np.ndarray, dtype) -> np.ndarray:
        """``kernel @ x`` on the layout of :attr:`weights` for rows ``x`` (T*B, n_src) ->
        (T*B, C_out, P) of ``dtype``, a new array (possibly a transposed view of it)."""
        w = self.weights
        if isinstance(w, TokenShared):
            return token_product(kernel, x, w.n_tokens, dtype)
        return conv_product(kernel, x, w.in_shape, stride=w.stride, padding=w.padding,
                            dilation=w.dilation, groups=w.groups, dtype=dtype)

    def product(self, x: np.ndarray, dtype) -> np.ndarray:
        """``(W @ x) << weight_exp`` (``>>``: floor) of rows ``x`` (T*B, n_src) ->
        (T*B, C_out, P) of ``dtype`` (P tokens or output positions; possibly a transposed
        view). In floating point a negative exponent is multiplied into the kernel (exact:
        the partial sums are integers times ``2**weight_exp`` below the same bound), and
        the product is floored in place."""
        dtype = np.dtype(dtype)
        if dtype.kind == "f" and self.weight_exp < 0:
            y = self.apply(self.kernel(dtype, self.weight_exp), x, dtype)
            return np.floor(y, out=y)
        y = self.apply(self.kernel(dtype), x, dtype)
        return _shifted(y, min(self.weight_exp, 0))


def _ready(kernel, dtype):
    """A stored kernel as a product takes it: a token kernel dense of ``dtype`` when at least
    :data:`DENSE_KERNEL_DENSITY` dense (else sparse of ``dtype``), a convolution's dense."""
    if sp.issparse(kernel):
        dense = kernel.nnz >= DENSE_KERNEL_DENSITY * kernel.shape[0] * kernel.shape[1]
        return kernel.toarray().astype(dtype) if dense else kernel.astype(dtype)
    return np.asarray(kernel).astype(dtype)


@dataclass
class PopulationPlan:
    """How the drive of one population is computed: its groups from other sources (program
    order), in fixed point merged into stages where they share weights, and its recurrent
    groups (``own``)."""

    groups: list
    own: list
    stages: list[Stage]  # fixed point only (empty for a FloatProgram)
    own_bound: float  # sum over own groups of max row sum |W| * 2**weight_exp, times max_spikes
    fanouts: dict  # group name -> nonzero weights per source neuron (fixed point)


def _stages(groups) -> list[Stage]:
    stages: list[Stage] = []
    for g in groups:
        stage = next((s for s in stages if s.can_take(g)), None)
        if stage is None:
            stages.append(Stage([g], g.weights, g.weight_exp, g.lag,
                                _max_row_abs_sum(g.weights)))
        else:
            stage.groups.append(g)
    return stages


def plan_program(program, fixed: bool = True) -> dict[str, PopulationPlan]:
    """The plan of every population of ``program`` (a ``Program`` if ``fixed``, else a
    ``FloatProgram``: no stages, bounds or fan-outs)."""
    by_target: dict[str, list] = {}
    for g in program.groups:
        by_target.setdefault(g.target, []).append(g)
    plans = {}
    for pop in program.populations:
        groups = by_target.get(pop.name, [])
        own = [g for g in groups if g.source == pop.name]
        other = [g for g in groups if g.source != pop.name]
        if not fixed:
            plans[pop.name] = PopulationPlan(other, own, [], 0.0, {})
            continue
        own_bound = sum(_max_row_abs_sum(g.weights) * 2.0 ** g.weight_exp for g in own) * \
            max(1, getattr(pop, "max_spikes", 1))  # a multi-spike population's counts
        stages = _stages(other)
        fanouts = {}
        for st in stages:  # the groups of a stage store the same weights: one fan-out
            counted = [g for g in st.groups if g.kind != "attention"]
            if counted:
                fanout = source_fanout(st.weights)
                fanouts.update((g.name, fanout) for g in counted)
        fanouts.update((g.name, source_fanout(g.weights)) for g in own
                       if g.kind != "attention")
        plans[pop.name] = PopulationPlan(other, own, stages, own_bound, fanouts)
    readers: dict[tuple, int] = {}
    for p in plans.values():
        for st in p.stages:
            readers[st.input_key] = readers.get(st.input_key, 0) + 1
    for p in plans.values():
        for st in p.stages:
            st.reused = readers[st.input_key] > 1
    return plans


def _shifted(y: np.ndarray, weight_exp: int) -> np.ndarray:
    """``y << weight_exp`` (``>>``: floor) of integer-valued ``y``, in its own dtype."""
    if weight_exp == 0:
        return y
    if y.dtype.kind == "f":
        y = y * 2.0 ** weight_exp  # exact: a power of two
        return np.floor(y, out=y) if weight_exp < 0 else y
    return y << weight_exp if weight_exp > 0 else y >> (-weight_exp)


def _stage_bounds(stage: Stage, src) -> tuple[float, float]:
    """(bound of the product's partial sums, bound of the stage's shifted output)."""
    x_sum = sum(src.abs_max(s) for s in stage.sources)
    product = stage.w_bound * x_sum * 2.0 ** stage.folded_shift
    if stage.weight_exp >= 0:
        return product, product
    # each group's floor adds at most 1
    return product, product * 2.0 ** stage.weight_exp + len(stage.groups)


def _drive_dtype(bound: float) -> np.dtype:
    """float32 or float64 holding integers (below 2**24, resp. F64_INPUT_LIMIT), else int64."""
    if bound < FLOAT32_EXACT:
        return np.dtype(np.float32)
    return np.dtype(np.float64 if bound < F64_INPUT_LIMIT else np.int64)


def _row_factor(n: int) -> int:
    """P of a (C, P) view of n neurons kept in rows layout (any factor works)."""
    return math.gcd(n, 4096)


def fixed_drive(pop, plan: PopulationPlan, src, activity=None) -> tuple[np.ndarray, float]:
    """``(drive, bound)``: the (T, B, C, P) integer synaptic drive of ``pop`` from other
    sources (float32 or float64 holding integers when its bound allows, else int64) and a
    bound of ``|drive|`` plus its recurrent groups' input; counts each group in ``activity``
    (in program order).

    ``C P = pop.size`` in C order (C channels of P tokens or positions). The array is a view
    of the first product in the memory layout it came in (e.g. channel-major (C, T*B, P)
    from one large product), so it is the drive itself; later products add into it.
    """
    T, B, n = src.T, src.B, pop.size
    bounds = [_stage_bounds(st, src) for st in plan.stages]
    bound = plan.own_bound + sum(b[1] for b in bounds)
    dtype = _drive_dtype(bound)
    total = None  # (T*B, C, P) view
    for st, (b_product, _) in zip(plan.stages, bounds):
        if is_shared(st.weights):
            p_dtype = exact_dtype(b_product)
            if st.weight_exp < 0 and len(st.groups) > 1:
                y = _floor_sum(st, src, p_dtype)
            else:
                x = src.summed(st.sources, st.lag, p_dtype, keep=st.reused)
                y = st.product(x, p_dtype)
            if dtype.kind == "i" and y.dtype.kind == "f":
                y = y.astype(np.int64)
        else:  # the sparse product of one group, unchanged
            y = _sparse_input(st, src).T  # (n, T*B) transposed
            y = y.reshape(T * B, n // _row_factor(n), _row_factor(n))
        if total is None:
            if y.dtype == dtype:
                total = y  # a new array of the product, in its layout: the drive itself
            else:
                total = np.empty((y.shape[1], T * B, y.shape[2]), dtype).transpose(1, 0, 2)
                np.copyto(total, y)
        else:
            total += y.reshape(total.shape)
    if activity is not None:  # in program order, whatever the stages
        for g in plan.groups:
            activity.count_group(g, plan.fanouts.get(g.name), src.active(g.source, g.lag))
    if total is None:
        total = np.zeros((T * B, n // _row_factor(n), _row_factor(n)), dtype)
    return total.reshape(T, B, *total.shape[1:]), bound


# Packed residual products: a float32 product holds integers below 2**24, a float64 one
# below 2**53 at twice the cost.
PACKED_BITS = {np.dtype(np.float32): (24, 1.0), np.dtype(np.float64): (53, 2.0)}


def _packing(st: Stage, n: int, shift: int):
    """How :func:`_floor_sum` packs the residual products of the ``n`` groups of ``st``:
    ``(field bits, groups per product, dtype, residual kernel)``, or None when the packed
    form costs no fewer products than one product per group."""
    best = None
    for dtype, (capacity, cost) in PACKED_BITS.items():
        kernel, row_max = st.residual_kernel(shift, dtype)
        # a field holds one group's (W mod 2**k) @ s <= row_max, and the sum over all groups
        # of the low k bits stays below 2**bits - 1 (no carry between fields; the mod below)
        bits = max(row_max.bit_length(), (n * ((1 << shift) - 1) + 1).bit_length(), 1)
        per = min(n, capacity // bits)
        if per >= 2:
            total = 1.0 + -(-n // per) * cost  # the merged product plus the packed ones
            if total < n and (best is None or total < best[0]):
                best = (total, (bits, per, dtype, kernel))
    return None if best is None else best[1]


def _floor_sum(st: Stage, src, dtype) -> np.ndarray:
    """``sum_g floor((W @ s_g) / 2**k)`` of a stage whose groups share one kernel ``W`` and
    a negative exponent ``-k``, (T*B, C_out, P) of ``dtype``.

    Each group floors on its own, so the sum is not ``floor(W @ sum_g s_g / 2**k)``; but
    with ``y_g = W @ s_g`` and ``r_g = y_g mod 2**k`` (in 0 .. 2**k - 1),
    ``sum_g floor(y_g / 2**k) = (W @ sum_g s_g - sum_g r_g) / 2**k`` exactly, and
    ``r_g = ((W mod 2**k) @ s_g) mod 2**k`` for integer ``s_g``. For spike sources (0/1)
    the residual products of several groups share one product: the sources are packed as
    ``sum_j s_j 2**(bits j)`` in fields wide enough for ``(W mod 2**k) @ s_j`` (all
    non-negative, so the packed product and its partial sums are exact integers below
    ``2**(bits per)``); the low ``k`` bits of every field are masked, summed over the
    packed products, and ``sum_j F_j 2**(bits j) mod (2**bits - 1) = sum_j F_j`` (while
    that sum is below ``2**bits - 1``) adds the fields. With other sources, an int64
    product or no saving, every group is a product of its own.
    """
    shift = -st.weight_exp
    rows = [src.rows(s, st.lag) for s in st.sources]
    packing = None
    if dtype.kind == "f" and all(r.dtype == bool for r in rows):
        packing = _packing(st, len(rows), shift)
    if packing is None:
        total = None
        for r in rows:
            y = st.product(r, dtype)
            if total is None:
                total = y
            else:
                total += y
        return total
    bits, per, p_dtype, kernel = packing
    main = st.apply(st.kernel(dtype, 0), src.summed(st.sources, st.lag, dtype, keep=st.reused),
                    dtype)
    i_dtype = np.int32 if p_dtype == np.float32 else np.int64
    low = (1 << shift) - 1
    mask = sum(low << (bits * j) for j in range(per))
    acc = None
    for c0 in range(0, len(rows), per):
        packed = src.packed(st.sources[c0:c0 + per], st.lag, bits, p_dtype, keep=st.reused)
        fields = st.apply(kernel, packed, p_dtype).astype(i_dtype)
        np.bitwise_and(fields, mask, out=fields)
        if acc is None:
            acc = fields
        else:
            acc += fields
    np.remainder(acc, (1 << bits) - 1, out=acc)
    main -= acc.astype(dtype)
    main *= 2.0 ** -shift  # exact: the difference is a multiple of 2**k
    return main


def _source_parts(src, source: str, lag: int) -> list[np.ndarray]:
    """The rows a group reads from ``source``: an attention op's counts per key block of its
    units (each block's partial is weighted and shifted on its own, as its unit sends it),
    else the source's rows."""
    if src.kinds[source] is SourceKind.ATTENTION:
        return src.attention_parts(source, lag)
    return [src.rows(source, lag)]


def _sparse_input(stage: Stage, src) -> np.ndarray:
    """(n, T*B) int64 ``(W @ s) << weight_exp`` of a one-group stage with a scipy matrix."""
    parts = _source_parts(src, stage.sources[0], stage.lag)

    def columns(p):  # C-contiguous, as the CSR product reads them (no second copy)
        return np.ascontiguousarray(p.T, dtype=np.int64)

    y = synaptic_input(stage.weights, columns(parts[0]), stage.weight_exp)
    for p in parts[1:]:
        y += synaptic_input(stage.weights, columns(p), stage.weight_exp)
    return y


def float_drive(pop, plan: PopulationPlan, src, activity=None) -> tuple[np.ndarray, float]:
    """``(drive, inf)``: the (T, B, size) float64 drive of ``pop`` from other sources, group
    by group in program order (``W @ x`` of each real matrix on (n_src, T*B) columns)."""
    total = np.zeros((pop.size, src.T * src.B), np.float64)
    for g in plan.groups:
        for part in _source_parts(src, g.source, g.lag):
            total += np.asarray(g.weight @ part.T.astype(np.float64))
    return total.T.reshape(src.T, src.B, pop.size), float("inf")
