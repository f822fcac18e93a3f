"""NeuroBench-compatible counts (nmc_deploy.models.op_counts) against NeuroBench 2.3.0 itself.

NeuroBench runs here (and only here: the package never imports it) on the same models and
inputs; every count must be equal. NeuroBench sums effective ops in float32, exact below
2**24 per call, which these models stay under, so equality is exact.
"""
import copy

import pytest
import torch
from torch import nn

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.lif import SLIF, MultiStepLIF
from nmc_deploy.models.op_counts import (NEUROBENCH_LABEL, connection_call_ops,
                                         count_neurobench_ops)

neurobench = pytest.importorskip("neurobench")
snn = pytest.importorskip("snntorch")

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.workload import (ActivationSparsity, MembraneUpdates,  # noqa: E402
                                         SynapticOperations)
from neurobench.models import SNNTorchModel, TorchModel  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

METRICS = [[], [SynapticOperations, ActivationSparsity, MembraneUpdates]]


def _neurobench(model, x, batch_size: int, snntorch: bool = False) -> dict:
    """NeuroBench's own numbers for ``model`` on ``x`` (our LIFs registered as activations)."""
    if snntorch:
        nb_model = SNNTorchModel(model)
    else:
        nb_model = TorchModel(model)
        nb_model.add_activation_module(MultiStepLIF)
        nb_model.add_activation_module(SLIF)
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=batch_size)
    res = Benchmark(nb_model, loader, [], [], METRICS).run(quiet=True)
    nb_model.cleanup_hooks()
    return {**res.pop("SynapticOperations"), **res}


def _assert_equal_counts(ours: dict, theirs: dict, membranes: bool = False) -> None:
    for key in ("Effective_ACs", "Effective_MACs", "Dense"):
        assert ours[key] == theirs[key], key
    assert ours["ActivationSparsity"] == pytest.approx(theirs["ActivationSparsity"], abs=1e-12)
    if membranes:
        assert ours["MembraneUpdates"] == theirs["MembraneUpdates"]


@pytest.fixture(scope="module")
def digits_model():
    """The digits preset (``nmc-deploy demo``'s shape) with active random weights."""
    from conftest import make_active_spikformer
    from nmc_deploy.models.spikformer import preset_config

    return make_active_spikformer(preset_config("digits"), seed=0)


@pytest.fixture(scope="module")
def digit_images(digits):
    from nmc_deploy.models.train import images_to_float

    return images_to_float(digits.x_test[:6], digits.levels)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_tiny_spikformer_counts_equal_neurobench(tiny_model, batch_size):
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = count_neurobench_ops(tiny_model, x, batch_size=batch_size)
    _assert_equal_counts(ours, _neurobench(tiny_model, x, batch_size))
    assert ours["Effective_ACs"] > 0 and ours["Effective_MACs"] > 0
    assert ours["label"] == NEUROBENCH_LABEL and ours["samples"] == 6


def test_digits_model_counts_equal_neurobench(digits_model, digit_images):
    ours = count_neurobench_ops(digits_model, digit_images, batch_size=2, per_layer=True)
    _assert_equal_counts(ours, _neurobench(digits_model, digit_images, 2))
    layers = ours["layers"]
    # NeuroBench's rules, visible per layer: the image conv is a MAC layer, the spiking SPS
    # convs are AC layers, the head reads the averaged (non-binary) stream: MACs
    assert layers["patch_embed.convs.0"]["acs"] == 0 < layers["patch_embed.convs.0"]["macs"]
    assert layers["patch_embed.convs.1"]["macs"] == 0 < layers["patch_embed.convs.1"]["acs"]
    assert layers["head"]["acs"] == 0 < layers["head"]["macs"]


def test_pruned_digits_model_counts_equal_neurobench(digits_model, digit_images):
    from nmc_deploy.prune.l1p import prune_one_shot

    pruned = copy.deepcopy(digits_model)
    prune_one_shot(pruned, 0.5)
    ours = count_neurobench_ops(pruned, digit_images, batch_size=2)
    _assert_equal_counts(ours, _neurobench(pruned, digit_images, 2))
    dense = count_neurobench_ops(digits_model, digit_images, batch_size=2)
    assert ours["Dense"] == dense["Dense"]  # dense counts every connection, pruned or not
    assert (ours["Effective_ACs"] + ours["Effective_MACs"]
            < dense["Effective_ACs"] + dense["Effective_MACs"])


def test_membrane_updates_follow_neurobench_on_snntorch_leaky():
    """Our LIF's carried state ``v[t]`` counted with NeuroBench's rule equals NeuroBench's
    MembraneUpdates of snnTorch ``Leaky(beta=1/2, reset zero, reset_delay=False)`` on the
    same net (the input is halved there: ``h = v + (x - v)/2 = v/2 + x/2``). Integer
    weights and binary inputs keep every potential exact in float32."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randint(-2, 3, (5, 6), generator=gen).float()
    x = (torch.rand(4, 7, 6, generator=gen) < 0.4).float()  # (B, T, in)
    leaky = snn.Leaky(beta=0.5, threshold=0.9, init_hidden=True, reset_mechanism="zero",
                      reset_delay=False)
    theirs_net = nn.Sequential(nn.Linear(6, 5, bias=False), leaky)
    theirs_net[0].weight.data = w.clone()

    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 5, bias=False)
            self.fc.weight.data = 2 * w
            self.lif = MultiStepLIF(2.0, 0.9)

        def forward(self, inp):
            return self.lif(self.fc(inp.transpose(0, 1)))

    ours = count_neurobench_ops(Ours(), x, batch_size=2)
    theirs = _neurobench(theirs_net, x, 2, snntorch=True)
    _assert_equal_counts(ours, theirs, membranes=True)
    assert 0 < ours["MembraneUpdates"] < 5 * 7


def test_connection_rules_by_hand():
    lin = nn.Linear(3, 2, bias=True)
    lin.weight.data = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    # spikes: nonzero inputs 0 and 2 meet 1 + 2 nonzero weights; zero weights never count
    assert connection_call_ops(lin, torch.tensor([[1.0, 0.0, 1.0]])) == (3, 6, True)
    # a value 2 (a residual stream reading two spikes) is one nonzero input and makes MACs
    assert connection_call_ops(lin, torch.tensor([[2.0, 0.0, 1.0]])) == (3, 6, False)
    assert connection_call_ops(lin, torch.tensor([[-1.0, 0.0, 0.0]])) == (1, 6, True)
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    conv.weight.data = torch.ones(1, 1, 3, 3)
    eff, dense, spiking = connection_call_ops(conv, torch.ones(1, 1, 2, 2))
    # 2x2 map, 3x3 kernel, padding 1: each output sees the 4 real inputs only
    assert (eff, dense, spiking) == (16, 16, True)


def test_counting_leaves_the_model_as_it_was(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_neurobench_ops(model, torch.rand(2, 1, 8, 8), batch_size=2)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_bad_batch_size_is_refused(tiny_model):
    with pytest.raises(NmcDeployError, match="batch_size"):
        count_neurobench_ops(tiny_model, torch.rand(2, 1, 8, 8), batch_size=0)


def _other_form(form: str):
    """Token selectors (eval: 'remove'), low-rank factors (two nn.Linear), SLIF neurons."""
    import dataclasses

    from conftest import make_active_spikformer, make_token_spikformer
    from nmc_deploy.models.spikformer import SpikformerConfig
    from nmc_deploy.prune.dsp import factorize_model

    tiny = SpikformerConfig(img_size=8, in_channels=1, num_classes=10, embed_dim=16,
                            num_heads=2, depth=1, mlp_ratio=2, time_steps=4,
                            sps_channels=(4, 8, 16), sps_pool=(False, True, False))
    if form == "tokens":
        return make_token_spikformer(seed=2)
    if form == "low-rank":
        return factorize_model(make_active_spikformer(tiny, 3), energy=0.6)
    return make_active_spikformer(dataclasses.replace(tiny, neuron="slif_all"), 4)


@pytest.mark.parametrize("form", ["tokens", "low-rank", "slif"])
def test_other_model_forms_equal_neurobench(form):
    model = _other_form(form)
    x = torch.rand(4, 1, model.config.img_size, model.config.img_size,
                   generator=torch.Generator().manual_seed(5))
    ours = count_neurobench_ops(model, x, batch_size=2)
    _assert_equal_counts(ours, _neurobench(model, x, 2))
    assert ours["Effective_ACs"] + ours["Effective_MACs"] > 0
