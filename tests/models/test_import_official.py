"""Import of official Spikformer / SparseSpikformer checkpoints.

The oracle is a small reference implementation of the official forward passes written in
this file from the description in spikformer-and-pruning.md sections 1-2 (own code, official
module names): the CIFAR code (nn.Linear, MaxPool after SPS stages 3 and 4, tokens
(T, B, N, D)), the ImageNet code (Conv1d 1x1 attention without q/k/v bias, Conv2d 1x1 MLP,
MaxPool after all four stages, tokens (T, B, D, H, W), Q (K^T V) order) and the CIFAR10-DVS
code (2 input channels, Conv1d 1x1 MLP, scale 0.25 after A @ V). Its weights and BN
statistics are random (seeded), its state_dict is saved in every wrapper form, imported with
``load_official_checkpoint`` and the logits are compared.
"""
import argparse
import contextlib
import dataclasses
import math

import pytest
import torch
from torch import nn

from nmc_deploy.errors import CheckpointError, NmcDeployError
from nmc_deploy.models import import_official
from nmc_deploy.models.checkpoint import save_checkpoint
from nmc_deploy.models.import_official import (
    DEFAULT_NUM_HEADS, ImportReport, convert_official_state_dict, detect_official_variant,
    infer_official_config, load_official_checkpoint, unwrap_official_state_dict)
from nmc_deploy.models.spikformer import PRESETS, Spikformer, SpikformerConfig

# ---------------------------------------------------------------------------------------------
# reference implementation of the official models (own code, official module names)


class RefLIF(nn.Module):
    """spikingjelly MultiStepLIFNode(tau=2, v_reset=0, decay_input=True), hard reset."""

    def __init__(self, v_threshold=1.0, tau=2.0):
        super().__init__()
        self.v_threshold, self.tau = v_threshold, tau
        self.rates = []  # firing rate of every call, to check that the test is not vacuous

    def forward(self, x_seq):
        v = torch.zeros_like(x_seq[0])
        spikes = []
        for x in x_seq:
            h = v + (x - (v - 0.0)) / self.tau
            s = (h - self.v_threshold >= 0).to(x.dtype)
            v = h * (1.0 - s) + 0.0 * s
            spikes.append(s)
        out = torch.stack(spikes)
        self.rates.append(out.mean().item())
        return out


class RefSPS(nn.Module):
    """Official SPS: proj_conv, proj_conv1..3 (+BN+LIF, MaxPool where the variant pools), RPE."""

    def __init__(self, variant, in_channels, dim):
        super().__init__()
        self.variant = variant
        chans = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        pools = (2, 3) if variant == "cifar" else (0, 1, 2, 3)
        self.stages = []
        for i in range(4):
            suffix = "" if i == 0 else str(i)
            setattr(self, f"proj_conv{suffix}",
                    nn.Conv2d(chans[i], chans[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(chans[i + 1]))
            setattr(self, f"proj_lif{suffix}", RefLIF())
            if i in pools:
                setattr(self, f"maxpool{suffix}", nn.MaxPool2d(3, 2, 1))
            self.stages.append((suffix, i in pools))
        self.rpe_conv = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        self.rpe_lif = RefLIF()

    def forward(self, x):  # (T, B, C, H, W)
        t, b = x.shape[:2]
        x = x.flatten(0, 1)
        for suffix, pool in self.stages:
            x = getattr(self, f"proj_bn{suffix}")(getattr(self, f"proj_conv{suffix}")(x))
            x = getattr(self, f"proj_lif{suffix}")(x.reshape(t, b, *x.shape[1:])).flatten(0, 1)
            if pool:
                x = getattr(self, f"maxpool{suffix}")(x)
        x_feat = x.reshape(t, b, *x.shape[1:])
        x = self.rpe_bn(self.rpe_conv(x))
        x = self.rpe_lif(x.reshape(t, b, *x.shape[1:])) + x_feat  # (T, B, D, H', W')
        if self.variant == "cifar":
            return x.flatten(-2).transpose(-1, -2)  # (T, B, N, D)
        if self.variant == "dvs":
            return x.flatten(-2)  # (T, B, D, N)
        return x  # imagenet: (T, B, D, H', W')


class RefSSACifar(nn.Module):
    """CIFAR SSA: nn.Linear with bias, tokens (T, B, N, D), ((Q K^T) * s) @ V."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, 0.125
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_linear", nn.Linear(dim, dim))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", RefLIF())
        self.attn_lif = RefLIF(v_threshold=0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = RefLIF()

    def _spikes(self, name, x):  # (T, B, N, C) -> heads (T, B, h, N, d)
        t, b, n, c = x.shape
        y = getattr(self, f"{name}_linear")(x.flatten(0, 1))  # (TB, N, C)
        y = getattr(self, f"{name}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
        y = getattr(self, f"{name}_lif")(y.reshape(t, b, n, c))
        return y.reshape(t, b, n, self.heads, c // self.heads).permute(0, 1, 3, 2, 4)

    def forward(self, x):
        t, b, n, c = x.shape
        q, k, v = self._spikes("q", x), self._spikes("k", x), self._spikes("v", x)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        y = (attn @ v).transpose(2, 3).reshape(t, b, n, c)
        y = self.attn_lif(y).flatten(0, 1)
        y = self.proj_bn(self.proj_linear(y).transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(y.reshape(t, b, n, c))


class RefMLPCifar(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1_linear, self.fc1_bn = nn.Linear(dim, hidden), nn.BatchNorm1d(hidden)
        self.fc1_lif = RefLIF()
        self.fc2_linear, self.fc2_bn = nn.Linear(hidden, dim), nn.BatchNorm1d(dim)
        self.fc2_lif = RefLIF()

    def forward(self, x):  # (T, B, N, C)
        t, b, n, _ = x.shape
        for i in (1, 2):
            y = getattr(self, f"fc{i}_linear")(x.flatten(0, 1))
            y = getattr(self, f"fc{i}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
            x = getattr(self, f"fc{i}_lif")(y.reshape(t, b, n, -1))
        return x


class RefSSAConv(nn.Module):
    """ImageNet/DVS SSA: Conv1d 1x1 (q/k/v bias-free), tokens (T, B, C, N).

    imagenet: ``(Q @ (K^T @ V)) * 0.125``; dvs: ``((Q @ K^T) @ V) * 0.25``.
    """

    def __init__(self, variant, dim, heads):
        super().__init__()
        self.variant, self.heads = variant, heads
        self.scale = 0.25 if variant == "dvs" else 0.125
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, 1, 1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", RefLIF())
        self.attn_lif = RefLIF(v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, 1, 1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = RefLIF()

    def _spikes(self, name, x):  # (T, B, C, N) -> heads (T, B, h, N, d)
        t, b, c, n = x.shape
        y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x.flatten(0, 1)))
        y = getattr(self, f"{name}_lif")(y.reshape(t, b, c, n)).transpose(-1, -2)
        return y.reshape(t, b, n, self.heads, c // self.heads).permute(0, 1, 3, 2, 4)

    def forward(self, x):  # (T, B, C, H, W) or (T, B, C, N)
        shape = x.shape
        x = x.flatten(3) if x.ndim == 5 else x
        t, b, c, n = x.shape
        q, k, v = self._spikes("q", x), self._spikes("k", x), self._spikes("v", x)
        if self.variant == "dvs":
            y = ((q @ k.transpose(-2, -1)) @ v) * self.scale
        else:
            y = (q @ (k.transpose(-2, -1) @ v)) * self.scale
        y = y.transpose(3, 4).reshape(t, b, c, n)  # channel = head * d + j
        y = self.attn_lif(y).flatten(0, 1)
        y = self.proj_bn(self.proj_conv(y)).reshape(t, b, c, n)
        return self.proj_lif(y).reshape(shape)


class RefMLPConv(nn.Module):
    """ImageNet: Conv2d 1x1 + BN2d on (TB, C, H, W); DVS: Conv1d 1x1 + BN1d on (TB, C, N)."""

    def __init__(self, variant, dim, hidden):
        super().__init__()
        if variant == "imagenet":
            conv, bn = nn.Conv2d, nn.BatchNorm2d
        else:
            conv, bn = nn.Conv1d, nn.BatchNorm1d
        self.fc1_conv, self.fc1_bn, self.fc1_lif = conv(dim, hidden, 1, 1), bn(hidden), RefLIF()
        self.fc2_conv, self.fc2_bn, self.fc2_lif = conv(hidden, dim, 1, 1), bn(dim), RefLIF()

    def forward(self, x):
        t, b = x.shape[:2]
        for i in (1, 2):
            y = getattr(self, f"fc{i}_bn")(getattr(self, f"fc{i}_conv")(x.flatten(0, 1)))
            x = getattr(self, f"fc{i}_lif")(y.reshape(t, b, *y.shape[1:]))
        return x


class RefBlock(nn.Module):
    def __init__(self, variant, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)  # instantiated but unused, as in the official code
        self.norm2 = nn.LayerNorm(dim)
        if variant == "cifar":
            self.attn = RefSSACifar(dim, heads)
            self.mlp = RefMLPCifar(dim, dim * mlp_ratio)
        else:
            self.attn = RefSSAConv(variant, dim, heads)
            self.mlp = RefMLPConv(variant, dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class RefPredictor(nn.Module):
    """SparseSpikformer token selector: Linear(D, D/2) -> GELU -> Linear(D/2, 2) -> LogSoftmax."""

    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, 2),
                                    nn.LogSoftmax(dim=-1))


class RefSpikformer(nn.Module):
    """Official Spikformer (dense forward); ``num_predictors > 0`` adds SparseSpikformer
    token selectors (unused here, as they would be in a dense forward)."""

    def __init__(self, variant, *, in_channels, dim, heads, depth, mlp_ratio=4, num_classes=10,
                 time_steps=2, num_predictors=0):
        super().__init__()
        self.variant, self.time_steps = variant, time_steps
        self.patch_embed = RefSPS(variant, in_channels, dim)
        self.block = nn.ModuleList(RefBlock(variant, dim, heads, mlp_ratio) for _ in range(depth))
        if num_predictors:
            self.score_predictor = nn.ModuleList(RefPredictor(dim) for _ in range(num_predictors))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        """``x``: images (B, C, H, W), repeated T times, or frames (T, B, C, H, W)."""
        if x.ndim == 4:
            x = x.unsqueeze(0).repeat(self.time_steps, 1, 1, 1, 1)
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        if self.variant == "cifar":
            x = x.mean(2)  # (T, B, N, D) -> (T, B, D)
        else:
            x = x.flatten(3).mean(3)  # (T, B, D, ...) -> (T, B, D)
        return self.head(x.mean(0))


def randomize_(model, seed):
    """Seeded random weights, biases and BN statistics that keep every layer firing."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            mod.weight.data.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
            if mod.bias is not None:
                mod.bias.data.normal_(0.0, 0.3, generator=gen)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            mod.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.3)
            mod.weight.data.copy_(torch.rand(n, generator=gen) * 1.0 + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=gen) * 2.0 + 0.5)
            mod.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
        elif isinstance(mod, nn.LayerNorm):
            mod.weight.data.normal_(1.0, 0.1, generator=gen)
            mod.bias.data.normal_(0.0, 0.1, generator=gen)
    return model.eval()


# small official-shaped models: D = 32 (SPS 4, 8, 16, 32), 4 heads, 2 blocks
SETUPS = {
    "cifar": dict(in_channels=3, img_size=16, time_steps=2),  # 4x4 = 16 tokens
    "imagenet": dict(in_channels=3, img_size=64, time_steps=2),  # 4x4 = 16 tokens
    "dvs": dict(in_channels=2, img_size=64, time_steps=3),  # 4x4 = 16 tokens, 3 frames
}
DIM, HEADS, DEPTH = 32, 4, 2


def make_reference(variant, seed=0, num_predictors=0, dim=DIM, depth=DEPTH):
    s = SETUPS[variant]
    torch.manual_seed(seed)
    ref = RefSpikformer(variant, in_channels=s["in_channels"], dim=dim, heads=HEADS,
                        depth=depth, time_steps=s["time_steps"], num_predictors=num_predictors)
    return randomize_(ref, seed)


@pytest.fixture(scope="module")
def refs():
    return {v: make_reference(v, seed=i) for i, v in enumerate(SETUPS)}


def _images(variant, batch=6, seed=1):
    s = SETUPS[variant]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, s["in_channels"], s["img_size"], s["img_size"], generator=gen)


def _wrap(sd, form):
    if form == "bare":
        return sd
    if form == "model":
        return {"model": sd}
    if form == "state_dict":
        return {"state_dict": sd}
    prefixed = {"module." + k: v for k, v in sd.items()}
    if form == "module":
        return prefixed
    if form == "timm":  # timm CheckpointSaver layout, args as an argparse.Namespace
        return {"epoch": 7, "arch": "spikformer", "state_dict": prefixed,
                "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]},
                "version": 2, "metric": 95.19, "state_dict_ema": dict(sd),
                "args": argparse.Namespace(model="spikformer", lr=5e-4, layer=DEPTH)}
    raise AssertionError(form)


def _load(path, setup, **kw):
    """load_official_checkpoint with the image size and T of ``SETUPS[setup]``."""
    s = SETUPS[setup]
    kw.setdefault("num_heads", HEADS)
    return load_official_checkpoint(path, img_size=s["img_size"], time_steps=s["time_steps"], **kw)


@contextlib.contextmanager
def _raises_one_line(match):
    """Expect a CheckpointError matching ``match`` whose message is one line."""
    with pytest.raises(CheckpointError, match=match) as info:
        yield info
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# equivalence


@pytest.mark.parametrize("form", ["bare", "model", "state_dict", "module", "timm"])
@pytest.mark.parametrize("variant", ["cifar", "imagenet", "dvs"])
def test_imported_logits_equal_reference(tmp_path, refs, variant, form):
    ref = refs[variant]
    path = tmp_path / f"{variant}_{form}.pth"
    torch.save(_wrap(ref.state_dict(), form), path)
    model, report = _load(path, variant)
    assert isinstance(model, Spikformer) and not model.training
    assert report.variant == variant
    img = _images(variant)
    for lif in ref.modules():
        if isinstance(lif, RefLIF):
            lif.rates.clear()
    with torch.no_grad():
        expected = ref(img)
        got = model(img)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # the comparison is not vacuous: every reference layer fires, none saturates completely,
    # and the logits differ between samples
    rates = [r for m in ref.modules() if isinstance(m, RefLIF) for r in m.rates]
    assert len(rates) == 5 + DEPTH * 7
    assert all(0.0 < r < 1.0 for r in rates), rates
    assert expected.std(0).min() > 1e-3


def test_dvs_frames_through_submodules(tmp_path, refs):
    """DVS input is T event frames, not a repeated image: feed them through the modules."""
    ref = refs["dvs"]
    path = tmp_path / "dvs.pth"
    torch.save(ref.state_dict(), path)
    model, report = _load(path, "dvs")
    s = SETUPS["dvs"]
    gen = torch.Generator().manual_seed(5)
    frames = (torch.rand(s["time_steps"], 4, 2, s["img_size"], s["img_size"], generator=gen)
              < 0.3).float()
    with torch.no_grad():
        expected = ref(frames)
        x = model.patch_embed(frames)
        for block in model.blocks:
            x = block(x)
        got = model.head(x.mean(2).mean(0))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert any("frames" in note for note in report.notes)
    assert any("0.25" in note for note in report.notes)


def test_sparse_spikformer_selectors_are_ignored(tmp_path):
    ref = make_reference("cifar", seed=3, num_predictors=3)
    path = tmp_path / "sparse.pth"
    torch.save({"model": ref.state_dict()}, path)
    model, report = _load(path, "cifar")
    with torch.no_grad():
        assert torch.allclose(model(_images("cifar")), ref(_images("cifar")), atol=1e-5, rtol=0)
    ignored = {key for key, _ in report.ignored}
    selector_keys = {f"score_predictor.{p}.linear.{i}.{w}"
                     for p in range(3) for i in (0, 2) for w in ("weight", "bias")}
    assert selector_keys <= ignored
    assert any("token" in note for note in report.notes)


# ---------------------------------------------------------------------------------------------
# report and config inference


@pytest.mark.parametrize("variant", ["cifar", "imagenet", "dvs"])
def test_report_lists_mapped_added_ignored(refs, variant):
    sd = refs[variant].state_dict()
    before = {k: v.clone() for k, v in sd.items()}
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=SETUPS[variant]["img_size"],
                                time_steps=SETUPS[variant]["time_steps"])
    state, report = convert_official_state_dict(sd, cfg)
    assert isinstance(report, ImportReport)
    assert set(state) == set(Spikformer(cfg).state_dict())
    assert sd.keys() == before.keys() and all(torch.equal(sd[k], before[k]) for k in sd)
    norms = {f"block.{i}.norm{j}.{w}" for i in range(DEPTH) for j in (1, 2)
             for w in ("weight", "bias")}
    assert {key for key, _ in report.ignored} == norms
    mapped = dict(report.mapped)
    assert mapped["patch_embed.proj_conv2.weight"] == "patch_embed.convs.2.weight"
    assert mapped["patch_embed.proj_bn3.running_var"] == "patch_embed.bns.3.running_var"
    assert mapped["head.weight"] == "head.weight"
    assert len(report.mapped) + len(report.ignored) == len(sd)
    if variant == "cifar":
        assert mapped["block.1.attn.q_linear.bias"] == "blocks.1.attn.q_linear.bias"
        assert report.added == () and report.reshaped == ()
    else:
        assert mapped["block.1.attn.q_conv.weight"] == "blocks.1.attn.q_linear.weight"
        assert mapped["block.0.mlp.fc1_conv.weight"] == "blocks.0.mlp.fc1_linear.weight"
        assert {key for key, _ in report.added} == {
            f"blocks.{i}.attn.{n}_linear.bias" for i in range(DEPTH) for n in "qkv"}
        assert all(torch.equal(state[k], torch.zeros(DIM)) for k, _ in report.added)
        assert len(report.reshaped) == 6 * DEPTH
        assert state["blocks.0.attn.k_linear.weight"].shape == (DIM, DIM)
    assert report.to_dict()["variant"] == variant
    assert "tensors mapped" in report.summary()


def test_infer_config_per_variant(refs):
    cfg = infer_official_config(refs["cifar"].state_dict(), num_heads=4, img_size=16,
                                time_steps=2)
    assert (cfg.in_channels, cfg.embed_dim, cfg.depth, cfg.mlp_ratio, cfg.num_classes) == (
        3, 32, 2, 4, 10)
    assert cfg.sps_channels == (4, 8, 16, 32)
    assert cfg.sps_pool == (False, False, True, True)
    assert (cfg.attn_scale, cfg.v_threshold, cfg.attn_v_threshold, cfg.tau) == (
        0.125, 1.0, 0.5, 2.0)
    assert cfg.num_tokens == 16
    cfg = infer_official_config(refs["imagenet"].state_dict(), num_heads=4, img_size=64,
                                time_steps=2)
    assert cfg.sps_pool == (True,) * 4 and cfg.attn_scale == 0.125 and cfg.in_channels == 3
    cfg = infer_official_config(refs["dvs"].state_dict(), num_heads=4, img_size=64,
                                time_steps=3)
    assert cfg.sps_pool == (True,) * 4 and cfg.attn_scale == 0.25 and cfg.in_channels == 2
    assert [detect_official_variant(refs[v].state_dict()) for v in SETUPS] == list(SETUPS)


def test_official_cifar_4_384_defaults_to_12_heads():
    ref = RefSpikformer("cifar", in_channels=3, dim=384, heads=12, depth=1)
    cfg = infer_official_config({"state_dict": ref.state_dict()}, img_size=32, time_steps=4)
    assert DEFAULT_NUM_HEADS[("cifar", 384)] == 12
    assert (cfg.num_heads, cfg.embed_dim, cfg.sps_channels, cfg.sps_pool) == (
        12, 384, (48, 96, 192, 384), (False, False, True, True))
    assert cfg.num_tokens == 64


def test_default_heads_are_noted_in_report(tmp_path):
    ref = RefSpikformer("dvs", in_channels=2, dim=256, heads=16, depth=1)
    path = tmp_path / "dvs256.pth"
    torch.save(ref.state_dict(), path)
    model, report = load_official_checkpoint(path, num_heads=None, img_size=16, time_steps=2)
    assert model.config.num_heads == 16
    assert "num_heads=16 assumed" in report.notes[0]


def test_missing_num_batches_tracked_is_added(refs):
    sd = {k: v for k, v in refs["cifar"].state_dict().items()
          if not k.endswith("num_batches_tracked")}
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=16, time_steps=2)
    state, report = convert_official_state_dict(sd, cfg)
    assert len(report.added) == sum(k.endswith("num_batches_tracked") for k in state)
    assert int(state["patch_embed.bns.0.num_batches_tracked"]) == 0


def test_pos_embed_and_final_norm_are_ignored(refs):
    sd = dict(refs["dvs"].state_dict())
    sd["pos_embed"] = torch.zeros(1, 4, DIM)
    sd["norm.weight"], sd["norm.bias"] = torch.ones(DIM), torch.zeros(DIM)
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=64, time_steps=3)
    _, report = convert_official_state_dict(sd, cfg)
    assert {"pos_embed", "norm.weight", "norm.bias"} <= {k for k, _ in report.ignored}


def test_load_uses_weights_only(tmp_path, refs, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(import_official.torch, "load", spy)
    path = tmp_path / "m.pth"
    torch.save(refs["cifar"].state_dict(), path)
    _load(path, "cifar")
    assert calls == [True]


def test_config_pool_mismatch_is_noted(refs):
    sd = refs["cifar"].state_dict()
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=16, time_steps=2)
    other = dataclasses.replace(cfg, sps_pool=(True, True, False, False))
    _, report = convert_official_state_dict(sd, other)
    assert any("sps_pool" in note for note in report.notes)


def test_slif_or_low_rank_config_is_refused(refs):
    if "neuron" not in {f.name for f in dataclasses.fields(SpikformerConfig)}:
        pytest.skip("this SpikformerConfig has no neuron field")
    sd = refs["cifar"].state_dict()
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=16, time_steps=2)
    with pytest.raises(NmcDeployError, match="neuron='slif_blocks'.*import with the defaults"):
        convert_official_state_dict(sd, dataclasses.replace(cfg, neuron="slif_blocks"))


# ---------------------------------------------------------------------------------------------
# errors: one line, naming the key


def _save(tmp_path, obj, name="bad.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_missing_key_is_named(tmp_path, refs):
    sd = dict(refs["cifar"].state_dict())
    del sd["block.1.attn.k_bn.running_var"]
    with _raises_one_line(r"missing key 'block\.1\.attn\.k_bn\.running_var'"):
        _load(_save(tmp_path, sd), "cifar")


def test_missing_cifar_qkv_bias_is_an_error(tmp_path, refs):
    sd = dict(refs["cifar"].state_dict())
    del sd["block.0.attn.q_linear.bias"]
    with _raises_one_line(r"missing key 'block\.0\.attn\.q_linear\.bias'"):
        _load(_save(tmp_path, sd), "cifar")


def test_missing_block_is_named(tmp_path, refs):
    sd = {k: v for k, v in refs["cifar"].state_dict().items() if not k.startswith("block.0.")}
    with _raises_one_line(r"block\.0\."):
        _load(_save(tmp_path, sd), "cifar")


def test_wrong_shape_is_named(tmp_path, refs):
    sd = dict(refs["cifar"].state_dict())
    sd["block.0.mlp.fc2_linear.weight"] = torch.zeros(DIM, 100)
    with _raises_one_line(r"'block\.0\.mlp\.fc2_linear\.weight' has shape \(32, 100\), the "
                          r"config needs \(32, 128\)"):
        _load(_save(tmp_path, sd), "cifar")


def test_non_1x1_conv_is_a_shape_error(tmp_path, refs):
    sd = dict(refs["imagenet"].state_dict())
    sd["block.1.attn.v_conv.weight"] = torch.zeros(DIM, DIM, 3)
    with _raises_one_line(r"'block\.1\.attn\.v_conv\.weight' has shape \(32, 32, 3\)"):
        _load(_save(tmp_path, sd), "imagenet")


def test_wrong_rpe_shape_is_named(tmp_path, refs):
    sd = dict(refs["dvs"].state_dict())
    sd["patch_embed.rpe_conv.weight"] = torch.zeros(DIM, DIM, 1, 1)
    with _raises_one_line(r"'patch_embed\.rpe_conv\.weight' has shape \(32, 32, 1, 1\)"):
        _load(_save(tmp_path, sd), "dvs")


def test_unexpected_key_is_named(tmp_path, refs):
    sd = dict(refs["cifar"].state_dict())
    sd["block.0.attn.extra.weight"] = torch.zeros(3)
    with _raises_one_line(r"unexpected key 'block\.0\.attn\.extra\.weight'"):
        _load(_save(tmp_path, sd), "cifar")


def test_variant_must_agree_with_keys(tmp_path, refs):
    path = _save(tmp_path, refs["cifar"].state_dict())
    with _raises_one_line(r"variant 'imagenet' was requested.*'cifar'"):
        _load(path, "cifar", variant="imagenet")
    model, report = _load(path, "cifar", variant="cifar")
    assert report.variant == "cifar"
    with pytest.raises(NmcDeployError, match="unknown"):
        _load(path, "cifar", variant="vit")


def test_num_heads_required_for_unofficial_width(tmp_path, refs):
    path = _save(tmp_path, refs["cifar"].state_dict())
    with _raises_one_line(r"num_heads cannot be read from the weights.*pass num_heads"):
        _load(path, "cifar", num_heads=None)
    with _raises_one_line(r"embed_dim \(32\) must be divisible by num_heads \(5\)"):
        _load(path, "cifar", num_heads=5)


def test_img_size_must_fit_pooling(tmp_path, refs):
    path = _save(tmp_path, refs["imagenet"].state_dict())
    with _raises_one_line(r"img_size \(24\) must be divisible"):
        load_official_checkpoint(path, num_heads=HEADS, img_size=24, time_steps=2)


@pytest.mark.parametrize("obj, match", [
    ([1, 2, 3], r"holds a list, not a state_dict"),
    ({"weights": [1, 2]}, r"entry 'weights' is a list, not a tensor"),
    ({"foo.weight": torch.zeros(2)}, r"not an official Spikformer state_dict"),
    ({}, r"state_dict is empty"),
    ({"model": {"epoch": 3}}, r"entry 'epoch' is a int, not a tensor"),
])
def test_not_a_state_dict(tmp_path, obj, match):
    with _raises_one_line(match):
        _load(_save(tmp_path, obj), "cifar")


def test_unreadable_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with _raises_one_line("not a torch archive"):
        _load(text, "cifar")
    with _raises_one_line("no such file"):
        _load(tmp_path / "absent.pth", "cifar")
    with _raises_one_line("is a directory"):
        _load(tmp_path, "cifar")


class _Payload:  # not plain data: weights_only=True must refuse it
    pass


def test_python_objects_are_refused(tmp_path, refs):
    path = _save(tmp_path, {"state_dict": refs["cifar"].state_dict(), "extra": _Payload()})
    with _raises_one_line(r"refused for safety"):
        _load(path, "cifar")


def test_nmc_deploy_checkpoint_gets_a_hint(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "ours.pt", Spikformer(PRESETS["tiny"]))
    with _raises_one_line(r"is an nmc-deploy checkpoint.*load_checkpoint"):
        _load(path, "cifar")


def test_unwrap_prefers_bare_state_dict_and_strips_module_prefix(refs):
    sd = refs["cifar"].state_dict()
    assert unwrap_official_state_dict(sd) is sd
    stripped = unwrap_official_state_dict({"model": {"module." + k: v for k, v in sd.items()}})
    assert list(stripped) == list(sd)
