"""Spikformer structure: shapes, token order, head layout, residual stream, config."""
import dataclasses
import json

import pytest
import torch

from nmc_deploy.errors import CheckpointError, NmcDeployError
from nmc_deploy.models.lif import MultiStepLIF
from nmc_deploy.models.spikformer import (
    PRESETS, SSA, Spikformer, SpikformerConfig, preset_config)


def _make_firing(model, seed=0):
    """Random BN statistics/affine so that every layer of an untrained model fires."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(n, generator=gen) * 0.04 + 0.02)
            mod.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=gen) * 0.8 - 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(0)
    return _make_firing(Spikformer(PRESETS["digits"]))


def test_digits_preset_shapes(digits_model):
    cfg = digits_model.config
    assert cfg == preset_config("digits")
    assert (cfg.img_size, cfg.in_channels, cfg.embed_dim, cfg.num_heads, cfg.depth,
            cfg.time_steps) == (8, 1, 32, 2, 2, 4)
    assert cfg.num_tokens == 16
    img = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        tokens = digits_model.patch_embed(img.unsqueeze(0).repeat(4, 1, 1, 1, 1))
        features = digits_model.forward_features(img)
        logits = digits_model(img)
    assert tokens.shape == (4, 3, 16, 32)
    assert features.shape == (4, 3, 16, 32)
    assert logits.shape == (3, 10)
    assert len(digits_model.blocks) == 2
    assert isinstance(digits_model.patch_embed.pools[1], torch.nn.MaxPool2d)
    assert isinstance(digits_model.patch_embed.pools[0], torch.nn.Identity)


def test_digits_preset_neurons_per_step_below_budget(digits_model):
    neurons = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: neurons.append(out[0, 0].numel()))
             for m in digits_model.modules() if isinstance(m, MultiStepLIF)]
    with torch.no_grad():
        digits_model(torch.rand(1, 1, 8, 8))
    for h in hooks:
        h.remove()
    assert sum(neurons) < 15_000


def test_residual_stream_is_integer_valued(digits_model):
    img = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        x = digits_model.patch_embed(img.unsqueeze(0).repeat(4, 1, 1, 1, 1))
        assert set(x.unique().tolist()) <= {0.0, 1.0, 2.0}
        assert x.max() == 2.0  # the RPE sum really holds 2s for a firing model
        for block in digits_model.blocks:
            x = block(x)
    assert torch.equal(x, x.round()) and x.min() >= 0
    assert x.max() <= 2 + 2 * digits_model.config.depth


def test_tokens_are_row_major(digits_model):
    sps = digits_model.patch_embed
    captured = {}
    hooks = [sps.rpe_conv.register_forward_hook(lambda m, i, o: captured.update(feat=i[0])),
             sps.rpe_lif.register_forward_hook(lambda m, i, o: captured.update(rpe=o))]
    img = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        tokens = sps(img.unsqueeze(0).repeat(4, 1, 1, 1, 1))
    for h in hooks:
        h.remove()
    rpe = captured["rpe"]  # (T, B, D, H, W)
    feat = captured["feat"].reshape(rpe.shape)  # rpe_conv sees (T*B, D, H, W)
    height, width = rpe.shape[-2:]
    for row in range(height):
        for col in range(width):
            expected = rpe[..., row, col] + feat[..., row, col]
            assert torch.equal(tokens[:, :, row * width + col, :], expected)


def test_ssa_heads_follow_channel_blocks():
    cfg = SpikformerConfig(embed_dim=8, num_heads=2, sps_channels=(8,), sps_pool=(False,))
    ssa = SSA(cfg)
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randint(0, 2, (2, 1, 5, 8), generator=gen).float() for _ in range(3))
    captured = {}
    ssa.q_lif.forward = lambda x: q
    ssa.k_lif.forward = lambda x: k
    ssa.v_lif.forward = lambda x: v
    ssa.attn_lif.register_forward_hook(lambda m, i, o: captured.update(y=i[0]))
    with torch.no_grad():
        ssa(torch.zeros(2, 1, 5, 8))
    d = 4
    for head in range(2):
        cols = slice(head * d, head * d + d)
        expected = (q[..., cols] @ k[..., cols].transpose(-2, -1)) * 0.125 @ v[..., cols]
        assert torch.allclose(captured["y"][..., cols], expected)


def test_forward_rejects_wrong_image_shape(digits_model):
    with pytest.raises(NmcDeployError, match="input shape"):
        digits_model(torch.rand(2, 1, 7, 7))


def test_token_stream_entry_points():
    """forward == forward_tokens(embed(.)); forward_blocks runs the selectors on any stream
    (e.g. T distinct event frames) and returns the pooling policy of the mode."""
    from conftest import make_token_spikformer

    model = make_token_spikformer(keep=0.6)
    img = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = model.embed(img)
        assert tokens.shape == (4, 5, 16, 16)
        assert torch.equal(model(img), model.forward_tokens(tokens))
        x, policy = model.forward_blocks(tokens)  # eval: "remove"
        assert policy is None and x.shape == (4, 5, 5, 16)  # floor(16 * 0.36) tokens left
        assert [t.shape for t in model.token_index] == [(5, 9), (5, 5)]
        model.token_mode = "mask"
        x, policy = model.forward_blocks(tokens)
        assert x.shape == (4, 5, 16, 16) and policy.shape == (5, 16)
        assert torch.equal(policy.sum(1), torch.full((5,), 5.0))
        model.token_mode = None
        frames = (torch.rand(4, 5, 1, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.5)
        logits = model.forward_tokens(model.patch_embed(frames.float()))
    assert logits.shape == (5, 10) and len(model.token_index) == 2


def test_config_round_trip_through_json():
    for cfg in PRESETS.values():
        d = json.loads(json.dumps(cfg.to_dict()))
        assert isinstance(d["sps_channels"], list)
        assert SpikformerConfig.from_dict(d) == cfg


def test_config_from_dict_rejects_unknown_key():
    d = SpikformerConfig().to_dict()
    d["dropout"] = 0.1
    with pytest.raises(CheckpointError, match="unknown key 'dropout'"):
        SpikformerConfig.from_dict(d)


@pytest.mark.parametrize("changes, match", [
    ({"embed_dim": 30, "num_heads": 4, "sps_channels": (8, 16, 30)},
     r"embed_dim \(30\) must be divisible by num_heads \(4\)"),
    ({"sps_channels": (8, 16, 64)}, r"sps_channels\[-1\] \(64\) must equal embed_dim \(32\)"),
    ({"sps_pool": (False, True)}, "len"),
    ({"img_size": 6, "sps_pool": (True, True, False)}, "divisible by 2"),
    ({"depth": 0}, "depth"),
    ({"tau": 0.5}, "tau"),
])
def test_invalid_config_raises(changes, match):
    with pytest.raises(NmcDeployError, match=match):
        dataclasses.replace(SpikformerConfig(), **changes)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(NmcDeployError, match="digits"):
        preset_config("imagenet")
