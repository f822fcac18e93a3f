"""Multi-step LIF neuron, equivalent to spikingjelly 0.0.0.0.12 ``MultiStepLIFNode``.

Spikformer uses ``MultiStepLIFNode(tau=2.0, detach_reset=True)`` with the defaults
``decay_input=True, v_reset=0.0, surrogate_function=Sigmoid(alpha=4.0)``
(docs: spikformer-and-pruning.md section 1.1). The exporter reads ``tau`` and
``v_threshold`` from :class:`MultiStepLIF`, and the fixed-point path reproduces the
float update below, so the update is written exactly in spikingjelly's form.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import NmcDeployError

__all__ = ["MultiStepLIF", "SLIF", "multistep_lif_trace", "slif_trace",
           "spike_with_sigmoid_surrogate", "SLIF_MIN_V_THRESHOLD"]

# Smallest threshold an SLIF uses: a learnt threshold is clamped to it in the forward pass
# (and in v_threshold_per_channel), so a threshold driven to <= 0 cannot make a neuron fire
# on every step, and the exporter never sees a non-positive threshold.
SLIF_MIN_V_THRESHOLD = 1e-3


class _SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside forward (``x >= 0`` fires), sigmoid-derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * x)
        return grad_out * (ctx.alpha * sig * (1.0 - sig)), None


def spike_with_sigmoid_surrogate(x: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    r"""Fire where ``x >= 0``; back-propagate the derivative of ``sigmoid(alpha * x)``.

    .. math::

        S = \Theta(x), \quad \Theta(0) = 1, \qquad
        \frac{\partial S}{\partial x} := \alpha\, \sigma(\alpha x)\,(1 - \sigma(\alpha x))

    Parameters
    ----------
    x : torch.Tensor
        Membrane potential minus threshold, ``h - v_threshold``.
    alpha : float
        Sharpness of the surrogate sigmoid (spikingjelly ``surrogate.Sigmoid(alpha=4.0)``).

    Returns
    -------
    torch.Tensor
        Spikes (0.0 or 1.0) with the dtype of ``x``.
    """
    return _SigmoidSurrogateSpike.apply(x, alpha)


def _trace(x: torch.Tensor, v_threshold, charge) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shared no-grad loop: ``h = charge(v, x[t])``; spike on ``h >= v_threshold``; hard reset.

    Each caller passes its own exact charge expression (LIF ``/ tau``, sLIF ``* gain``), so
    the float32 rounding of each neuron model is kept.
    """
    with torch.no_grad():
        spikes = torch.empty_like(x)
        h_all = torch.empty_like(x)
        v_all = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            h = charge(v, x[t])
            s = (h - v_threshold >= 0).to(x.dtype)
            v = h * (1.0 - s)
            spikes[t], h_all[t], v_all[t] = s, h, v
    return spikes, h_all, v_all


def multistep_lif_trace(x: torch.Tensor, tau: float, v_threshold: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the LIF dynamics of :class:`MultiStepLIF` and return every internal trace.

    No gradient flows through this function; it is the forward pass of the neuron and a
    reference for tests and fixed-point comparisons.

    Parameters
    ----------
    x : torch.Tensor
        Input current, shape ``(T, ...)``.
    tau : float
        Membrane time constant in time steps.
    v_threshold : float
        Firing threshold.

    Returns
    -------
    spikes : torch.Tensor
        ``s[t]``, 0.0 or 1.0, shape of ``x``.
    h : torch.Tensor
        Membrane potential after charging, before the reset (``h[t]``).
    v : torch.Tensor
        Membrane potential after the reset (``v[t]``), the state carried to step ``t+1``.
    """
    return _trace(x, v_threshold, lambda v, x_t: v + (x_t - v) / tau)


class _MultiStepLIFFunction(torch.autograd.Function):
    """The whole LIF time loop as one autograd node (forward and hand-written BPTT).

    Forward is the loop of :class:`MultiStepLIF`. Backward, with the reset detached::

        g_h[t] = dL/ds[t] * sg'(h[t] - v_threshold) + g_v[t] * (1 - s[t])
        dL/dx[t] = g_h[t] / tau
        g_v[t-1] = g_h[t] * (1 - 1 / tau)

    which is what autograd computes on the step-by-step graph, at a fraction of the
    Python overhead (one node instead of about eight per step).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float, alpha: float):
        spikes, h, _ = multistep_lif_trace(x, tau, v_threshold)
        ctx.save_for_backward(h - v_threshold, spikes)
        ctx.tau, ctx.alpha = tau, alpha
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        h_minus_th, spikes = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * h_minus_th)
        grad_h_direct = grad_spikes * (ctx.alpha * sig * (1.0 - sig))
        keep = 1.0 - spikes
        grad_x = torch.empty_like(grad_h_direct)
        grad_v = torch.zeros_like(grad_h_direct[0])
        for t in reversed(range(grad_x.shape[0])):
            grad_h = grad_h_direct[t] + grad_v * keep[t]
            grad_x[t] = grad_h / ctx.tau
            grad_v = grad_h * (1.0 - 1.0 / ctx.tau)
        return grad_x, None, None, None


class MultiStepLIF(nn.Module):
    r"""Leaky integrate-and-fire neuron run over a leading time axis, hard reset to zero.

    Per time step ``t`` (state ``v[-1] = 0`` at the start of every forward call)::

        h[t] = v[t-1] + (x[t] - v[t-1]) / tau     # charge (decay_input=True, v_reset=0)
        s[t] = h[t] >= v_threshold                # fire (Heaviside, Heaviside(0) = 1)
        v[t] = h[t] * (1 - s[t])                  # hard reset to 0 (reset detached)

    The charge is computed in exactly this form in float32, not as
    ``(1 - 1/tau) * v + x / tau``, because the exporter and the fixed-point simulators
    reproduce it bit for bit (for ``tau = 2`` both forms agree up to rounding).

    State is local to one forward call: there is nothing to reset between batches.

    Parameters
    ----------
    tau : float
        Membrane time constant in time steps (>= 1; 2.0 in Spikformer).
    v_threshold : float
        Firing threshold (dimensionless, same units as the input).
    surrogate_alpha : float
        Sharpness ``alpha`` of the sigmoid surrogate gradient.

    Attributes
    ----------
    tau, v_threshold, surrogate_alpha : float
        Plain Python floats (read by the exporter).
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, surrogate_alpha: float = 4.0):
        super().__init__()
        if not tau >= 1.0:
            raise NmcDeployError(f"MultiStepLIF: tau ({tau}) must be >= 1 time step")
        if not v_threshold > 0.0:
            raise NmcDeployError(f"MultiStepLIF: v_threshold ({v_threshold}) must be > 0")
        if not surrogate_alpha > 0.0:
            raise NmcDeployError(f"MultiStepLIF: surrogate_alpha ({surrogate_alpha}) must be > 0")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.surrogate_alpha = float(surrogate_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the neuron over ``x`` of shape ``(T, ...)``; return spikes of the same shape."""
        return _MultiStepLIFFunction.apply(x, self.tau, self.v_threshold, self.surrogate_alpha)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, "
                f"surrogate_alpha={self.surrogate_alpha}")


def slif_trace(x: torch.Tensor, input_gain: torch.Tensor, v_threshold: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the :class:`SLIF` dynamics without gradient and return every internal trace.

    Parameters
    ----------
    x : torch.Tensor
        Input current, shape ``(T, ...)``.
    input_gain, v_threshold : torch.Tensor
        ``k = 1 / tau`` and the threshold, each broadcastable against ``x[t]``.

    Returns
    -------
    spikes, h, v : torch.Tensor
        As :func:`multistep_lif_trace`: spikes, potential before and after the reset.
    """
    return _trace(x, v_threshold, lambda v, x_t: v + (x_t - v) * input_gain)


class _SLIFFunction(torch.autograd.Function):
    """The SLIF time loop as one autograd node, with gradients for k and the threshold.

    With ``u[t] = h[t] - v_th``, ``sg'`` the surrogate derivative and the reset detached::

        g_h[t]    = dL/ds[t] * sg'(u[t]) + g_v[t] * (1 - s[t])
        dL/dx[t]  = g_h[t] * k
        dL/dk    += g_h[t] * (x[t] - v[t-1])
        dL/dv_th -= dL/ds[t] * sg'(u[t])
        g_v[t-1]  = g_h[t] * (1 - k)

    ``k`` and ``v_th`` arrive broadcastable against ``x[t]``; their gradients are summed
    back to their own shapes.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, input_gain: torch.Tensor, v_threshold: torch.Tensor,
                alpha: float):
        spikes, h, v = slif_trace(x, input_gain, v_threshold)
        v_prev = torch.cat([torch.zeros_like(v[:1]), v[:-1]])
        ctx.save_for_backward(h - v_threshold, spikes, x - v_prev, input_gain, v_threshold)
        ctx.alpha = alpha
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        h_minus_th, spikes, drive, k, v_th = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * h_minus_th)
        grad_h_direct = grad_spikes * (ctx.alpha * sig * (1.0 - sig))
        keep = 1.0 - spikes
        grad_x = torch.empty_like(grad_h_direct)
        grad_h_all = torch.empty_like(grad_h_direct)
        grad_v = torch.zeros_like(grad_h_direct[0])
        for t in reversed(range(grad_x.shape[0])):
            grad_h = grad_h_direct[t] + grad_v * keep[t]
            grad_h_all[t] = grad_h
            grad_v = grad_h * (1.0 - k)
        grad_x = grad_h_all * k
        grad_k = (grad_h_all * drive).sum(0).sum_to_size(k.shape)
        grad_th = (-grad_h_direct).sum(0).sum_to_size(v_th.shape)
        return grad_x, grad_k, grad_th, None


class SLIF(nn.Module):
    r"""LIF neuron with a learnable threshold and leak per channel (a "synergistic" LIF).

    A drop-in for :class:`MultiStepLIF` (input ``(T, B, ...)``, spikes of the same shape).
    Per time step ``t`` and channel ``c`` (state ``v[-1] = 0`` at every forward call)::

        k[c]  = sigmoid(-leak_logit[c])            # input gain = 1 / tau[c], in (0, 1)
        h[t]  = v[t-1] + (x[t] - v[t-1]) * k[c]    # charge, the MultiStepLIF form
        s[t]  = h[t] >= v_threshold[c]             # fire (Heaviside(0) = 1)
        v[t]  = h[t] * (1 - s[t])                  # hard reset to 0 (reset detached)

    Gradients reach ``v_threshold`` through the sigmoid surrogate
    (``ds/dv_th = -sg'(h - v_th)``) and ``leak_logit`` through ``k``. The threshold used
    is ``max(v_threshold, SLIF_MIN_V_THRESHOLD)``.

    Initialised from a LIF with time constant ``tau`` and threshold ``v_th``:
    ``leak_logit = log(tau - 1)`` (so ``k = 1 / tau``) and ``v_threshold = v_th``. For
    ``tau = 2`` that is ``leak_logit = 0``, ``k = sigmoid(0) = 0.5`` exactly, and
    ``(x - v) * 0.5`` equals MultiStepLIF's ``(x - v) / 2`` bit for bit, so a freshly
    initialised SLIF reproduces MultiStepLIF exactly (for other ``tau`` the float32 ``k``
    is ``1/tau`` rounded, and results agree to rounding only).

    This is the proposal of docs/spikformer-and-pruning.md section 3.3 (the paper's own
    sLIF equations are unavailable).

    Parameters
    ----------
    num_channels : int
        C, size of the channel axis.
    tau : float
        Initial membrane time constant in time steps (> 1).
    v_threshold : float
        Initial firing threshold (> 0).
    channel_dim : int
        The channel axis of the ``(T, B, ...)`` input: 2 for ``(T, B, C, H, W)`` maps,
        -1 for ``(T, B, N, D)`` tokens.
    surrogate_alpha : float
        Sharpness of the sigmoid surrogate gradient.

    Attributes
    ----------
    v_threshold : nn.Parameter
        ``(C,)`` thresholds.
    leak_logit : nn.Parameter
        ``(C,)`` leak logits, ``k = sigmoid(-leak_logit)``.
    channel_dim : int
    surrogate_alpha : float
    """

    def __init__(self, num_channels: int, tau: float = 2.0, v_threshold: float = 1.0,
                 channel_dim: int = -1, surrogate_alpha: float = 4.0):
        super().__init__()
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) \
                or num_channels < 1:
            raise NmcDeployError(
                f"SLIF: num_channels ({num_channels!r}) must be a positive integer")
        if not tau > 1.0:
            raise NmcDeployError(
                f"SLIF: tau ({tau}) must be > 1 time step (k = 1/tau must lie in (0, 1))")
        if not v_threshold > 0.0:
            raise NmcDeployError(f"SLIF: v_threshold ({v_threshold}) must be > 0")
        if not surrogate_alpha > 0.0:
            raise NmcDeployError(f"SLIF: surrogate_alpha ({surrogate_alpha}) must be > 0")
        if channel_dim in (0, 1):
            raise NmcDeployError(
                f"SLIF: channel_dim ({channel_dim}) must not be the time (0) or batch (1) axis")
        self.num_channels = num_channels
        self.channel_dim = int(channel_dim)
        self.surrogate_alpha = float(surrogate_alpha)
        self.v_threshold = nn.Parameter(torch.full((num_channels,), float(v_threshold)))
        self.leak_logit = nn.Parameter(torch.full((num_channels,), math.log(tau - 1.0)))

    @classmethod
    def from_lif(cls, lif: MultiStepLIF, num_channels: int, channel_dim: int) -> "SLIF":
        """An SLIF that starts with ``lif``'s ``tau``, threshold and surrogate."""
        return cls(num_channels, lif.tau, lif.v_threshold, channel_dim, lif.surrogate_alpha)

    def _broadcast_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """Shape that puts the C channel values on the channel axis of one step ``x[t]``."""
        dim = self.channel_dim % x.ndim
        if dim < 2 or x.shape[dim] != self.num_channels:
            raise NmcDeployError(
                f"SLIF: input shape ({tuple(x.shape)}) has no channel axis of size "
                f"{self.num_channels} at channel_dim ({self.channel_dim})")
        return (self.num_channels,) + (1,) * (x.ndim - 1 - dim)

    def _threshold(self) -> torch.Tensor:
        return self.v_threshold.clamp_min(SLIF_MIN_V_THRESHOLD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the neuron over ``x`` of shape ``(T, B, ...)``; return spikes of that shape."""
        shape = self._broadcast_shape(x)
        k = torch.sigmoid(-self.leak_logit).reshape(shape)
        v_th = self._threshold().reshape(shape)
        return _SLIFFunction.apply(x, k, v_th, self.surrogate_alpha)

    def v_threshold_per_channel(self) -> torch.Tensor:
        """The thresholds the forward pass uses, ``(C,)`` float32, detached."""
        return self._threshold().detach().clone().float()

    def input_gain_per_channel(self) -> torch.Tensor:
        """The input gains ``k = 1/tau`` the forward pass uses, ``(C,)`` float32, detached."""
        return torch.sigmoid(-self.leak_logit).detach().clone().float()

    def extra_repr(self) -> str:
        return (f"num_channels={self.num_channels}, channel_dim={self.channel_dim}, "
                f"surrogate_alpha={self.surrogate_alpha}")
