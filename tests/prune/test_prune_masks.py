"""Masks: prunable-weight selection, global vs layer magnitude pruning, zeros kept exactly."""
import math

import numpy as np
import pytest
import torch

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.spikformer import PRESETS, Spikformer, SpikformerConfig
from nmc_deploy.models.train import WEIGHT_DECAY, fit
from nmc_deploy.prune.masks import (apply_masks, full_masks, keep_masked, magnitude_masks,
                                    mask_density, prunable_parameters, sparsity_report)

CFG = SpikformerConfig(embed_dim=16, num_heads=2, depth=2, mlp_ratio=2, time_steps=2,
                       sps_channels=(4, 16), sps_pool=(True, False))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = Spikformer(CFG)
    with torch.no_grad():  # spread the magnitudes so tensors differ in scale
        for i, p in enumerate(p for n, p in m.named_parameters() if p.ndim >= 2):
            p.mul_(1.0 + i)
    return m


def test_selection_all_is_every_matrix_named_weight(model):
    names = set(prunable_parameters(model, "all"))
    assert "patch_embed.convs.0.weight" in names and "patch_embed.rpe_conv.weight" in names
    assert "head.weight" in names and "blocks.1.mlp.fc2_linear.weight" in names
    assert not any(n.endswith("bias") for n in names)
    assert not any("bn" in n for n in names)  # BN weights are 1-D
    assert names == {n for n, p in model.named_parameters()
                     if n.endswith("weight") and p.ndim >= 2}


def test_selection_blocks_only_is_the_six_block_matrices(model):
    names = list(prunable_parameters(model, "blocks_only"))
    expected = [f"blocks.{i}.{key}.weight" for i in range(2) for key in (
        "attn.q_linear", "attn.k_linear", "attn.v_linear", "attn.proj_linear",
        "mlp.fc1_linear", "mlp.fc2_linear")]
    assert names == expected


def test_selection_errors(model):
    with pytest.raises(NmcDeployError, match="tensors"):
        prunable_parameters(model, "convs")
    with pytest.raises(NmcDeployError, match="no parameter named 'nope.weight'"):
        prunable_parameters(model, ["nope.weight"])


def test_layer_scope_prunes_the_fraction_of_each_tensor(model):
    masks = magnitude_masks(model, 0.3, scope="layer", tensors="all")
    params = dict(model.named_parameters())
    for name, m in masks.items():
        n = m.numel()
        assert n - int(m.sum()) == math.floor(0.3 * n), name
        w = params[name].detach().abs()
        if (~m).any():
            assert w[~m].max() <= w[m].min()  # smallest magnitudes went first


def test_global_scope_uses_one_threshold_across_tensors(model):
    masks = magnitude_masks(model, 0.3, scope="global", tensors="all")
    params = dict(model.named_parameters())
    total = sum(m.numel() for m in masks.values())
    assert total - sum(int(m.sum()) for m in masks.values()) == math.floor(0.3 * total)
    pruned = torch.cat([params[n].detach().abs()[~m] for n, m in masks.items()])
    kept = torch.cat([params[n].detach().abs()[m] for n, m in masks.items()])
    assert pruned.max() <= kept.min()
    fractions = [1 - float(m.float().mean()) for m in masks.values()]
    assert max(fractions) - min(fractions) > 0.3  # scaled tensors are pruned unevenly
    assert not any(model.state_dict()[n].eq(0).any() for n in masks)  # model untouched


def test_fraction_is_of_the_remaining_weights(model):
    masks = full_masks(model, "blocks_only")
    total = sum(m.numel() for m in masks.values())
    alive = total
    for _ in range(3):
        new = magnitude_masks(model, 0.25, old_masks=masks)
        for n in masks:  # once pruned, always pruned
            assert not (new[n] & ~masks[n]).any()
        alive -= math.floor(0.25 * alive)
        assert sum(int(m.sum()) for m in new.values()) == alive
        masks = new
    assert mask_density(masks) == pytest.approx(0.75 ** 3, abs=2 / total)


def test_apply_masks_writes_positive_zeros(model):
    masks = magnitude_masks(model, 0.5, tensors="blocks_only")
    apply_masks(model, masks)
    params = dict(model.named_parameters())
    for name, m in masks.items():
        w = params[name].detach()
        assert torch.equal(w[~m], torch.zeros(int((~m).sum())))
        assert not torch.signbit(w[~m]).any()
        assert (w[m] != 0).all()


def test_masked_weights_stay_exact_zero_through_adamw_with_moments(model):
    masks = magnitude_masks(model, 0.5, tensors="all")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
    for _ in range(2):  # build up Adam moments on every weight first
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with keep_masked(model, masks, opt):
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            for name, p in model.named_parameters():
                if name in masks:
                    assert not p.grad[~masks[name]].any()  # gradients are masked
            opt.step()
            report = sparsity_report(model, masks)
            assert report.prunable_nonzero == sum(int(m.sum()) for m in masks.values())
    assert sparsity_report(model, masks).sparsity == pytest.approx(0.5, abs=1e-3)
    # hooks are gone after the block: weights move again
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert sparsity_report(model, masks).prunable_nonzero > report.prunable_nonzero


def test_fit_with_masks_keeps_zeros_and_changes_the_rest(small_digits):
    torch.manual_seed(0)
    model = Spikformer(PRESETS["tiny"])
    masks = magnitude_masks(model, 0.8, tensors="all")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, small_digits, epochs=1, batch_size=16, masks=masks, progress=False,
        weight_decay=WEIGHT_DECAY)
    params = dict(model.named_parameters())
    for name, m in masks.items():
        assert not params[name].detach()[~m].any(), name
        if m.any():  # (global pruning may remove a whole small-init tensor)
            assert not torch.equal(params[name].detach()[m], before[name][m]), name
    report = sparsity_report(model, masks)
    assert report.sparsity == pytest.approx(0.8, abs=1e-3)
    assert not model.training


def test_sparsity_report_counts(model):
    masks = magnitude_masks(model, 0.5, tensors="blocks_only", scope="layer")
    apply_masks(model, masks)
    report = sparsity_report(model, masks)
    assert set(report.tensors) == set(masks)
    for name, (params, nonzero) in report.tensors.items():
        assert params == masks[name].numel() and nonzero == int(masks[name].sum())
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert report.sparsity == pytest.approx(0.5)
    assert 0 < report.total_sparsity < report.sparsity
    d = report.to_dict()
    assert d["prunable_params"] == report.prunable_params
    all_report = sparsity_report(model)  # default: every prunable tensor
    assert all_report.prunable_params > report.prunable_params
    assert np.isclose(all_report.prunable_nonzero,
                      all_report.prunable_params - (report.prunable_params
                                                    - report.prunable_nonzero))
