"""Multi-step LIF neuron, equivalent to spikingjelly 0.0.0.0.12 ``MultiStepLIFNode``.

Spikformer uses ``MultiStepLIFNode(tau=2.0, detach_reset=True)`` with the defaults
``decay_input=True, v_reset=0.0, surrogate_function=Sigmoid(alpha=4.0)``
(docs: spikformer-and-pruning.md section 1.1). The exporter reads ``tau`` and
``v_threshold`` from :class:`MultiStepLIF`, and the fixed-point path reproduces the
float update below, so the update is written exactly in spikingjelly's form.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NmcDeployError

__all__ = ["MultiStepLIF", "multistep_lif_trace", "spike_with_sigmoid_surrogate"]


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
    with torch.no_grad():
        spikes = torch.empty_like(x)
        h_all = torch.empty_like(x)
        v_all = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            h = v + (x[t] - v) / tau
            s = (h - v_threshold >= 0).to(x.dtype)
            v = h * (1.0 - s)
            spikes[t], h_all[t], v_all[t] = s, h, v
    return spikes, h_all, v_all


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
