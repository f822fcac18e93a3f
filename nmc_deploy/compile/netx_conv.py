"""Reading netx ``conv``, ``pool`` and ``flatten`` layers (lava-dl 0.6.0) as shared kernels.

What netx builds for a ``conv`` layer (``lava/lib/dl/netx/hdf5.py::create_conv``,
``blocks/process.py::Conv``): the file holds SLAYER's layout, ``shape`` (C, H, W) and
``weight`` (C_out, C_in/groups, kH, kW[, 1]); ``stride``, ``padding``, ``dilation`` in (H, W)
order (or one int), ``groups``. netx reverses everything to Lava's (X, Y, C) = (W, H, C)
order, flips both kernel axes and transposes to (C_out, kW, kH, C_in), and Lava's ``Conv``
then computes a true convolution (``scipy.signal.convolve2d`` of the padded input with the
dilated kernel, every ``stride``-th output): flip and convolution cancel, so per step::

    a[o, p, q] = sum_(i, a, b) weight[o, i, a, b] x[g(o) C_in/groups + i,
                                                  p s0 - p0 + a d0, q s1 - p1 + b d1]

the correlation :class:`~nmc_deploy.program.shared_weights.ConvShared` holds on our
channel-major (C, H, W) flat index. netx passes the file's integer weights (``astype(int)``)
to ``Conv`` as they are: no ``optimize_weight_bits``, no weight exponent, no 8-bit clip
(the fixed model ignores ``num_weight_bits``), ``a`` wrapped to 24-bit signed; the neuron is
the CUBA ``LIF`` of a dense layer (bias channel-wise or per neuron). We store the kernel on
Lava Sparse's 8-bit grid with the exponent that makes ``W << weight_exp`` equal the file's
weights (:func:`kernel_on_grid`), so the reference and our Lava run compute netx's sums.

``pool``: SLAYER's ``Pool`` block (a CUBA layer whose synapse sums each channel's window
with one weight per tap, ``weight`` (1, 1, kH, kW)) is read as the depthwise convolution
(``groups = C``) netx's ``Conv`` block computes for that kernel. netx 0.6.0 itself refuses
the type (``NotImplementedError``), so a file with pool layers runs on no Lava build; the
tests check the reading against netx running the same file with each pool layer written as
that conv layer. SLAYER zero-pads the end of an input whose size is not a multiple of the
kernel; such a pool (an output size the convolution rule does not give) is refused.

``flatten``: netx connects the next ``dense`` layer to the previous layer's (W, H, C) port
transposed to (C, H, W) and flattened, i.e. our flat order: the dense weights' columns are
ours as written. Our populations keep the (C, H, W) order; :func:`netx_order` maps netx's
(W, H, C) flat index onto it (the readout of a convolutional last layer).

The functions take open HDF5 groups from :mod:`.netx` (which alone opens the file) and
raise :class:`~nmc_deploy.errors.InputFileError` in one line naming the layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputFileError
from ..ir.nodes import conv_output_hw
from ..loihi.synapses import lava_effective_weights
from ..program.shared_weights import ConvShared

__all__ = ["ConvLayer", "read_conv", "read_pool", "conv_input_shape", "kernel_on_grid",
           "layer_bias", "netx_order", "chw_shape", "NETX_CONV_ACCUMULATOR_BITS"]

NETX_CONV_ACCUMULATOR_BITS = 24  # Lava Conv fixed model: a_out = signed_clamp(a, bits=24)
_EXPONENTS = (0, 1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, -5, -6, -7)  # tried in this order


@dataclass(frozen=True)
class ConvLayer:
    """A conv or pool layer read from a netx file: our synapse group's weights and
    exponent (``weights.kernel << weight_exp`` = netx's integer kernel) and the (C, H, W)
    shape of its population."""

    weights: ConvShared  # int32 kernel on Lava Sparse's 8-bit grid, on the input's (C, H, W)
    weight_exp: int
    shape: tuple[int, int, int]


def _values(g, key: str, where: str) -> np.ndarray:
    try:
        value = np.asarray(g[key][()], np.float64)
    except KeyError:
        raise InputFileError(f"{where}: no '{key}'") from None
    if not np.isfinite(value).all() or np.any(value != np.round(value)):
        raise InputFileError(f"{where}: '{key}' ({value.ravel()[:4]}) must hold integers; "
                             "netx casts it to int")
    return value.astype(np.int64)


def _pair(g, key: str, where: str, default=None) -> tuple[int, int]:
    """A (H, W) pair as SLAYER writes it (one int or two values; netx reverses to (X, Y));
    ``default``: an int or an (H, W) pair for a missing key."""
    if key not in g and default is not None:
        return tuple(default) if isinstance(default, tuple) else (default, default)
    v = _values(g, key, where).ravel()
    if v.size not in (1, 2):
        raise InputFileError(f"{where}: '{key}' ({list(v)}) must be one int or (H, W)")
    if v.min() < (0 if key == "padding" else 1):  # a stride or dilation of 0 divides by 0
        raise InputFileError(f"{where}: '{key}' ({list(v)}) must be "
                             f"{'>= 0' if key == 'padding' else '>= 1'}")
    return (int(v[0]), int(v[-1]))


def chw_shape(g, where: str) -> tuple[int, ...]:
    """A layer's ``shape`` as written (SLAYER's (C, H, W); netx reverses it to (W, H, C))."""
    return tuple(int(s) for s in _values(g, "shape", where).ravel())


def kernel_on_grid(weight: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """``(W, weight_exp)`` with ``W`` on Lava Sparse's 8-bit grid (unchanged by
    :func:`~nmc_deploy.loihi.synapses.lava_effective_weights`) and ``W << weight_exp``
    (``>>`` if negative) equal to ``weight`` for every sum of spikes: exponent 0 if the
    integers fit, else a right shift of weights divisible by a power of two, else a left
    shift (Lava floors ``(W @ s) >> k``, exact because every ``W`` is a multiple of 2**k).
    A pure function; raises :class:`InputFileError` when no exponent fits."""
    e = np.asarray(weight, np.int64)
    for exp in _EXPONENTS:
        if exp >= 0:
            if np.any(e % (1 << exp)):
                continue
            w = e >> exp
        else:
            w = e << -exp
        if np.array_equal(lava_effective_weights(w), w):
            return w.astype(np.int32), exp
    raise InputFileError(f"{where}: weights (range [{e.min()}, {e.max()}]) do not fit an 8-bit "
                         "Lava synapse with any weight exponent (netx's Conv takes them "
                         "unclipped; our synapse groups are 8-bit); quantize them to 8 bits "
                         "(SLAYER's quantize_8bit does)")


def _kernel(g, where: str) -> np.ndarray:
    w = _values(g, "weight", where)
    if w.ndim == 5 and w.shape[4] == 1:  # SLAYER's (out, in, kH, kW, 1); netx drops the 1
        w = w[..., 0]
    if w.ndim != 4:
        raise InputFileError(f"{where}: 'weight' has shape {w.shape}; netx reads a conv "
                             "kernel (C_out, C_in/groups, kH, kW)")
    return w


def _check_delay(g, where: str) -> None:
    if "delay" in g and np.any(np.asarray(g["delay"][()])):
        raise InputFileError(f"{where}: has synaptic delays, which netx ignores for conv and "
                             "pool layers (SLAYER applies them); train without delays")


def _finish(g, where: str, kernel: np.ndarray, in_shape, stride, padding, dilation,
            groups: int, x_max: int) -> ConvLayer:
    """The layer's group and population shape; checks the file's ``shape`` and the
    accumulator."""
    hw = conv_output_hw(in_shape[1:], kernel.shape[2:], stride, padding, dilation)
    out = (int(kernel.shape[0]), *hw)
    written = chw_shape(g, where)
    if min(hw) < 1 or tuple(written) != out:
        raise InputFileError(f"{where}: 'shape' {list(written)} is not the output {list(out)} "
                             f"of its kernel, stride, padding and dilation on the input "
                             f"{list(in_shape)} (C, H, W)")
    worst = int(np.abs(kernel).reshape(kernel.shape[0], -1).sum(axis=1).max()) * x_max
    if worst >= 1 << (NETX_CONV_ACCUMULATOR_BITS - 1):
        raise InputFileError(f"{where}: worst-case synaptic sum ({worst}) exceeds Lava Conv's "
                             f"{NETX_CONV_ACCUMULATOR_BITS}-bit signed accumulator (it wraps)")
    if not kernel.any():
        raise InputFileError(f"{where}: all-zero kernel (a fully pruned layer)")
    w, exp = kernel_on_grid(kernel, where)
    shared = ConvShared(w, tuple(int(v) for v in in_shape), stride, padding, dilation, groups)
    return ConvLayer(shared, exp, out)


def _need_chw(in_shape, where: str, kind: str) -> None:
    if len(in_shape) != 3:
        raise InputFileError(f"{where}: a {kind} layer reads a (C, H, W) layer, not a flat one "
                             f"(shape {list(in_shape)}); netx convolves only (W, H, C) ports")


def read_conv(g, where: str, in_shape: tuple, x_max: int) -> ConvLayer:
    """A netx ``conv`` layer on an input of ``in_shape`` (C, H, W) (module docstring);
    ``x_max`` bounds one input value (1 for spikes)."""
    _need_chw(in_shape, where, "conv")
    _check_delay(g, where)
    kernel = _kernel(g, where)
    for key in ("stride", "padding", "dilation", "groups"):
        if key not in g:
            raise InputFileError(f"{where}: no '{key}'; netx's create_conv reads it")
    groups = int(_values(g, "groups", where).ravel()[0])
    co, cig = kernel.shape[:2]
    if groups < 1 or co % groups or cig * groups != in_shape[0]:
        raise InputFileError(f"{where}: kernel {list(kernel.shape)} with groups {groups} does "
                             f"not read the {in_shape[0]} channels of its input")
    return _finish(g, where, kernel, in_shape, _pair(g, "stride", where),
                   _pair(g, "padding", where), _pair(g, "dilation", where), groups, x_max)


def read_pool(g, where: str, in_shape: tuple, x_max: int) -> ConvLayer:
    """A SLAYER ``pool`` layer (type 'pool') as the depthwise convolution netx's Conv block
    computes for its kernel (module docstring)."""
    _need_chw(in_shape, where, "pool")
    _check_delay(g, where)
    w = _kernel(g, where)
    if w.shape[:2] != (1, 1):
        raise InputFileError(f"{where}: pool 'weight' has shape {list(w.shape)}; SLAYER's "
                             "pool kernel is (1, 1, kH, kW), shared by every channel")
    c = int(in_shape[0])
    kernel = np.broadcast_to(w, (c, 1, *w.shape[2:])).copy()
    return _finish(g, where, kernel, in_shape,
                   _pair(g, "stride", where, tuple(w.shape[2:4])),
                   _pair(g, "padding", where, 0), _pair(g, "dilation", where, 1), c, x_max)


def conv_input_shape(g, where: str, pool: bool = False) -> tuple[int, int, int]:
    """The (C, H, W) input of a first conv (or pool) layer in a file without an input
    layer: unique only with stride 1 (netx itself needs ``input_shape`` then)."""
    kernel = _kernel(g, where)
    groups = int(_values(g, "groups", where).ravel()[0]) if "groups" in g else 1
    stride = _pair(g, "stride", where, tuple(kernel.shape[2:4]) if pool else 1)
    padding, dilation = _pair(g, "padding", where, 0), _pair(g, "dilation", where, 1)
    out = chw_shape(g, where)
    if stride != (1, 1) or len(out) != 3:
        raise InputFileError(f"{where}: the first layer is a {'pool' if pool else 'conv'} and "
                             "the file has no input layer; its input size follows only from "
                             f"stride 1 (got {list(stride)}): add an 'input' layer with "
                             "'shape' [C, H, W] (netx reads it too)")
    hw = [out[1 + i] - 2 * padding[i] + dilation[i] * (kernel.shape[2 + i] - 1)
          for i in range(2)]
    channels = out[0] if pool else int(kernel.shape[1]) * groups
    return (int(channels), int(hw[0]), int(hw[1]))


def layer_bias(g, where: str, shape: tuple) -> np.ndarray:
    """The file's bias per neuron in our (C, H, W) order (netx: one per neuron, or one per
    channel of a (W, H, C) layer)."""
    n = int(np.prod(shape))
    if "bias" not in g:
        return np.zeros(n, np.int64)
    b = np.asarray(g["bias"][()], np.float64)
    if not np.isfinite(b).all() or np.any(b != np.round(b)):
        raise InputFileError(f"{where}: 'bias' must hold integers")
    b = b.astype(np.int64)
    if len(shape) == 3 and b.ndim == 1 and b.size == shape[0]:  # one per channel
        return np.repeat(b, shape[1] * shape[2])
    if len(shape) == 3 and b.shape == tuple(shape[::-1]):  # per neuron, netx's (W, H, C)
        return b.transpose(2, 1, 0).ravel()
    if len(shape) == 1 and b.size == n:
        return b.ravel()
    raise InputFileError(f"{where}: 'bias' of shape {list(b.shape)} fits neither the "
                         f"{n} neurons nor the channels of the layer")


def netx_order(shape: tuple[int, ...]) -> np.ndarray:
    """Per netx flat index (C order over (W, H, C), netx's ports), our neuron index (C order
    over (C, H, W)); the identity for a flat layer."""
    idx = np.arange(int(np.prod(shape)))
    if len(shape) != 3:
        return idx
    return idx.reshape(shape).transpose(2, 1, 0).ravel()
