"""Graph IR nodes: small frozen dataclasses that hold parameters and compute nothing.

Each node follows the NIR node of the same name (NIR 1.0.8 semantics, shapes exclude batch
and time, C-order). :class:`SpikingSelfAttention` is our extension (NIR has no product of two
dynamic signals); its schema is in docs/nir-extensions.md. Arrays are stored read-only;
edit a node with ``dataclasses.replace``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from ..errors import GraphError

__all__ = ["Node", "Input", "Output", "Affine", "Conv1d", "Conv2d", "Scale", "SumPool2d",
           "Threshold", "Flatten", "LIF", "Integrator", "SpikingSelfAttention", "TokenSelect",
           "IF", "LI", "CubaLIF", "CubaLI", "Delay", "AvgPool2d", "NODE_TYPES",
           "conv_output_hw"]


def _frozen_array(x, dtype=None) -> np.ndarray:
    """``x`` as a read-only array; an array that is already read-only and owns its memory
    (frozen before, or fresh from a file) is kept, not copied (no writable view of it can
    exist: a view of a read-only array cannot be made writable)."""
    if (isinstance(x, np.ndarray) and not x.flags.writeable and x.flags.owndata
            and (dtype is None or x.dtype == np.dtype(dtype))):
        return x
    arr = np.array(x, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


def _int_tuple(x, n: int) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(x)).astype(int).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, n)
    return tuple(int(v) for v in arr)


def conv_output_hw(hw, kernel, stride, padding, dilation=(1, 1)) -> tuple[int, int]:
    """Output height and width of a 2-d convolution or pooling window (PyTorch rule)."""
    return tuple(
        (int(hw[i]) + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class Node:
    """Base of all graph IR nodes; ``metadata`` is free-form and round-trips through NIR."""

    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def output_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def input_ports(self) -> tuple[str, ...]:
        return ("input",)

    def array_fields(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}


@dataclass(frozen=True, kw_only=True, eq=False)
class _Boundary(Node):
    """A graph boundary node: passes its ``shape`` through (batch and time excluded)."""

    shape: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    input_shape = property(lambda self: self.shape)
    output_shape = property(lambda self: self.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class Input(_Boundary):
    """Graph entry; ``shape`` excludes batch and time."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Output(_Boundary):
    """Graph exit."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Affine(Node):
    """y = W x + b, with ``weight`` of shape (out, in)."""

    weight: np.ndarray  # (n_out, n_in)
    bias: np.ndarray  # (n_out,)

    def __post_init__(self):
        object.__setattr__(self, "weight", _frozen_array(self.weight))
        object.__setattr__(self, "bias", _frozen_array(self.bias))
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise GraphError(f"Affine: got weight.shape={self.weight.shape} and "
                             f"bias.shape={self.bias.shape}; expected (out, in) and (out,)")

    input_shape = property(lambda self: (self.weight.shape[1],))
    output_shape = property(lambda self: (self.weight.shape[0],))


@dataclass(frozen=True, kw_only=True, eq=False)
class Conv2d(Node):
    """PyTorch 2-d cross-correlation: y[co] = sum_ci W[co, ci] * x[ci] + b[co].

    ``input_hw`` is the (height, width) of the input; padding is zero padding.
    """

    weight: np.ndarray  # (C_out, C_in / groups, kH, kW)
    bias: np.ndarray  # (C_out,)
    input_hw: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        object.__setattr__(self, "weight", _frozen_array(self.weight))
        object.__setattr__(self, "bias", _frozen_array(self.bias))
        for name in ("input_hw", "stride", "padding", "dilation"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), 2))
        object.__setattr__(self, "groups", int(self.groups))
        if self.weight.ndim != 4 or self.bias.shape != (self.weight.shape[0],):
            raise GraphError(f"Conv2d: got weight.shape={self.weight.shape} and "
                             f"bias.shape={self.bias.shape}")

    @property
    def input_shape(self):
        return (self.weight.shape[1] * self.groups, *self.input_hw)

    @property
    def output_shape(self):
        hw = conv_output_hw(self.input_hw, self.weight.shape[2:], self.stride, self.padding,
                            self.dilation)
        return (self.weight.shape[0], *hw)


@dataclass(frozen=True, kw_only=True, eq=False)
class Conv1d(Node):
    """PyTorch 1-d cross-correlation over (C, N); with kernel 1 a per-token linear layer."""

    weight: np.ndarray  # (C_out, C_in / groups, K)
    bias: np.ndarray  # (C_out,)
    input_length: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1

    def __post_init__(self):
        object.__setattr__(self, "weight", _frozen_array(self.weight))
        object.__setattr__(self, "bias", _frozen_array(self.bias))
        for name in ("input_length", "stride", "padding", "dilation", "groups"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.weight.ndim != 3 or self.bias.shape != (self.weight.shape[0],):
            raise GraphError(f"Conv1d: got weight.shape={self.weight.shape} and "
                             f"bias.shape={self.bias.shape}")

    @property
    def input_shape(self):
        return (self.weight.shape[1] * self.groups, self.input_length)

    @property
    def output_shape(self):
        k = self.weight.shape[2]
        n = (self.input_length + 2 * self.padding - self.dilation * (k - 1) - 1) // self.stride + 1
        return (self.weight.shape[0], n)


@dataclass(frozen=True, kw_only=True, eq=False)
class Scale(Node):
    """y = s * x elementwise. With s = 1 it is a sum junction for fan-in (residuals)."""

    scale: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "scale", _frozen_array(self.scale))

    input_shape = property(lambda self: self.scale.shape)
    output_shape = property(lambda self: self.scale.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class SumPool2d(Node):
    """Window sum over (C, H, W), zero padding contributes nothing."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    input_chw: tuple[int, int, int]

    def __post_init__(self):
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), 2))
        object.__setattr__(self, "input_chw", _int_tuple(self.input_chw, 3))

    input_shape = property(lambda self: self.input_chw)

    @property
    def output_shape(self):
        hw = conv_output_hw(self.input_chw[1:], self.kernel_size, self.stride, self.padding)
        return (self.input_chw[0], *hw)


@dataclass(frozen=True, kw_only=True, eq=False)
class Threshold(Node):
    """Stateless spike: z = H(x - threshold), firing when x > threshold (strict, as NIR)."""

    threshold: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "threshold", _frozen_array(self.threshold, np.float64))

    input_shape = property(lambda self: self.threshold.shape)
    output_shape = property(lambda self: self.threshold.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class Flatten(Node):
    """Merge dims ``start_dim..end_dim`` (indices exclude batch); the flat C-order vector is unchanged."""

    input_type: tuple[int, ...]
    start_dim: int = 0
    end_dim: int = -1

    def __post_init__(self):
        object.__setattr__(self, "input_type", tuple(int(s) for s in self.input_type))

    input_shape = property(lambda self: self.input_type)

    @property
    def output_shape(self):
        shape = list(self.input_type)
        n = len(shape)
        start = self.start_dim % n
        end = self.end_dim % n
        merged = int(np.prod(shape[start:end + 1]))
        return tuple(shape[:start] + [merged] + shape[end + 1:])


@dataclass(frozen=True, kw_only=True, eq=False)
class LIF(Node):
    """Leaky integrate-and-fire (NIR): tau dv/dt = (v_leak - v) + r I; spike, then v <- v_reset.

    Discretised with the graph's ``dt`` and forward Euler (metadata "integrator"):
    ``v[t] = alpha v[t-1] + gain x[t] + leak`` with ``alpha = 1 - dt/tau``,
    ``gain = r dt/tau``, ``leak = v_leak dt/tau`` (computed in float64, nir.md §5.3), spike when
    ``v >= v_threshold`` if metadata ``threshold_comparison`` is ">=" (spikingjelly,
    Spikformer) and ``v > v_threshold`` otherwise (NIR's default).
    """

    tau: np.ndarray  # membrane time constant, seconds
    r: np.ndarray  # input resistance
    v_leak: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray

    def __post_init__(self):
        shapes = set()
        for name in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
            arr = _frozen_array(getattr(self, name), np.float64)
            object.__setattr__(self, name, arr)
            shapes.add(arr.shape)
        if len(shapes) != 1:
            raise GraphError(f"LIF: parameter shapes differ ({sorted(shapes)}); "
                             "all of tau, r, v_leak, v_threshold, v_reset need one shape")
        if np.any(self.tau <= 0):
            raise GraphError("LIF: tau must be positive")

    input_shape = property(lambda self: self.tau.shape)
    output_shape = property(lambda self: self.tau.shape)


def _neuron_arrays(node, names: tuple[str, ...], kind: str) -> None:
    """Freeze the float64 parameter arrays of a neuron node; all must share one shape."""
    shapes = set()
    for name in names:
        arr = _frozen_array(getattr(node, name), np.float64)
        object.__setattr__(node, name, arr)
        shapes.add(arr.shape)
    if len(shapes) != 1:
        raise GraphError(f"{kind}: parameter shapes differ ({sorted(shapes)}); "
                         f"all of {', '.join(names)} need one shape")
    for name in names:
        if name.startswith("tau") and np.any(getattr(node, name) <= 0):
            raise GraphError(f"{kind}: {name} must be positive")


@dataclass(frozen=True, kw_only=True, eq=False)
class IF(Node):
    """Integrate-and-fire (NIR ``IF``): dv/dt = r I; spike when v > v_threshold, v <- v_reset.

    Forward Euler with step dt: ``v[t] = v[t-1] + r dt x[t]``.
    """

    r: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray

    def __post_init__(self):
        _neuron_arrays(self, ("r", "v_threshold", "v_reset"), "IF")

    input_shape = property(lambda self: self.r.shape)
    output_shape = property(lambda self: self.r.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class LI(Node):
    """Leaky integrator (NIR ``LI``): tau dv/dt = (v_leak - v) + r I; output v (no spikes).

    Forward Euler: ``v[t] = (1 - dt/tau) v[t-1] + (r dt/tau) x[t] + (dt/tau) v_leak``.
    """

    tau: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray

    def __post_init__(self):
        _neuron_arrays(self, ("tau", "r", "v_leak"), "LI")

    input_shape = property(lambda self: self.tau.shape)
    output_shape = property(lambda self: self.tau.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class CubaLIF(Node):
    """Current-based LIF (NIR ``CubaLIF``)::

        tau_syn dI/dt = -I + w_in S
        tau_mem dv/dt = (v_leak - v) + r I;   spike when v > v_threshold, v <- v_reset

    Forward Euler, the voltage reading the updated current (snnTorch, norse, Loihi)::

        I[t] = (1 - dt/tau_syn) I[t-1] + (w_in dt/tau_syn) x[t]
        v[t] = (1 - dt/tau_mem) v[t-1] + (r dt/tau_mem) I[t] + (dt/tau_mem) v_leak
    """

    tau_syn: np.ndarray
    tau_mem: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    w_in: np.ndarray

    def __post_init__(self):
        _neuron_arrays(self, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset",
                              "w_in"), "CubaLIF")

    input_shape = property(lambda self: self.tau_mem.shape)
    output_shape = property(lambda self: self.tau_mem.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class CubaLI(Node):
    """Current-based leaky integrator (NIR ``CubaLI``): CubaLIF without spikes; output v."""

    tau_syn: np.ndarray
    tau_mem: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    w_in: np.ndarray

    def __post_init__(self):
        _neuron_arrays(self, ("tau_syn", "tau_mem", "r", "v_leak", "w_in"), "CubaLI")

    input_shape = property(lambda self: self.tau_mem.shape)
    output_shape = property(lambda self: self.tau_mem.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class Delay(Node):
    """NIR ``Delay``: y(t) = x(t - delay), ``delay`` in seconds per element."""

    delay: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "delay", _frozen_array(self.delay, np.float64))
        if np.any(self.delay < 0):
            raise GraphError("Delay: delays must be non-negative")

    input_shape = property(lambda self: self.delay.shape)
    output_shape = property(lambda self: self.delay.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class AvgPool2d(Node):
    """Window mean over (C, H, W): the SumPool2d window sum divided by kh * kw (NIR
    ``AvgPool2d``; padding counts as zeros in the mean, PyTorch's count_include_pad).
    Not a subclass of SumPool2d, so ``isinstance`` checks cannot confuse the two."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    input_chw: tuple[int, int, int]

    __post_init__ = SumPool2d.__post_init__
    input_shape = property(lambda self: self.input_chw)
    output_shape = SumPool2d.output_shape


@dataclass(frozen=True, kw_only=True, eq=False)
class Integrator(Node):
    """NIR ``I``: dv/dt = r I, output v (used for the time average of the readout)."""

    r: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "r", _frozen_array(self.r, np.float64))

    input_shape = property(lambda self: self.r.shape)
    output_shape = property(lambda self: self.r.shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class SpikingSelfAttention(Node):
    """Spiking self-attention core (extension node; docs/nir-extensions.md).

    Input ports ``q``, ``k``, ``v``: binary spikes of shape (dim, n_tokens), channel
    ``c`` belonging to head ``c // (dim / num_heads)``. Per time step and head h::

        y_h = scale * (Q_h K_h^T) V_h        (Q_h: n_tokens x d spikes; no softmax)

    Output port ``output``: y of shape (dim, n_tokens), real valued (an integer count times
    ``scale``). The node has no state; the LIF that follows it is a separate node.
    """

    num_heads: int
    dim: int
    n_tokens: int
    scale: float

    def __post_init__(self):
        for name in ("num_heads", "dim", "n_tokens"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "scale", float(self.scale))
        if self.dim % self.num_heads:
            raise GraphError(f"SpikingSelfAttention: dim ({self.dim}) is not divisible by "
                             f"num_heads ({self.num_heads})")

    input_ports = property(lambda self: ("q", "k", "v"))
    input_shape = property(lambda self: (self.dim, self.n_tokens))
    output_shape = property(lambda self: (self.dim, self.n_tokens))


@dataclass(frozen=True, kw_only=True, eq=False)
class TokenSelect(Node):
    r"""Token selector (extension node; docs/nir-extensions.md), SparseSpikformer style.

    Input ``x_t`` of shape (dim, n_tokens) for the T steps of a sample (the residual
    stream: sums of spikes). With ``f[n] = (1/T) sum_t x_t[:, n]``::

        z[n] = w2 gelu(w1 f[n] + b1) + b2,   score[n] = z[n, 0] - z[n, 1]
        m[n] = 1 for the n_keep highest scores among the tokens that ``previous`` kept
               (all tokens if none; ties to the lower n), else 0
        y_t[:, n] = m[n] x_t[:, n]

    The decision needs all T steps, so ``y`` is available only after the sample's last
    input step (a deployment buffers one sample). Neurons of the ``gates`` nodes (shape
    (C, n_tokens)) that belong to a dropped token are held at rest (no spikes) for the
    sample: the token is removed from the rest of the network.
    """

    w1: np.ndarray  # (hidden, dim)
    b1: np.ndarray  # (hidden,)
    w2: np.ndarray  # (2, hidden); row 0 = keep
    b2: np.ndarray  # (2,)
    dim: int
    n_tokens: int
    n_keep: int
    time_steps: int
    gates: tuple[str, ...] = ()
    previous: str = ""

    def __post_init__(self):
        for name in ("w1", "b1", "w2", "b2"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), np.float64))
        for name in ("dim", "n_tokens", "n_keep", "time_steps"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "gates", tuple(str(g) for g in self.gates))
        object.__setattr__(self, "previous", str(self.previous or ""))
        h = self.w1.shape[0]
        if (self.w1.shape != (h, self.dim) or self.b1.shape != (h,) or self.w2.shape != (2, h)
                or self.b2.shape != (2,)):
            raise GraphError(f"TokenSelect: predictor shapes w1 {self.w1.shape}, b1 "
                             f"{self.b1.shape}, w2 {self.w2.shape}, b2 {self.b2.shape} do not "
                             f"fit dim {self.dim} (expected (H, dim), (H,), (2, H), (2,))")
        if not 1 <= self.n_keep <= self.n_tokens:
            raise GraphError(f"TokenSelect: n_keep ({self.n_keep}) must be in "
                             f"1..n_tokens ({self.n_tokens})")
        if self.time_steps < 1:
            raise GraphError(f"TokenSelect: time_steps ({self.time_steps}) must be >= 1")

    input_shape = property(lambda self: (self.dim, self.n_tokens))
    output_shape = property(lambda self: (self.dim, self.n_tokens))


NODE_TYPES: dict[str, type[Node]] = {
    cls.__name__: cls
    for cls in (Input, Output, Affine, Conv1d, Conv2d, Scale, SumPool2d, Threshold, Flatten,
                LIF, Integrator, SpikingSelfAttention, TokenSelect, IF, LI, CubaLIF, CubaLI,
                Delay, AvgPool2d)
}
