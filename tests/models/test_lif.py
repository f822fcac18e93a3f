"""MultiStepLIF: hand-derived golden traces, threshold equality, surrogate gradient."""
import math

import pytest
import torch

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.lif import MultiStepLIF, multistep_lif_trace, spike_with_sigmoid_surrogate


def _autograd_reference(x, tau, v_threshold, alpha):
    """The spikingjelly loop written step by step, differentiated by autograd."""
    v = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        h = v + (x_t - v) / tau
        s = spike_with_sigmoid_surrogate(h - v_threshold, alpha)
        v = h * (1.0 - s.detach())
        out.append(s)
    return torch.stack(out)


def test_constant_subthreshold_input_golden_trace():
    # Gold standard, derived by hand for x = 0.6 every step, tau = 2, v_th = 1:
    #   h[t] = v[t-1] + (0.6 - v[t-1]) / 2, no spike while h < 1, so v[t] = h[t]
    #   h0 = 0 + 0.6/2            = 0.3
    #   h1 = 0.3 + (0.6-0.3)/2    = 0.45
    #   h2 = 0.45 + (0.6-0.45)/2  = 0.525
    #   h3 = 0.525 + 0.075/2      = 0.5625
    #   h4 = 0.5625 + 0.0375/2    = 0.58125   (-> 0.6 from below, never fires)
    x = torch.full((5, 1), 0.6)
    spikes, h, v = multistep_lif_trace(x, tau=2.0, v_threshold=1.0)
    expected_h = torch.tensor([0.3, 0.45, 0.525, 0.5625, 0.58125]).reshape(5, 1)
    assert torch.allclose(h, expected_h, atol=1e-6)
    assert torch.equal(v, h)
    assert torch.equal(spikes, torch.zeros(5, 1))
    assert torch.equal(MultiStepLIF(2.0, 1.0)(x), spikes)


def test_constant_suprathreshold_input_golden_trace():
    # Gold standard for x = 1.5 every step, tau = 2, v_th = 1 (hard reset to 0):
    #   h0 = 0 + 1.5/2 = 0.75 -> no spike, v0 = 0.75
    #   h1 = 0.75 + (1.5-0.75)/2 = 1.125 -> spike, v1 = 0
    #   then the pattern repeats with period 2.
    x = torch.full((6, 1), 1.5)
    spikes, h, v = multistep_lif_trace(x, tau=2.0, v_threshold=1.0)
    assert spikes.flatten().tolist() == [0, 1, 0, 1, 0, 1]
    assert torch.allclose(h.flatten(), torch.tensor([0.75, 1.125] * 3))
    assert torch.allclose(v.flatten(), torch.tensor([0.75, 0.0] * 3))
    assert torch.equal(MultiStepLIF(2.0, 1.0)(x), spikes)


def test_threshold_equality_fires():
    # h0 = 2.0 / 2 = 1.0 == v_th -> Heaviside(0) = 1 -> spike.
    lif = MultiStepLIF(tau=2.0, v_threshold=1.0)
    assert lif(torch.tensor([[2.0]])).item() == 1.0
    # Just below equality does not fire.
    assert lif(torch.tensor([[1.999]])).item() == 0.0
    # The attention neuron's threshold 0.5: h0 = 1.0 / 2 = 0.5 -> spike.
    assert MultiStepLIF(2.0, 0.5)(torch.tensor([[1.0]])).item() == 1.0


def test_surrogate_gradient_value():
    # One step: h = x / tau = 0.3, u = h - v_th = -0.7;
    # dS/dx = alpha * sig(alpha u) * (1 - sig(alpha u)) / tau with alpha = 4.
    x = torch.tensor([[0.6]], requires_grad=True)
    MultiStepLIF(2.0, 1.0, surrogate_alpha=4.0)(x).sum().backward()
    sig = 1.0 / (1.0 + math.exp(-4.0 * -0.7))
    assert x.grad.item() == pytest.approx(4.0 * sig * (1.0 - sig) / 2.0, rel=1e-5)
    assert x.grad.item() > 0.0


@pytest.mark.parametrize("tau", [2.0, 3.0])
def test_fused_backward_matches_autograd(tau):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 3, 5, generator=gen) * 1.5).requires_grad_()
    w = torch.randn(6, 3, 5, generator=gen)
    spikes = MultiStepLIF(tau, 0.7)(x)
    (spikes * w).sum().backward()
    grad_fused = x.grad.clone()
    x.grad = None
    spikes_ref = _autograd_reference(x, tau, 0.7, 4.0)
    (spikes_ref * w).sum().backward()
    assert torch.equal(spikes, spikes_ref)
    assert torch.allclose(grad_fused, x.grad, atol=1e-6)


def test_parameters_are_python_floats_and_no_state_between_calls():
    lif = MultiStepLIF(tau=2, v_threshold=1)
    assert type(lif.tau) is float and type(lif.v_threshold) is float
    x = torch.full((3, 2), 1.5)
    assert torch.equal(lif(x), lif(x))  # state does not leak from one call to the next


@pytest.mark.parametrize("kwargs, match", [
    ({"tau": 0.5}, "tau"), ({"v_threshold": 0.0}, "v_threshold"),
    ({"surrogate_alpha": -1.0}, "surrogate_alpha")])
def test_invalid_parameters_raise(kwargs, match):
    with pytest.raises(NmcDeployError, match=match):
        MultiStepLIF(**kwargs)
