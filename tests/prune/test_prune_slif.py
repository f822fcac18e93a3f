"""SLIF: identical to MultiStepLIF at init, gradients to threshold and leak, conversion."""
import math

import pytest
import torch
from conftest import make_active_spikformer

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.lif import (MultiStepLIF, SLIF, multistep_lif_trace,
                                   spike_with_sigmoid_surrogate)
from nmc_deploy.models.spikformer import Spikformer, SpikformerConfig
from nmc_deploy.prune.slif import convert_to_slif, slif_param_groups, slif_parameters

CFG = SpikformerConfig(img_size=8, embed_dim=16, num_heads=2, depth=2, mlp_ratio=2,
                       time_steps=4, sps_channels=(4, 8, 16), sps_pool=(False, True, False))


@pytest.fixture(scope="module")
def active():
    return make_active_spikformer(CFG, seed=0)


def _autograd_reference(x, k, v_th, alpha, shape):
    """SLIF step by step, differentiated by autograd (reference for the fused backward)."""
    k, v_th = k.reshape(shape), v_th.reshape(shape)
    v = torch.zeros_like(x[0])
    out = []
    for x_t in x:
        h = v + (x_t - v) * k
        s = spike_with_sigmoid_surrogate(h - v_th, alpha)
        v = h * (1.0 - s.detach())
        out.append(s)
    return torch.stack(out)


def test_sigmoid_of_zero_is_exactly_one_half():
    assert torch.sigmoid(torch.tensor(0.0)).item() == 0.5
    assert torch.sigmoid(-torch.tensor(math.log(2.0 - 1.0))).item() == 0.5


def test_times_half_equals_divide_by_two_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(-2 ** 31, 2 ** 31 - 1, (1_000_000,), generator=gen, dtype=torch.int64)
    x = bits.to(torch.int32).view(torch.float32)
    x = x[torch.isfinite(x)]
    x = torch.cat([x, torch.tensor([1e-45, -1e-45, 3e-39, 1.0, 0.0])])  # incl. subnormals
    assert torch.equal((x / 2.0).view(torch.int32), (x * torch.tensor(0.5)).view(torch.int32))


@pytest.mark.parametrize("shape, channel_dim, v_th", [
    ((6, 3, 5, 4, 4), 2, 1.0), ((6, 3, 7, 5), -1, 0.5), ((5, 2, 9, 8), -1, 0.7)])
def test_fresh_slif_equals_multistep_lif(shape, channel_dim, v_th):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=gen) * 1.5 + 0.5
    c = shape[channel_dim]
    lif, slif = MultiStepLIF(2.0, v_th), SLIF(c, 2.0, v_th, channel_dim)
    spikes = slif(x)
    assert torch.equal(spikes, lif(x))
    assert 0 < float(spikes.detach().mean()) < 1
    assert torch.equal(slif.v_threshold_per_channel(), torch.full((c,), v_th))
    assert torch.equal(slif.input_gain_per_channel(), torch.full((c,), 0.5))


def test_per_channel_accessors_are_detached_floats():
    slif = SLIF(3, tau=4.0, v_threshold=0.8, channel_dim=2)
    th, k = slif.v_threshold_per_channel(), slif.input_gain_per_channel()
    assert th.dtype == k.dtype == torch.float32 and th.shape == k.shape == (3,)
    assert not th.requires_grad and not k.requires_grad
    assert torch.allclose(k, torch.full((3,), 0.25))
    th.fill_(5.0)  # a copy: the module is unchanged
    assert torch.equal(slif.v_threshold_per_channel(), torch.full((3,), 0.8))


@pytest.mark.parametrize("shape, channel_dim", [((6, 3, 4, 5), -1), ((5, 2, 3, 4, 4), 2)])
def test_fused_backward_matches_autograd(shape, channel_dim):
    gen = torch.Generator().manual_seed(0)
    c = shape[channel_dim]
    slif = SLIF(c, 2.0, 0.7, channel_dim)
    with torch.no_grad():  # heterogeneous per-channel parameters
        slif.v_threshold.copy_(torch.rand(c, generator=gen) + 0.3)
        slif.leak_logit.copy_(torch.randn(c, generator=gen))
    x = (torch.randn(*shape, generator=gen) * 1.5).requires_grad_()
    w = torch.randn(*shape, generator=gen)
    (slif(x) * w).sum().backward()
    grads = [x.grad.clone(), slif.v_threshold.grad.clone(), slif.leak_logit.grad.clone()]
    x.grad = None
    th = slif.v_threshold.detach().clone().requires_grad_()
    logit = slif.leak_logit.detach().clone().requires_grad_()
    bshape = (c,) + (1,) * (len(shape) - 1 - channel_dim % len(shape))
    ref = _autograd_reference(x, torch.sigmoid(-logit), th, 4.0, bshape)
    assert torch.equal(ref, slif(x.detach()))
    (ref * w).sum().backward()
    for got, expected in zip(grads, [x.grad, th.grad, logit.grad]):
        assert torch.allclose(got, expected, atol=1e-5)
    assert grads[1].abs().sum() > 0 and grads[2].abs().sum() > 0


def test_threshold_gradient_sign_and_reach_in_a_model(active):
    model = convert_to_slif(active, blocks_only=False)
    model.train()
    x = torch.rand(8, 1, 8, 8)
    model(x).sum().backward()
    th_grads = [m.v_threshold.grad for m in model.modules() if isinstance(m, SLIF)]
    assert len(th_grads) == 2 * 7 + len(CFG.sps_channels) + 1
    assert all(g is not None and g.abs().sum() > 0 for g in th_grads)
    # a single neuron: raising the threshold can only lower the spike count
    slif = SLIF(1, 2.0, 1.0)
    slif(torch.full((3, 1, 1), 1.8)).sum().backward()
    assert slif.v_threshold.grad.item() < 0


@pytest.mark.parametrize("blocks_only, neuron, count", [
    (True, "slif_blocks", 14), (False, "slif_all", 18)])
def test_converted_model_is_bit_identical(active, blocks_only, neuron, count):
    model = convert_to_slif(active, blocks_only=blocks_only)
    assert model.config.neuron == neuron
    assert sum(isinstance(m, SLIF) for m in model.modules()) == count
    assert not any(isinstance(m, SLIF) for m in active.modules())  # input copied
    first = model.patch_embed.lifs[0]
    if blocks_only:
        assert isinstance(first, MultiStepLIF)
    else:
        assert first.channel_dim == 2 and first.num_channels == CFG.sps_channels[0]
    assert model.blocks[0].mlp.fc1_lif.num_channels == 32
    assert model.blocks[0].attn.attn_lif.v_threshold_per_channel()[0] == 0.5
    x = torch.rand(8, 1, 8, 8)
    captured = {}
    for tag, m in (("lif", active), ("slif", model)):
        out = []
        hooks = [n.register_forward_hook(lambda mod, i, o: out.append(o))
                 for n in m.modules() if isinstance(n, (MultiStepLIF, SLIF))]
        with torch.no_grad():
            captured[tag] = (m(x), out)
        for h in hooks:
            h.remove()
    assert torch.equal(captured["lif"][0], captured["slif"][0])
    for a, b in zip(captured["lif"][1], captured["slif"][1]):
        assert torch.equal(a, b)
    # the config alone rebuilds the same structure
    Spikformer(model.config).load_state_dict(model.state_dict(), strict=True)


def test_param_groups_put_slif_parameters_apart_without_decay(active):
    model = convert_to_slif(active)
    groups = slif_param_groups(model, lr=1e-2)
    assert len(groups) == 2
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["lr"] == 1e-2
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in slif_parameters(model)}
    assert len(slif_param_groups(active, lr=1e-2)) == 1


def test_invalid_slif_raises():
    with pytest.raises(NmcDeployError, match="tau"):
        SLIF(4, tau=1.0)
    with pytest.raises(NmcDeployError, match="channel_dim"):
        SLIF(4, channel_dim=1)
    with pytest.raises(NmcDeployError, match="no channel axis of size 4"):
        SLIF(4, channel_dim=-1)(torch.zeros(2, 1, 3))
    with pytest.raises(NmcDeployError, match="neuron"):
        SpikformerConfig(neuron="plif")


def test_multistep_lif_unchanged_by_the_shared_module():
    # the existing golden trace, re-checked next to SLIF
    spikes, h, _ = multistep_lif_trace(torch.full((2, 1), 1.5), 2.0, 1.0)
    assert h.flatten().tolist() == [0.75, 1.125] and spikes.flatten().tolist() == [0, 1]
