"""Pruned models reload from checkpoints: low_rank and neuron config fields, masks' zeros."""
import json

import torch
from conftest import make_active_spikformer

from nmc_deploy.models.checkpoint import load_checkpoint, save_checkpoint
from nmc_deploy.models.lif import SLIF
from nmc_deploy.models.spikformer import PRESETS, LowRankLinear, SpikformerConfig
from nmc_deploy.prune.dsp import factorize_model
from nmc_deploy.prune.masks import apply_masks, magnitude_masks, sparsity_report
from nmc_deploy.prune.slif import convert_to_slif

CFG = SpikformerConfig(img_size=8, embed_dim=16, num_heads=2, depth=2, mlp_ratio=2,
                       time_steps=4, sps_channels=(4, 8, 16), sps_pool=(False, True, False))


def test_default_fields_are_left_out_of_the_dict():
    for cfg in PRESETS.values():
        assert "low_rank" not in cfg.to_dict() and "neuron" not in cfg.to_dict()


def test_low_rank_slif_config_round_trips_through_json():
    cfg = SpikformerConfig(low_rank=(("blocks.1.mlp.fc1_linear", 4),), neuron="slif_all")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["low_rank"] == [["blocks.1.mlp.fc1_linear", 4]] and d["neuron"] == "slif_all"
    assert SpikformerConfig.from_dict(d) == cfg


def test_pruned_factorised_slif_model_round_trips(tmp_path):
    model = make_active_spikformer(CFG, seed=2)
    model = factorize_model(model, energy=0.9)
    model = convert_to_slif(model, blocks_only=False)
    with torch.no_grad():  # learnt-looking neuron parameters
        for m in model.modules():
            if isinstance(m, SLIF):
                m.v_threshold.mul_(torch.linspace(0.8, 1.2, m.num_channels))
                m.leak_logit.add_(torch.linspace(-0.3, 0.3, m.num_channels))
    masks = magnitude_masks(model, 0.5, tensors="blocks_only")
    apply_masks(model, masks)
    path = save_checkpoint(tmp_path / "pruned.pt", model, {"method": "dsp+l1p+slif"})
    loaded, meta = load_checkpoint(path)
    assert meta == {"method": "dsp+l1p+slif"}
    assert loaded.config == model.config
    assert loaded.config.neuron == "slif_all" and loaded.config.low_rank
    assert isinstance(loaded.blocks[0].attn.q_linear, LowRankLinear)
    assert isinstance(loaded.patch_embed.rpe_lif, SLIF)
    assert loaded.patch_embed.rpe_lif.channel_dim == 2
    assert sparsity_report(loaded, masks).sparsity == sparsity_report(model, masks).sparsity
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
