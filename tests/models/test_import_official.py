"""Import of official Spikformer / SparseSpikformer checkpoints.

The oracle is a small reference implementation of the official forward passes written in
this file from the description in spikformer-and-pruning.md sections 1-2 (own code, official
module names): the CIFAR code (nn.Linear, MaxPool after SPS stages 3 and 4, tokens
(T, B, N, D)), the ImageNet code (Conv1d 1x1 attention without q/k/v bias, Conv2d 1x1 MLP,
MaxPool after all four stages, tokens (T, B, D, H, W), Q (K^T V) order) and the CIFAR10-DVS
code (2 input channels, Conv1d 1x1 MLP, scale 0.25 after A @ V). Its weights and BN
statistics are random (seeded), its state_dict is saved in every wrapper form, imported with
``load_official_checkpoint`` and the logits are compared. For SparseSpikformer it also has the
token selectors under the release's name (``predictor.<p>.linear``: Linear, GELU, Linear,
LogSoftmax; Rocherster/SparseSpikformer ``*/sparse_new_model.py``, commit 88096bf) and the
release's inference pass (section 2.2: argsort of the keep log-probability, gather of the
first ``int(N0 * ratio_p)`` tokens), against which the imported selectors are checked; the
older ``score_predictor.<p>`` layout is the same state_dict with the prefix renamed.
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

    def forward(self, x):  # (B, N, D) -> (B, N, 2) log-probabilities, index 0 = keep
        return self.linear(x)


class RefSpikformer(nn.Module):
    """Official Spikformer (dense forward); ``num_predictors > 0`` adds SparseSpikformer
    token selectors as the release names them (``self.predictor``), used by
    :meth:`forward_sparse` only. The DVS model also has the release's unused ``pos_embed``
    (1, num_patches, D) and final ``norm`` LayerNorm."""

    def __init__(self, variant, *, in_channels, dim, heads, depth, mlp_ratio=4, num_classes=10,
                 time_steps=2, num_predictors=0, num_patches=64):
        super().__init__()
        self.variant, self.time_steps = variant, time_steps
        if num_predictors:
            self.predictor = nn.ModuleList(RefPredictor(dim) for _ in range(num_predictors))
        self.patch_embed = RefSPS(variant, in_channels, dim)
        if variant == "dvs":
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, dim))
        self.block = nn.ModuleList(RefBlock(variant, dim, heads, mlp_ratio) for _ in range(depth))
        if variant == "dvs":
            self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        """``x``: images (B, C, H, W), repeated T times, or frames (T, B, C, H, W)."""
        if x.ndim == 4:
            x = x.unsqueeze(0).repeat(self.time_steps, 1, 1, 1, 1)
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return self._pool_head(x)

    def _pool_head(self, x):
        if self.variant == "cifar":
            x = x.mean(2)  # (T, B, N, D) -> (T, B, D)
        else:
            x = x.flatten(3).mean(3)  # (T, B, D, ...) -> (T, B, D)
        return self.head(x.mean(0))

    def forward_sparse(self, x, pruning_loc, token_ratio):
        """SparseSpikformer inference (cifar and dvs layouts): before block
        ``pruning_loc[p]``, the selector scores the time-averaged tokens, the
        ``int(N0 * token_ratio[p])`` tokens of highest keep log-probability are gathered
        (score order) and the rest is gone; the head pools the survivors.

        Records per selector its input (B, N_cur, D), the original positions of its input
        tokens (B, N_cur) and of the kept tokens (B, k).
        """
        if x.ndim == 4:
            x = x.unsqueeze(0).repeat(self.time_steps, 1, 1, 1, 1)
        x = self.patch_embed(x)  # cifar (T, B, N, D); dvs (T, B, D, N)
        axis = 2 if self.variant == "cifar" else 3
        n0, b = x.shape[axis], x.shape[1]
        pos = torch.arange(n0).expand(b, n0)
        self.selector_inputs, self.selector_positions, self.kept = [], [], []
        p = 0
        for i, blk in enumerate(self.block):
            if i in pruning_loc:
                feat = x.mean(0) if axis == 2 else x.mean(0).transpose(1, 2)  # (B, N, D)
                logp = self.predictor[p](feat)
                k = int(n0 * token_ratio[p])
                idx = torch.argsort(logp[..., 0], dim=1, descending=True)[:, :k]  # (B, k)
                if axis == 2:
                    x = torch.gather(x, 2, idx[None, :, :, None].expand(
                        x.shape[0], b, k, x.shape[3]))
                else:
                    x = torch.gather(x, 3, idx[None, :, None, :].expand(
                        x.shape[0], b, x.shape[2], k))
                self.selector_inputs.append(feat)
                self.selector_positions.append(pos)
                pos = torch.gather(pos, 1, idx)
                self.kept.append(pos)
                p += 1
            x = blk(x)
        return self._pool_head(x)


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
    kw.setdefault("img_size", s["img_size"])
    return load_official_checkpoint(path, time_steps=s["time_steps"], **kw)


@contextlib.contextmanager
def _raises_one_line(match, exc=CheckpointError):
    """Expect an ``exc`` (default CheckpointError) matching ``match``, with a one-line message."""
    with pytest.raises(exc, match=match) as info:
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


def test_dvs_frames_through_forward_tokens(tmp_path, refs):
    """DVS input is T event frames, not a repeated image: ``forward_tokens(patch_embed(.))``."""
    ref = refs["dvs"]
    path = tmp_path / "dvs.pth"
    torch.save(ref.state_dict(), path)
    model, report = _load(path, "dvs")
    with torch.no_grad():
        expected = ref(_frames(SETUPS["dvs"]["img_size"]))
        got = model.forward_tokens(model.patch_embed(_frames(SETUPS["dvs"]["img_size"])))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert any("forward_tokens" in note for note in report.notes)
    assert any("0.25" in note for note in report.notes)


def _frames(img_size, batch=4, seed=5):
    s = SETUPS["dvs"]
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(s["time_steps"], batch, 2, img_size, img_size, generator=gen)
            < 0.3).float()


def test_sparse_spikformer_selectors_are_ignored(tmp_path):
    ref = make_reference("cifar", seed=3, num_predictors=3)
    path = tmp_path / "sparse.pth"
    torch.save({"model": ref.state_dict()}, path)
    model, report = _load(path, "cifar")
    with torch.no_grad():
        assert torch.allclose(model(_images("cifar")), ref(_images("cifar")), atol=1e-5, rtol=0)
    ignored = {key for key, _ in report.ignored}
    assert _selector_keys("predictor", 3) <= ignored
    assert model.config.token_blocks == () and len(model.token_predictors) == 0
    assert any("token" in note and "token_keep" in note for note in report.notes)


# ---------------------------------------------------------------------------------------------
# SparseSpikformer token selectors (token_keep)

SPARSE_IMG = {"cifar": 32, "dvs": 128}  # 8x8 = 64 tokens, as the release's CIFAR/DVS models


def _selector_keys(prefix, count):
    return {f"{prefix}.{p}.linear.{i}.{w}"
            for p in range(count) for i in (0, 2) for w in ("weight", "bias")}


def _old_layout(sd):
    """The same state_dict in the older ``score_predictor.<p>`` layout."""
    return {("score_" + k if k.startswith("predictor.") else k): v for k, v in sd.items()}


def _release_dvs_checkpoint(sd):
    """The dict the release's DVS scripts save (``*/sparse_new_train.py`` and
    ``sparse_new_lth.py``: model, optimizer, lr_scheduler, epoch, args, accuracies)."""
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3, weight_decay=0.06)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=300)
    return {"model": sd, "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
            "epoch": 95, "args": argparse.Namespace(T=16, lr=1e-3, base_rate=0.7),
            "max_test_acc1": 80.9, "test_acc5_at_max_test_acc1": 99.1}


def _sparse_reference(tmp_path, variant, seed, num_predictors, depth=4, layout="predictor",
                      wrap=lambda sd: {"model": sd}):
    ref = make_reference(variant, seed=seed, num_predictors=num_predictors, depth=depth)
    sd = ref.state_dict() if layout == "predictor" else _old_layout(ref.state_dict())
    path = tmp_path / f"sparse_{variant}_{seed}.pth"
    torch.save(wrap(sd), path)
    return ref, path


def _sparse_images(variant, batch=6, seed=2):
    s, size = SETUPS[variant], SPARSE_IMG[variant]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, s["in_channels"], size, size, generator=gen)


def test_reference_has_the_release_key_layout():
    """The reference's state_dict has exactly the keys of the release's SpikformerPrune
    (Rocherster/SparseSpikformer cifar10/ and cifar10dvs/ sparse_new_model.py, 88096bf):
    ``predictor`` ModuleList of ``Predictor`` (``linear`` = Linear, GELU, Linear,
    LogSoftmax), SPS, ``block`` with unused norm1/norm2, head; DVS also pos_embed, norm."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for variant, lin, extra in (("cifar", "linear", set()),
                                ("dvs", "conv", {"pos_embed", "norm.weight", "norm.bias"})):
        keys = set(_selector_keys("predictor", 3)) | extra | {"head.weight", "head.bias"}
        for stage in ("proj", "proj1", "proj2", "proj3", "rpe"):
            conv, norm = stage.replace("proj", "proj_conv"), stage.replace("proj", "proj_bn")
            if stage == "rpe":
                conv, norm = "rpe_conv", "rpe_bn"
            keys |= {f"patch_embed.{conv}.weight"} | {f"patch_embed.{norm}.{e}" for e in bn}
        for i in range(4):
            keys |= {f"block.{i}.norm{j}.{w}" for j in (1, 2) for w in ("weight", "bias")}
            for mod, names in (("attn", "q k v proj"), ("mlp", "fc1 fc2")):
                for n in names.split():
                    keys |= {f"block.{i}.{mod}.{n}_bn.{e}" for e in bn}
                    keys.add(f"block.{i}.{mod}.{n}_{lin}.weight")
                    if lin == "linear" or n not in "qkv":  # DVS q/k/v Conv1d: bias=False
                        keys.add(f"block.{i}.{mod}.{n}_{lin}.bias")
        ref = make_reference(variant, seed=0, num_predictors=3, depth=4)
        assert set(ref.state_dict()) == keys


def _check_against_release_inference(model, ref, inputs, pruning_loc, r):
    """Run our eval-mode model and the reference release inference on images (B, C, H, W)
    or DVS frames (T, B, C, H, W); check the selector logits, the selector inputs, the kept
    tokens and the class logits."""
    cfg = model.config
    n0 = cfg.num_tokens
    captured = []
    hooks = [pred.register_forward_hook(
        lambda mod, args, out: captured.append((args[0].detach(), out.detach())))
        for pred in model.token_predictors]
    try:
        with torch.no_grad():
            got = (model(inputs) if inputs.ndim == 4
                   else model.forward_tokens(model.patch_embed(inputs)))
            ratios = [r ** (p + 1) for p in range(len(pruning_loc))]
            expected = ref.forward_sparse(inputs, pruning_loc, ratios)
            dense = ref(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(captured) == len(model.token_index) == len(ref.kept) == len(pruning_loc)
    batch = inputs.shape[-4]
    for p, (feat, logits) in enumerate(captured):
        # selector logits: logit_keep - logit_drop of ours == log p0 - log p1 of the reference
        # Predictor (Linear, GELU, Linear, LogSoftmax) on the same features
        with torch.no_grad():
            logp = ref.predictor[p](feat)
        assert torch.allclose(logp.exp().sum(-1), torch.ones(()), atol=1e-6)
        assert torch.allclose(logits[..., 0] - logits[..., 1], logp[..., 0] - logp[..., 1],
                              atol=1e-5, rtol=0)
        # the features are the reference's time-averaged block inputs, token for token
        ours_pos = (torch.arange(n0).expand(batch, n0) if p == 0 else model.token_index[p - 1])
        order = torch.argsort(ref.selector_positions[p], dim=1)
        ref_pos = torch.gather(ref.selector_positions[p], 1, order)
        ref_feat = torch.gather(ref.selector_inputs[p], 1,
                                order[..., None].expand(-1, -1, feat.shape[-1]))
        assert torch.equal(ours_pos, ref_pos)
        assert torch.allclose(feat, ref_feat, atol=1e-5, rtol=0)
        # exactly the reference's top-k by keep log-probability, k = int(N0 r**p)
        k = int(n0 * ratios[p])
        assert k == cfg.kept_tokens(p + 1)
        assert model.token_index[p].shape == (batch, k)
        assert torch.equal(model.token_index[p], ref.kept[p].sort(1).values)
        # not vacuous and not decided by rounding or ties: the k-th and (k+1)-th keep scores
        # are apart by far more than float error, the kept set is not the first k tokens,
        # and it differs between samples
        with torch.no_grad():
            scores = ref.predictor[p](ref.selector_inputs[p])[..., 0].sort(1, True).values
        assert (scores[:, k - 1] - scores[:, k]).min() > 1e-5
        assert not torch.equal(model.token_index[p], ours_pos[:, :k])
        assert any(not torch.equal(model.token_index[p][0], model.token_index[p][i])
                   for i in range(1, batch))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert (expected - dense).abs().max() > 1e-3  # token removal changes the logits


@pytest.mark.parametrize("variant, r, layout", [
    ("cifar", 0.9, "predictor"), ("cifar", 0.5, "predictor"), ("dvs", 0.7, "predictor"),
    ("cifar", 0.9, "score_predictor")])
def test_sparse_spikformer_selectors_import_with_token_keep(tmp_path, variant, r, layout):
    """4 blocks, 3 selectors at pruning_loc=[1, 2, 3], in the release's key layout
    (``predictor.<p>``) or the older one (``score_predictor.<p>``)."""
    ref, path = _sparse_reference(tmp_path, variant, seed=11, num_predictors=3, layout=layout)
    model, report = _load(path, variant, token_keep=r, img_size=SPARSE_IMG[variant])
    cfg = model.config
    assert not model.training
    assert (cfg.token_keep, cfg.token_blocks, cfg.depth, cfg.num_tokens) == (r, (1, 2, 3), 4, 64)
    assert len(model.token_predictors) == 3
    mapped = dict(report.mapped)
    for p in range(3):
        for ours, theirs in (("fc1", "0"), ("fc2", "2")):
            for w in ("weight", "bias"):
                official = f"{layout}.{p}.linear.{theirs}.{w}"
                assert mapped[official] == f"token_predictors.{p}.{ours}.{w}"
                assert torch.equal(model.state_dict()[mapped[official]],
                                   ref.state_dict()[f"predictor.{p}.linear.{theirs}.{w}"])
    assert not any("predictor." in key for key, _ in report.ignored)
    assert any(f"'{layout}.<p>'" in note for note in report.notes)
    assert any("pruning_loc" in note and "[1, 2, 3]" in note for note in report.notes)
    assert any("floor(N r**p)" in note for note in report.notes)
    assert any("LogSoftmax" in note for note in report.notes)
    _check_against_release_inference(model, ref, _sparse_images(variant), [1, 2, 3], r)


def test_sparse_dvs_frames_with_selectors(tmp_path):
    """Event frames reach the imported selectors through ``forward_tokens``; the file is
    saved as the release's DVS scripts save it."""
    ref, path = _sparse_reference(tmp_path, "dvs", seed=18, num_predictors=3,
                                  wrap=_release_dvs_checkpoint)
    model, _ = _load(path, "dvs", token_keep=0.8, img_size=SPARSE_IMG["dvs"])
    _check_against_release_inference(model, ref, _frames(SPARSE_IMG["dvs"], batch=6, seed=6),
                                     [1, 2, 3], 0.8)


def test_explicit_token_blocks(tmp_path):
    """Two selectors in a 4-block model: default before the last two blocks, or as given."""
    ref, path = _sparse_reference(tmp_path, "cifar", seed=12, num_predictors=2)
    sd = ref.state_dict()
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=32, time_steps=2, token_keep=0.8)
    assert cfg.token_blocks == (2, 3)
    model, report = _load(path, "cifar", token_keep=0.8, token_blocks=[0, 2], img_size=32)
    assert model.config.token_blocks == (0, 2)
    assert not any("pruning_loc" in note for note in report.notes)
    _check_against_release_inference(model, ref, _sparse_images("cifar"), [0, 2], 0.8)


@pytest.mark.parametrize("layout", ["predictor", "score_predictor"])
def test_convert_with_token_config(tmp_path, layout):
    ref, _ = _sparse_reference(tmp_path, "dvs", seed=13, num_predictors=3)
    sd = ref.state_dict() if layout == "predictor" else _old_layout(ref.state_dict())
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=128, time_steps=3,
                                token_keep=0.7)
    state, report = convert_official_state_dict(sd, cfg)
    assert set(state) == set(Spikformer(cfg).state_dict())
    assert len(report.mapped) + len(report.ignored) == len(sd)
    assert state["token_predictors.2.fc1.weight"].shape == (DIM // 2, DIM)
    assert torch.equal(state["token_predictors.2.fc2.bias"], sd[f"{layout}.2.linear.2.bias"])
    # the dense config of the same file ignores them
    dense = infer_official_config(sd, num_heads=HEADS, img_size=128, time_steps=3)
    state, report = convert_official_state_dict(sd, dense)
    assert not any(k.startswith("token_predictors") for k in state)
    assert {k for k, _ in report.ignored} >= _selector_keys(layout, 3)


@pytest.mark.parametrize("token_keep", [1.0, 0.0, -0.5, 1.5, True, "0.9", float("nan")])
def test_token_keep_outside_unit_interval(tmp_path, token_keep):
    _, path = _sparse_reference(tmp_path, "cifar", seed=14, num_predictors=3)
    with _raises_one_line(r"token_keep \(.*\) must be in \(0, 1\)", exc=NmcDeployError):
        _load(path, "cifar", token_keep=token_keep)
    with _raises_one_line(r"token_keep \(.*\) must be in \(0, 1\)", exc=NmcDeployError):
        infer_official_config({}, img_size=16, time_steps=2, token_keep=token_keep)


@pytest.mark.parametrize("layout", ["predictor", "score_predictor"])
def test_more_selectors_than_blocks(tmp_path, layout):
    _, path = _sparse_reference(tmp_path, "cifar", seed=15, num_predictors=3, depth=2,
                                layout=layout)
    with _raises_one_line(rf"3 token selectors \({layout}\.0 \.\. 2\) but only 2 blocks"):
        _load(path, "cifar", token_keep=0.9)
    model, _ = _load(path, "cifar")  # the dense import still works
    assert model.config.token_blocks == ()


def _edit_selectors(sd, edit):
    """A malformed copy of a release-layout state_dict (3 selectors)."""
    sd = dict(sd)
    if edit == "dense":
        return {k: v for k, v in sd.items() if not k.startswith("predictor.")}
    if edit == "drop1":
        return {k: v for k, v in sd.items() if not k.startswith("predictor.1.")}
    if edit in ("old_drop1", "old_shape"):
        sd = _old_layout(_edit_selectors(sd, edit[4:]))
    elif edit == "shape":
        sd["predictor.0.linear.2.weight"] = torch.zeros(3, DIM // 2)
    elif edit == "extra":
        sd["predictor.0.linear.4.weight"] = torch.zeros(2, 2)
    elif edit == "mixed":  # both layouts in full
        sd.update(_old_layout({k: v for k, v in sd.items() if k.startswith("predictor.")}))
    elif edit == "mixed_index":  # selector 2 under the older name
        sd = {("score_" + k if k.startswith("predictor.2.") else k): v for k, v in sd.items()}
    elif edit == "lg":  # the release's PredictorLG (LayerNorm + Linear D->D in in_conv)
        for p in range(3):
            sd[f"predictor.{p}.in_conv.0.weight"] = torch.ones(DIM)
            sd[f"predictor.{p}.in_conv.1.weight"] = torch.zeros(DIM, DIM)
    return sd


@pytest.mark.parametrize("edit, kw, match, exc", [
    (None, dict(token_keep=0.9, token_blocks=(1, 2)),
     r"token_blocks \[1, 2\] has 2 entries but the checkpoint has 3 token selectors "
     r"\(predictor\.0 \.\. 2\)", CheckpointError),
    (None, dict(token_keep=0.9, token_blocks=(1, 2, 7)),
     r"token_blocks \(\(1, 2, 7\)\) must be distinct increasing block indices in 0\.\.3",
     CheckpointError),
    (None, dict(token_blocks=(1, 2, 3)), r"token_blocks .* without token_keep", NmcDeployError),
    (None, dict(token_keep=0.9, token_blocks="123"), r"sequence of block indices", NmcDeployError),
    ("dense", dict(token_keep=0.9),
     r"no 'predictor\.<p>\.\*' \(or older 'score_predictor\.<p>\.\*'\) keys", CheckpointError),
    ("drop1", dict(token_keep=0.9), r"missing keys 'predictor\.1\.\*'", CheckpointError),
    ("old_drop1", dict(token_keep=0.9), r"missing keys 'score_predictor\.1\.\*'",
     CheckpointError),
    ("shape", dict(token_keep=0.9),
     r"'predictor\.0\.linear\.2\.weight' has shape \(3, 16\), the config needs \(2, 16\)",
     CheckpointError),
    ("old_shape", dict(token_keep=0.9), r"'score_predictor\.0\.linear\.2\.weight' has shape",
     CheckpointError),
    ("extra", dict(token_keep=0.9), r"unexpected key 'predictor\.0\.linear\.4\.weight'",
     CheckpointError),
    ("mixed", dict(token_keep=0.9), r"token selector keys in two layouts", CheckpointError),
    ("mixed", dict(), r"token selector keys in two layouts", CheckpointError),
    ("mixed_index", dict(token_keep=0.9),
     r"two layouts.*e\.g\. 'score_predictor\.2\.linear\.0\.weight'", CheckpointError),
    ("lg", dict(token_keep=0.9),
     r"'predictor\.0\.in_conv\.0\.weight' belongs to the release's PredictorLG", CheckpointError),
])
def test_bad_token_selector_inputs(tmp_path, edit, kw, match, exc):
    ref = make_reference("cifar", seed=16, num_predictors=3, depth=4)
    sd = _edit_selectors(ref.state_dict(), edit)
    with _raises_one_line(match, exc=exc):
        _load(_save(tmp_path, sd), "cifar", **kw)


def test_predictor_lg_keys_are_ignored_in_the_dense_import(tmp_path):
    ref = make_reference("cifar", seed=16, num_predictors=3, depth=4)
    sd = _edit_selectors(ref.state_dict(), "lg")
    model, report = _load(_save(tmp_path, sd), "cifar")
    assert "predictor.2.in_conv.1.weight" in {k for k, _ in report.ignored}
    with torch.no_grad():
        assert torch.allclose(model(_images("cifar")), ref(_images("cifar")), atol=1e-5, rtol=0)


def test_convert_refuses_selector_count_mismatch(tmp_path):
    ref = make_reference("cifar", seed=17, num_predictors=3, depth=4)
    sd = ref.state_dict()
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=16, time_steps=2, token_keep=0.9)
    with _raises_one_line(r"cfg\.token_blocks \[1, 3\] asks for 2 token selectors but the "
                          r"checkpoint has 3 token selectors \(predictor\.0 \.\. 2\)"):
        convert_official_state_dict(sd, dataclasses.replace(cfg, token_blocks=(1, 3)))
    with _raises_one_line(r"checkpoint has no 'predictor\.<p>\.\*' \(or older"):
        convert_official_state_dict(_edit_selectors(sd, "dense"), cfg)
    with _raises_one_line(r"PredictorLG"):
        convert_official_state_dict(_edit_selectors(sd, "lg"), cfg)


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
    unused = {f"block.{i}.norm{j}.{w}" for i in range(DEPTH) for j in (1, 2)
              for w in ("weight", "bias")}
    if variant == "dvs":
        unused |= {"pos_embed", "norm.weight", "norm.bias"}
    assert {key for key, _ in report.ignored} == unused
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
    sd = {("patch_embed." + k if k == "pos_embed" else k): v
          for k, v in refs["dvs"].state_dict().items()}
    cfg = infer_official_config(sd, num_heads=HEADS, img_size=64, time_steps=3)
    _, report = convert_official_state_dict(sd, cfg)
    assert {"patch_embed.pos_embed", "norm.weight", "norm.bias"} <= {k for k, _ in report.ignored}


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
    with _raises_one_line(r"refused: it contains code"):
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
