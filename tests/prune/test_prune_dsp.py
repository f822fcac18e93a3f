"""DSP: LowRankLinear, rank selection, full rank reproduces the dense model, config ranks."""
import dataclasses

import numpy as np
import pytest
import torch
from conftest import make_active_spikformer

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.lif import MultiStepLIF, SLIF
from nmc_deploy.models.spikformer import (LowRankLinear, Spikformer, SpikformerConfig,
                                          block_matrix_paths)
from nmc_deploy.prune.dsp import (block_parameter_count, budget_ranks, energy_rank,
                                  factorize_model)

CFG = SpikformerConfig(img_size=8, embed_dim=16, num_heads=2, depth=2, mlp_ratio=2,
                       time_steps=4, sps_channels=(4, 8, 16), sps_pool=(False, True, False))


@pytest.fixture(scope="module")
def active():
    return make_active_spikformer(CFG, seed=0)


def run_with_spikes(model, x):
    """Logits and the output of every neuron, in model order."""
    spikes = []
    hooks = [m.register_forward_hook(lambda mod, i, o: spikes.append(o))
             for m in model.modules() if isinstance(m, (MultiStepLIF, SLIF))]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return logits, spikes


def test_low_rank_linear_computes_up_of_down():
    torch.manual_seed(0)
    lr = LowRankLinear(6, 5, 3)
    assert lr.down.weight.shape == (3, 6) and lr.down.bias is None
    assert lr.up.weight.shape == (5, 3) and lr.up.bias.shape == (5,)
    x = torch.randn(4, 6)
    assert torch.allclose(lr(x), x @ lr.weight.T + lr.bias, atol=1e-6)
    assert torch.equal(lr.weight, lr.up.weight @ lr.down.weight)


def test_full_rank_reproduces_the_dense_model(active):
    full = factorize_model(active, energy=1.0)
    shapes = block_matrix_paths(CFG)
    assert dict(full.config.low_rank) == {p: min(s) for p, s in shapes.items()}
    assert isinstance(full.blocks[1].mlp.fc1_linear, LowRankLinear)
    assert isinstance(active.blocks[1].mlp.fc1_linear, torch.nn.Linear)  # input copied
    x = torch.rand(8, 1, 8, 8)
    logits, spikes = run_with_spikes(active, x)
    logits_f, spikes_f = run_with_spikes(full, x)
    assert torch.allclose(logits, logits_f, atol=1e-5)
    assert len(spikes) == len(spikes_f)
    assert sum(float(s.sum()) for s in spikes) > 0
    for s, s_f in zip(spikes, spikes_f):
        assert torch.equal(s, s_f)
    for path in shapes:  # the factors multiply back to the dense matrix
        assert torch.allclose(full.get_submodule(path).weight,
                              active.get_submodule(path).weight, atol=1e-5)


def test_energy_rank_is_smallest_rank_reaching_the_energy():
    s = np.array([3.0, 2.0, 1.0])  # s^2 = 9, 4, 1; cumulative 9/14, 13/14, 1
    assert energy_rank(s, 0.5) == 1
    assert energy_rank(s, 9 / 14) == 1
    assert energy_rank(s, 0.9) == 2
    assert energy_rank(s, 0.95) == 3
    assert energy_rank(s, 1.0) == 3


def test_energy_criterion_per_matrix(active):
    model = factorize_model(active, energy=0.8)
    for path, rank in model.config.low_rank:
        s = np.linalg.svd(active.get_submodule(path).weight.detach().double().numpy(),
                          compute_uv=False)
        share = np.cumsum(s ** 2) / np.sum(s ** 2)
        assert share[rank - 1] >= 0.8 - 1e-9
        assert rank == 1 or share[rank - 2] < 0.8
        assert model.get_submodule(path).rank == rank


def test_budget_allocation_is_greedy_by_relative_energy_per_weight():
    shapes = {"a": (4, 4), "b": (4, 4)}
    svals = {"a": np.array([1.0, 1.0, 1.0, 1.0]), "b": np.array([1.0, 0.1, 0.1, 0.1])}
    ranks = budget_ranks(svals, shapes, budget_params=5 * 8)  # 5 ranks of 8 weights
    assert ranks == {"a": 4, "b": 1}
    with pytest.raises(NmcDeployError, match="rank 1"):
        budget_ranks(svals, shapes, budget_params=10)


def test_rank_budget_respects_the_parameter_budget(active):
    model = factorize_model(active, rank_budget=0.4)
    now, dense = block_parameter_count(model)
    assert now <= 0.4 * dense
    assert now > 0.4 * dense - max(o + i for o, i in block_matrix_paths(CFG).values())


def test_config_records_ranks_and_rebuilds(active):
    model = factorize_model(active, ranks={"blocks.0.attn.q_linear": 3,
                                           "blocks.1.mlp.fc2_linear": 5})
    assert model.config.low_rank == (("blocks.0.attn.q_linear", 3),
                                     ("blocks.1.mlp.fc2_linear", 5))
    rebuilt = Spikformer(model.config)
    assert rebuilt.blocks[0].attn.q_linear.rank == 3
    assert isinstance(rebuilt.blocks[0].attn.k_linear, torch.nn.Linear)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert SpikformerConfig.from_dict(model.config.to_dict()) == model.config
    # factorising more matrices keeps the earlier ranks
    more = factorize_model(model, ranks={"blocks.0.attn.k_linear": 2})
    assert dict(more.config.low_rank) == {"blocks.0.attn.q_linear": 3,
                                          "blocks.0.attn.k_linear": 2,
                                          "blocks.1.mlp.fc2_linear": 5}


@pytest.mark.parametrize("low_rank, match", [
    ((("blocks.2.attn.q_linear", 2),), "not a block matrix"),
    ((("head", 2),), "not a block matrix"),
    ((("blocks.0.attn.q_linear", 17),), r"rank of 'blocks.0.attn.q_linear' \(17\) must be in 1..16"),
    ((("blocks.0.attn.q_linear", 2), ("blocks.0.attn.q_linear", 3)), "given twice"),
    ((("blocks.0.attn.q_linear",),), "pair"),
])
def test_invalid_low_rank_config_raises(low_rank, match):
    with pytest.raises(NmcDeployError, match=match):
        dataclasses.replace(CFG, low_rank=low_rank)


def test_factorize_argument_errors(active):
    with pytest.raises(NmcDeployError, match="exactly one"):
        factorize_model(active, energy=0.9, rank_budget=0.5)
    with pytest.raises(NmcDeployError, match="energy"):
        factorize_model(active, energy=0.0)
