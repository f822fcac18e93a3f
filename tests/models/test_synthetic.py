"""The papers' presets and synthetic official-format state_dicts (models/synthetic.py).

The key layout is checked against a hand-written list of the official modules
(spikformer-and-pruning.md sections 1.3-1.5, 2.2; checkpoint-import.md "Key mapping"), the
round trip through the importer against the calibrated model itself, and the firing rates
on inputs the calibration did not see.
"""
import functools

import pytest
import torch

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.config import PRESET_VARIANTS, PRESETS, paper_config
from nmc_deploy.models.import_official import (convert_official_state_dict,
                                               load_official_checkpoint)
from nmc_deploy.models.spikformer import Spikformer
from nmc_deploy.models.synthetic import (INPUT_LEVELS, calibrate_firing, measure_firing,
                                         model_inputs, synthetic_inputs, synthetic_model,
                                         synthetic_official_state_dict, to_official_state_dict)
from nmc_deploy.prune.l1p import prune_one_shot

# reduced official shapes: D = 32 or 64, 2 blocks, 64 tokens (d = 16 per head)
SMALL = {
    "cifar": paper_config("cifar", embed_dim=32, depth=2, num_heads=2),
    "imagenet": paper_config("imagenet", embed_dim=32, depth=2, num_heads=2, img_size=128),
    "dvs": paper_config("dvs", embed_dim=32, depth=2, num_heads=2, img_size=128, time_steps=4),
}
SPARSE_CIFAR = paper_config("cifar", embed_dim=64, depth=2, num_heads=4, token_keep=0.8,
                            token_blocks=(1,))


# ------------------------------------------------------------------------------ presets

@pytest.mark.parametrize("name, tokens, heads, head_dim, steps, chans, params", [
    # parameters (ours): the official counts of spikformer-and-pruning.md section 1.7 (9.325 M,
    # 29.690 M, 2.57 M) plus, for imagenet/dvs, the zero q/k/v biases our nn.Linear has
    ("cifar10-4-384", 64, 12, 32, 4, 3, 9_324_730),
    ("imagenet-8-512", 196, 8, 64, 4, 3, 29_689_384 + 3 * 512 * 8),
    ("cifar10dvs-2-256", 64, 16, 16, 16, 2, 2_566_666 + 3 * 256 * 2),
])
def test_paper_presets_have_the_papers_shapes(name, tokens, heads, head_dim, steps, chans, params):
    cfg = PRESETS[name]
    assert (cfg.num_tokens, cfg.num_heads, cfg.head_dim, cfg.time_steps, cfg.in_channels) == \
        (tokens, heads, head_dim, steps, chans)
    assert cfg.sps_channels == tuple(cfg.embed_dim // k for k in (8, 4, 2, 1))
    with torch.device("meta"):  # constructible without data or memory
        model = Spikformer(cfg)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("name, kept", [
    ("sparse-cifar10-4-384", (57, 51, 46)), ("sparse-cifar10dvs-4-256", (51, 40, 32)),
    ("sparse-dvs128-4-256", (32, 16, 8))])
def test_sparse_presets_keep_the_release_inference_tokens(name, kept):
    cfg = PRESETS[name]
    assert cfg.token_blocks == (1, 2, 3) and cfg.depth == 4
    assert tuple(cfg.kept_tokens(p) for p in (1, 2, 3)) == kept


def test_paper_config_refuses_bad_arguments():
    with pytest.raises(NmcDeployError, match="variant"):
        paper_config("mnist", embed_dim=64, depth=1, num_heads=2)
    with pytest.raises(NmcDeployError, match="multiple of 8"):
        paper_config("cifar", embed_dim=60, depth=1, num_heads=2)


# ------------------------------------------------------------------------------- layout

def _official_keys(variant, depth, selectors=0):
    """The official state_dict keys, written out from the official module structure."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"head.weight", "head.bias"}
    for p in range(selectors):
        keys |= {f"predictor.{p}.linear.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")}
    for conv, norm in (("proj_conv", "proj_bn"), ("proj_conv1", "proj_bn1"),
                       ("proj_conv2", "proj_bn2"), ("proj_conv3", "proj_bn3"),
                       ("rpe_conv", "rpe_bn")):
        keys |= {f"patch_embed.{conv}.weight"} | {f"patch_embed.{norm}.{e}" for e in bn}
    lin = "linear" if variant == "cifar" else "conv"
    for i in range(depth):
        keys |= {f"block.{i}.norm{j}.{w}" for j in (1, 2) for w in ("weight", "bias")}
        for mod, names in (("attn", ("q", "k", "v", "proj")), ("mlp", ("fc1", "fc2"))):
            for n in names:
                keys |= {f"block.{i}.{mod}.{n}_bn.{e}" for e in bn}
                keys.add(f"block.{i}.{mod}.{n}_{lin}.weight")
                if lin == "linear" or n not in ("q", "k", "v"):  # q/k/v Conv1d: bias=False
                    keys.add(f"block.{i}.{mod}.{n}_{lin}.bias")
    if variant == "dvs":
        keys |= {"pos_embed", "norm.weight", "norm.bias"}
    return keys


@pytest.fixture(scope="module")
def small_models():
    return {v: synthetic_model(cfg, seed=0, frames=v == "dvs", levels=INPUT_LEVELS[v])
            for v, cfg in SMALL.items()}


@pytest.mark.parametrize("variant", list(SMALL))
def test_official_layout_and_round_trip(small_models, variant):
    model = small_models[variant]
    sd = to_official_state_dict(model, variant)
    assert set(sd) == _official_keys(variant, 2)
    d = 32
    weight_shapes = {"cifar": (4 * d, d), "imagenet": (4 * d, d, 1, 1), "dvs": (4 * d, d, 1)}
    fc1 = "fc1_linear" if variant == "cifar" else "fc1_conv"
    assert tuple(sd[f"block.1.mlp.{fc1}.weight"].shape) == weight_shapes[variant]
    if variant != "cifar":
        assert tuple(sd["block.0.attn.q_conv.weight"].shape) == (d, d, 1)
    ours, report = convert_official_state_dict(sd, model.config)
    assert report.variant == variant
    expected = model.state_dict()
    assert set(ours) == set(expected)
    assert all(torch.equal(ours[k], expected[k]) for k in expected)


def test_synthetic_state_dict_loads_as_the_calibrated_model(tmp_path):
    cfg = SPARSE_CIFAR
    prune = functools.partial(prune_one_shot, sparsity=0.9)
    sd = synthetic_official_state_dict("cifar", cfg, seed=3, prune=prune)
    assert set(sd) == _official_keys("cifar", 2, selectors=1)
    torch.save(sd, tmp_path / "sparse.pth")
    model, report = load_official_checkpoint(
        tmp_path / "sparse.pth", num_heads=cfg.num_heads, img_size=cfg.img_size,
        time_steps=cfg.time_steps, token_keep=cfg.token_keep)
    assert model.config == cfg and not report.added
    again = synthetic_model(cfg, seed=3, prune=prune)  # deterministic for a seed
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
    for key in ("q", "k", "v", "proj"):  # 90 % of every block matrix is zero
        w = sd[f"block.0.attn.{key}_linear.weight"]
        assert int((w == 0).sum()) == int(0.9 * w.numel())
    assert int((sd["patch_embed.proj_conv1.weight"] == 0).sum()) == 0  # SPS stays dense


# ------------------------------------------------------------------------------- firing

@pytest.mark.parametrize("variant", list(SMALL))
def test_every_lif_layer_fires_within_range_on_new_inputs(small_models, variant):
    model = small_models[variant]
    x = synthetic_inputs(model.config, 6, seed=11, frames=variant == "dvs",
                         levels=INPUT_LEVELS[variant])
    rates = measure_firing(model, model_inputs(x, INPUT_LEVELS[variant]))
    assert len(rates) == 5 + 2 * 7
    assert all(0.05 <= r <= 0.15 for r in rates.values()), rates


def test_uncalibrated_model_is_not_in_range():
    """The check can fail: the official initialisation alone does not give 5-15 %."""
    cfg = SMALL["cifar"]
    torch.manual_seed(0)
    model = Spikformer(cfg).eval()
    x = model_inputs(synthetic_inputs(cfg, 4, seed=1), 255)
    rates = measure_firing(model, x)
    assert not all(0.05 <= r <= 0.15 for r in rates.values())
    after = calibrate_firing(model, x, firing=(0.2, 0.3))
    assert all(0.2 <= r <= 0.3 for name, r in after.items() if "attn" not in name), after


def test_inputs_are_integers_in_range_and_seeded():
    cfg = SMALL["dvs"]
    frames = synthetic_inputs(cfg, 3, seed=2, frames=True)
    assert frames.shape == (3, cfg.time_steps, 2, 128, 128) and set(frames.ravel()) <= {0, 1}
    images = synthetic_inputs(SMALL["cifar"], 3, seed=2, levels=255)
    assert images.shape == (3, 3, 32, 32) and images.min() >= 0 and images.max() <= 255
    assert (images == synthetic_inputs(SMALL["cifar"], 3, seed=2, levels=255)).all()
    assert not (images == synthetic_inputs(SMALL["cifar"], 3, seed=3, levels=255)).all()


def test_refuses_configs_the_official_layout_cannot_hold():
    with pytest.raises(NmcDeployError, match="sps_pool"):
        synthetic_official_state_dict("imagenet", SMALL["cifar"])
    with pytest.raises(NmcDeployError, match="variant"):
        synthetic_official_state_dict(None, SMALL["cifar"])
    with pytest.raises(NmcDeployError, match="firing"):
        synthetic_official_state_dict("cifar", SMALL["cifar"], firing=(0.2, 0.1))
    assert PRESET_VARIANTS["imagenet-8-512"] == "imagenet"


def test_prune_one_shot_prunes_only_block_matrices():
    torch.manual_seed(0)
    model = Spikformer(SMALL["cifar"])
    masks = prune_one_shot(model, 0.9)
    assert all(".attn." in n or ".mlp." in n for n in masks)
    for name, mask in masks.items():
        assert int((~mask).sum()) == int(0.9 * mask.numel())
    assert int((model.patch_embed.convs[0].weight == 0).sum()) == 0
    with pytest.raises(NmcDeployError, match="sparsity"):
        prune_one_shot(model, 1.0)


def test_saturating_attention_is_tuned_by_the_q_k_channel_split():
    """At 30-50 % firing, 64 tokens of d = 16 drive attn_lif far above range even at the lowest
    q/k/v rate; q and k then fire on opposite halves of each head's channels (layer rates
    stay in range) until attn_lif is back in range."""
    cfg = SMALL["cifar"]
    model = synthetic_model(cfg, seed=0, firing=(0.3, 0.5))
    x = model_inputs(synthetic_inputs(cfg, 6, seed=11), 255)
    rates = measure_firing(model, x)
    assert all(0.3 <= r <= 0.5 for r in rates.values()), rates
    q_bias, k_bias = model.blocks[0].attn.q_bn.bias, model.blocks[0].attn.k_bn.bias
    first = torch.arange(32) % 16 < 8  # first half of each of the 2 heads
    assert q_bias[first].min() > q_bias[~first].max()
    assert k_bias[~first].min() > k_bias[first].max()


def test_weak_attention_is_tuned_by_concentrating_q_k_v(digits):
    """Digits (16 tokens, d = 16): attn_lif stays below 5 % even at the highest q/k/v rate; q, k
    and v then concentrate on the same half of each head's channels."""
    model = synthetic_model(PRESETS["digits"], seed=0, levels=digits.levels,
                            inputs=digits.x_train[:64])
    rates = measure_firing(model, model_inputs(digits.x_test[:16], digits.levels))
    assert all(0.05 <= r <= 0.15 for r in rates.values()), rates
    first = torch.arange(32) % 16 < 8
    for key in ("q", "k", "v"):
        bias = getattr(model.blocks[0].attn, f"{key}_bn").bias
        assert bias[first].mean() > bias[~first].mean() + 0.5
