"""Synthetic official-format state_dicts: random weights, BatchNorms calibrated to a firing rate.

The papers' models (Spikformer-4-384, -8-512, -2-256, SparseSpikformer) come without
weights we can ship or download here. To import, export, compile and simulate them at their
real size, :func:`synthetic_official_state_dict` builds a state_dict in exactly the key
layout of the official code (the layout :mod:`~nmc_deploy.models.import_official` reads,
with the unused LayerNorms, the DVS ``pos_embed``/``norm`` and SparseSpikformer's
``predictor.<p>.*`` selectors), holding

* random weights as the official initialisation draws them (``nn.Linear`` and selectors
  truncated normal, std 0.02, zero bias; convolutions PyTorch's Kaiming-uniform default),
  optionally pruned before calibration (``prune``, e.g.
  :func:`nmc_deploy.prune.l1p.prune_one_shot` for 90 % unstructured block sparsity);
* BatchNorm statistics and affine parameters set layer by layer so that every LIF layer
  fires at a realistic rate (:func:`calibrate_firing`): in model order, each BN's input
  ``z`` on representative inputs (:func:`synthetic_inputs`) gets ``running_mean`` and
  ``running_var`` of ``z`` per channel, ``weight = 1`` and a per-channel ``bias`` found by
  bisection so that the channel's LIF fires at the middle of ``firing``. The attention
  neuron (``attn_lif``) has no BatchNorm; its rate follows from the q/k/v rates, so per
  block the common q/k/v rate is searched within ``firing`` (bisection) for an ``attn_lif``
  rate as close as possible to the middle of ``firing``.

Calibration runs the real model once (forward hooks on the BatchNorms and blocks), so the
selectors of a token-pruned model see exactly what they see at inference. The rates hold
for other inputs of the same generator (a test checks them on the compiled fixed-point
program). Everything here is deterministic for a seed.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import NmcDeployError
from .config import PAPER_SHAPES, PRESET_VARIANTS, SpikformerConfig, preset_config
from .lif import MultiStepLIF
from .spikformer import Spikformer
from .train import NUM_THREADS

__all__ = ["DEFAULT_FIRING", "INPUT_LEVELS", "synthetic_inputs", "model_inputs",
           "calibrate_firing", "measure_firing", "synthetic_model", "to_official_state_dict",
           "synthetic_official_state_dict", "lif_layers"]

DEFAULT_FIRING = (0.05, 0.15)  # realistic firing rates of a trained Spikformer's LIF layers
# Intensity levels of the synthetic inputs: 8-bit pixels (CIFAR, ImageNet); DVS frames hold
# 0/1 events per pixel and polarity.
INPUT_LEVELS = {"cifar": 255, "imagenet": 255, "dvs": 1}
_BISECTION_STEPS = 24  # per-channel BN bias search: interval / 2**24
_ATTN_STEPS = 10  # q/k/v rate search per block: (hi - lo) / 2**10
_PLATEAU = 0.5  # BN bias: at most this far (in input standard deviations) from the step
_PLATEAU_STEPS = 12  # bisection steps for the plateau's far end
_MAX_SPLIT = 0.95  # largest q/k channel split (q . k falls by 1 - split**2)
_QKV_MARGIN = 0.15  # the q/k/v rate stays this fraction of the firing range inside it
_COARSE = 8  # synthetic images: one random value per 8x8 pixels, bilinearly upsampled


# ------------------------------------------------------------------------------- inputs

def synthetic_inputs(config: SpikformerConfig, n: int, *, seed: int = 0,
                     frames: bool = False, levels: int = 255) -> np.ndarray:
    """Representative integer inputs for ``config``, deterministic for ``seed``.

    Images (``frames=False``): ``(n, C, H, W)`` int64 in ``0..levels``, smooth random
    fields (a 70 % shared / 30 % per-channel random grid of one value per 8x8 pixels,
    bilinearly upsampled, plus 5 % pixel noise), the statistics of natural images at the
    level the calibration needs. Event frames (``frames=True``, DVS): ``(n, T, C, H, W)``
    int64 0/1, independent events per step with a smooth per-pixel probability in
    ``[0, 0.3]``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise NmcDeployError(f"synthetic_inputs: n ({n!r}) must be a positive integer")
    gen = torch.Generator().manual_seed(int(seed))
    c, size = config.in_channels, config.img_size
    coarse = max(2, math.ceil(size / _COARSE) + 1)

    def field(channels: int) -> torch.Tensor:
        grid = torch.rand(n, channels, coarse, coarse, generator=gen)
        return nn.functional.interpolate(grid, size=(size, size), mode="bilinear",
                                         align_corners=True)

    base = 0.7 * field(1) + 0.3 * field(c)  # (n, C, H, W) in [0, 1]
    if frames:
        p = 0.3 * base ** 2
        events = torch.rand(n, config.time_steps, c, size, size, generator=gen) < p[:, None]
        return events.to(torch.int64).numpy()
    noisy = base + 0.05 * torch.randn(base.shape, generator=gen)
    return torch.round(noisy.clamp(0.0, 1.0) * levels).to(torch.int64).numpy()


def model_inputs(x: np.ndarray, levels: int) -> torch.Tensor:
    """Float model input of integer inputs: images ``(B, C, H, W)`` -> ``x / levels``;
    frames ``(B, T, C, H, W)`` -> ``(T, B, C, H, W) / levels``."""
    t = torch.tensor(np.asarray(x), dtype=torch.float32) / float(levels)
    return t.transpose(0, 1).contiguous() if t.ndim == 5 else t


def _stream(model: Spikformer, x: torch.Tensor) -> torch.Tensor:
    """The model's token stream of float images (B, C, H, W) or frames (T, B, C, H, W)."""
    return model.embed(x) if x.ndim == 4 else model.patch_embed(x)


# ---------------------------------------------------------------------------- calibration

def lif_layers(model: Spikformer) -> dict[str, tuple[nn.Module | None, MultiStepLIF]]:
    """Every LIF layer of ``model`` by module path, in model order, with the BatchNorm that
    feeds it (None for ``attn_lif``)."""
    out: dict[str, tuple[nn.Module | None, MultiStepLIF]] = {}
    sps = model.patch_embed
    for i, (bn, lif) in enumerate(zip(sps.bns, sps.lifs)):
        out[f"patch_embed.lifs.{i}"] = (bn, lif)
    out["patch_embed.rpe_lif"] = (sps.rpe_bn, sps.rpe_lif)
    for i, blk in enumerate(model.blocks):
        for key in ("q", "k", "v"):
            out[f"blocks.{i}.attn.{key}_lif"] = (getattr(blk.attn, f"{key}_bn"),
                                                 getattr(blk.attn, f"{key}_lif"))
        out[f"blocks.{i}.attn.attn_lif"] = (None, blk.attn.attn_lif)
        out[f"blocks.{i}.attn.proj_lif"] = (blk.attn.proj_bn, blk.attn.proj_lif)
        for key in ("fc1", "fc2"):
            out[f"blocks.{i}.mlp.{key}_lif"] = (getattr(blk.mlp, f"{key}_bn"),
                                                getattr(blk.mlp, f"{key}_lif"))
    for name, (_, lif) in out.items():
        if not isinstance(lif, MultiStepLIF):
            raise NmcDeployError(f"calibrate_firing: '{name}' is a {type(lif).__name__}; only "
                                 "plain LIF models (neuron='lif') can be calibrated")
    return out


def _channels_last(z: torch.Tensor, time_steps: int) -> torch.Tensor:
    """A BatchNorm input as ``(T, rows, C)``: BN2d ``(T*B, C, H, W)``, BN1d ``(T*B*N, C)``
    (rows are time-major in both)."""
    if z.ndim == 4:
        tb, c = z.shape[:2]
        return z.reshape(time_steps, tb // time_steps, c, -1).permute(0, 1, 3, 2).reshape(
            time_steps, -1, c)
    return z.reshape(time_steps, -1, z.shape[-1])


@torch.no_grad()
def _fit_batchnorm(bn: nn.Module, lif: MultiStepLIF, z: torch.Tensor, rate: float) -> None:
    """Set ``bn`` so that ``lif(bn(z))`` fires near ``rate`` in every channel (``z`` is
    ``(T, rows, C)``; weight 1, statistics of ``z``, a per-channel bias).

    The rate is a non-decreasing step function of the bias. A bisection finds the step
    that crosses ``rate``; the side nearer to ``rate`` is taken, and the bias is put in the
    middle of that side's plateau (at most ``_PLATEAU`` away from the step), so that a
    channel with few distinct inputs (a sparse layer) does not sit on a step edge where the
    rounding of the fixed-point program or other inputs would flip it.
    """
    mean = z.mean(dim=(0, 1))
    var = z.var(dim=(0, 1), unbiased=False)
    zn = (z - mean) / torch.sqrt(var + bn.eps)

    def rates(bias: torch.Tensor) -> torch.Tensor:
        return lif(zn + bias).mean(dim=(0, 1))

    span = float(zn.abs().max()) + 2.0 * lif.v_threshold + 2.0
    lo = torch.full_like(mean, -span)  # never fires: zn + lo < 0
    hi = torch.full_like(mean, span)  # fires at every step: zn + hi >= 2 v_threshold
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        too_high = rates(mid) > rate
        hi = torch.where(too_high, mid, hi)
        lo = torch.where(too_high, lo, mid)
    rate_lo, rate_hi = rates(lo), rates(hi)
    upper = (rate_hi - rate) < (rate - rate_lo)  # the side nearer to the target
    edge, ref = torch.where(upper, hi, lo), torch.where(upper, rate_hi, rate_lo)
    inner, outer = edge, edge + torch.where(upper, _PLATEAU, -_PLATEAU)
    for _ in range(_PLATEAU_STEPS):  # the plateau's far end, within _PLATEAU
        mid = 0.5 * (inner + outer)
        same = rates(mid) == ref
        inner = torch.where(same, mid, inner)
        outer = torch.where(same, outer, mid)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn.weight.copy_(torch.ones_like(mean))
    bn.bias.copy_(0.5 * (edge + inner))


class _Calibration:
    """The forward hooks of one calibration pass (see :func:`calibrate_firing`)."""

    def __init__(self, model: Spikformer, firing: tuple[float, float]):
        self.model = model
        self.lo, self.hi = firing
        self.mid = 0.5 * (self.lo + self.hi)
        self.layers = lif_layers(model)
        self.rates: dict[nn.Module, float] = {}  # per BN: target rate
        self.attn_rate: dict[nn.Module, float] = {}  # per attn_lif: last measured rate
        self.handles = []

    def __enter__(self):
        T = self.model.config.time_steps
        for bn, lif in self.layers.values():
            if bn is None:
                self.handles.append(lif.register_forward_hook(self._record))
                continue
            self.rates[bn] = self.mid

            def fit(module, args, lif=lif):
                _fit_batchnorm(module, lif, _channels_last(args[0], T), self.rates[module])
            self.handles.append(bn.register_forward_pre_hook(fit))
        for blk in self.model.blocks:
            self.handles.append(blk.register_forward_pre_hook(self._search_attention))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def _record(self, module, args, out):
        self.attn_rate[module] = float(out.mean())

    def _search_attention(self, blk, args):
        """Set the q/k/v rates of ``blk`` so that attn_lif fires nearest to mid.

        First the common q/k/v rate in [lo, hi] (inside by a margin). If attn_lif fires above
        mid even at the lowest rate (many tokens, wide heads), q/k/v go back to mid and q and
        k move to opposite halves of each head's channels; if it fires below mid even at the
        highest rate (few tokens, narrow heads), q, k and v concentrate on the same half
        (:func:`_split_rates`). The split is searched by bisection."""
        x = args[0]
        bns = [getattr(blk.attn, f"{k}_bn") for k in ("q", "k", "v")]
        d, heads = blk.attn.q_bn.num_features // blk.attn.num_heads, blk.attn.num_heads

        def attn_rate(r: float, split: float = 0.0) -> float:
            self.rates.update(zip(bns, _split_rates(r, split, d, heads)))
            blk.attn(x)
            return self.attn_rate[blk.attn.attn_lif]

        margin = _QKV_MARGIN * (self.hi - self.lo)  # so that other inputs stay in range
        lo, hi = self.lo + margin, self.hi - margin
        if attn_rate(lo) >= self.mid:  # too much attention: split q and k apart
            rate, lo, hi = self.mid, 0.0, _MAX_SPLIT
        elif attn_rate(hi) <= self.mid:  # too little: concentrate q, k and v together
            rate, lo, hi = hi, -_MAX_SPLIT, 0.0
        else:
            for _ in range(_ATTN_STEPS):  # the attn rate rises with the q/k/v rate
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if attn_rate(mid) > self.mid else (mid, hi)
            self.rates.update(zip(bns, _split_rates(lo, 0.0, d, heads)))
            return
        for _ in range(_ATTN_STEPS):  # the attn rate falls with the split
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if attn_rate(rate, mid) > self.mid else (lo, mid)
        self.rates.update(zip(bns, _split_rates(rate, hi, d, heads)))


def _split_rates(rate: float, split: float, head_dim: int, heads: int) -> tuple:
    """Per-channel target rates of q, k and v (layer rates stay ``rate``).

    ``split > 0``: q fires at ``rate * (1 + split)`` on the first half of each head's
    channels and ``rate * (1 - split)`` on the second half, k the other way round, v
    uniformly; the expected ``q . k`` per head falls by ``1 - split**2``. ``split < 0``: q, k
    and v all fire at ``rate * (1 + |split|)`` on the first half: ``q . k`` grows by
    ``1 + split**2`` and meets the strong v channels. ``split == 0``: uniform (floats)."""
    if split == 0.0:
        return rate, rate, rate
    first = (torch.arange(head_dim) < head_dim // 2).repeat(heads)
    high, low = rate * (1.0 + abs(split)), rate * (1.0 - abs(split))
    q = torch.where(first, high, low)
    if split < 0:
        return q, q, q
    return q, torch.where(first, low, high), rate


def _check_firing(firing) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in firing)
    except (TypeError, ValueError):
        raise NmcDeployError(f"firing ({firing!r}) must be a pair (low, high) of rates") from None
    if not 0.0 < lo < hi < 1.0:
        raise NmcDeployError(f"firing ({firing!r}) must satisfy 0 < low < high < 1")
    return lo, hi


@torch.no_grad()
def calibrate_firing(model: Spikformer, x: torch.Tensor,
                     firing: tuple[float, float] = DEFAULT_FIRING) -> dict[str, float]:
    """Set every BatchNorm of ``model`` so its LIF layer fires within ``firing`` on ``x``.

    In place (the BN running statistics and affine parameters change; nothing else). One
    forward pass in eval mode: a hook before each BatchNorm fits it to its input (per channel:
    mean and variance of the input, weight 1, the bias that makes the channel's LIF fire at
    the middle of ``firing``); a hook before each block first searches the q/k/v rate (within
    ``firing``) that brings ``attn_lif`` nearest to the middle (see the module docstring).

    Parameters
    ----------
    model : Spikformer
        Plain LIF model (``neuron='lif'``); put in eval mode.
    x : torch.Tensor
        Float model input: images ``(B, C, H, W)`` (already ``/ levels``) or event frames
        ``(T, B, C, H, W)`` (:func:`model_inputs`).
    firing : (float, float)
        The range of LIF firing rates (fraction of neuron-steps with a spike).

    Returns
    -------
    dict
        The firing rate of every LIF layer on ``x`` after calibration
        (:func:`measure_firing`).
    """
    firing = _check_firing(firing)
    model.eval()
    with _Calibration(model, firing):
        model.forward_tokens(_stream(model, x))
    return measure_firing(model, x)


@torch.no_grad()
def measure_firing(model: Spikformer, x: torch.Tensor) -> dict[str, float]:
    """Firing rate of every LIF layer of ``model`` (eval mode) on the float input ``x``."""
    rates: dict[str, float] = {}
    handles = []
    for name, (_, lif) in lif_layers(model).items():
        def record(module, args, out, name=name):
            rates[name] = float(out.mean())
        handles.append(lif.register_forward_hook(record))
    try:
        model.eval()
        model.forward_tokens(_stream(model, x))
    finally:
        for h in handles:
            h.remove()
    return rates


# ------------------------------------------------------------------------------ builders

def _resolve(variant: str | None, config: SpikformerConfig | str
             ) -> tuple[str, SpikformerConfig]:
    """The variant and config of the arguments, checked against the official layout."""
    if isinstance(config, str):
        if variant is None:
            variant = PRESET_VARIANTS.get(config)
        config = preset_config(config)
    if not isinstance(config, SpikformerConfig):
        raise NmcDeployError(f"synthetic: config must be a SpikformerConfig or a preset name, "
                             f"got {type(config).__name__}")
    if variant not in PAPER_SHAPES:
        raise NmcDeployError(f"synthetic: variant ({variant!r}) must be one of "
                             f"{', '.join(PAPER_SHAPES)}")
    shape = PAPER_SHAPES[variant]
    official = {"sps_pool": shape.sps_pool, "attn_scale": shape.attn_scale, "tau": 2.0,
                "v_threshold": 1.0, "attn_v_threshold": 0.5, "neuron": "lif", "low_rank": ()}
    for name, value in official.items():
        if getattr(config, name) != value:
            raise NmcDeployError(
                f"synthetic: config.{name} ({getattr(config, name)!r}) differs from the "
                f"official {variant} value ({value!r}); the official layout cannot hold it")
    return variant, config


def synthetic_model(config: SpikformerConfig, *, seed: int = 0,
                    firing: tuple[float, float] = DEFAULT_FIRING, frames: bool = False,
                    levels: int = 255, samples: int = 8,
                    prune: Callable[[Spikformer], Any] | None = None,
                    inputs: np.ndarray | None = None) -> Spikformer:
    """A random :class:`Spikformer` of ``config`` with BatchNorms calibrated to ``firing``.

    Weights as the official initialisation (seeded with ``seed``); ``prune(model)`` (e.g.
    ``functools.partial(prune_one_shot, sparsity=0.9)``) runs before the calibration, which
    uses ``samples`` inputs of :func:`synthetic_inputs` (seed ``seed``; images with
    ``levels``, or event frames), or the integer ``inputs`` given (images ``(B, C, H, W)``
    or frames ``(B, T, C, H, W)`` in ``0..levels``, e.g. a data set's). Runs with ``NUM_THREADS`` torch threads, as training
    does, and restores the previous setting. Returns the model in eval mode.
    """
    _check_firing(firing)
    previous = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS)  # as training: predictable time on a shared machine
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = Spikformer(config)
        if prune is not None:
            prune(model)
        x = synthetic_inputs(config, samples, seed=seed, frames=frames, levels=levels) \
            if inputs is None else inputs
        calibrate_firing(model, model_inputs(x, levels), firing)
    finally:
        torch.set_num_threads(previous)
    return model.eval()


def _official_weight(our_key: str, value: torch.Tensor, variant: str) -> torch.Tensor | None:
    """The official tensor of one of our block entries (None: the official model has none)."""
    if variant == "cifar" or not our_key.startswith("blocks.") or "_linear." not in our_key:
        return value
    if our_key.endswith(".bias") and any(f".attn.{k}_linear." in our_key for k in "qkv"):
        if torch.count_nonzero(value):
            raise NmcDeployError(f"to_official_state_dict: '{our_key}' is not zero, but the "
                                 f"official {variant} q/k/v Conv1d has no bias")
        return None
    if our_key.endswith(".weight"):
        mlp_2d = variant == "imagenet" and ".mlp." in our_key
        return value.reshape(*value.shape, 1, 1) if mlp_2d else value.reshape(*value.shape, 1)
    return value


def to_official_state_dict(model: Spikformer, variant: str, *, seed: int = 0
                           ) -> dict[str, torch.Tensor]:
    """The state_dict the official ``variant`` code would hold for ``model``.

    Exactly the official keys: our keys renamed (the inverse of
    :func:`~nmc_deploy.models.import_official.convert_official_state_dict`), 1x1-conv
    weights reshaped (ImageNet: Conv1d attention, Conv2d MLP; DVS: Conv1d), no q/k/v bias
    in ImageNet/DVS, plus the unused parts of the official model: LayerNorms ``norm1``,
    ``norm2`` per block (weight 1, bias 0), and for DVS ``pos_embed`` (1, N, D; truncated
    normal, std 0.02, seeded by ``seed``) and ``norm``. Token selectors are written in the
    release's layout, ``predictor.<p>.linear.{0,2}.*``. Tensors are copies.
    """
    from .import_official import _official_key  # the one mapping of our keys to official ones

    if variant not in PAPER_SHAPES:
        raise NmcDeployError(f"to_official_state_dict: variant ({variant!r}) must be one of "
                             f"{', '.join(PAPER_SHAPES)}")
    cfg = model.config
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        official = _official_weight(key, value.detach().clone(), variant)
        if official is not None:
            out[_official_key(key, variant, "predictor")] = official
    d = cfg.embed_dim
    for i in range(cfg.depth):
        for norm in ("norm1", "norm2"):
            out[f"block.{i}.{norm}.weight"] = torch.ones(d)
            out[f"block.{i}.{norm}.bias"] = torch.zeros(d)
    if variant == "dvs":
        gen = torch.Generator().manual_seed(int(seed))
        pos = torch.empty(1, cfg.num_tokens, d)
        out["pos_embed"] = nn.init.trunc_normal_(pos, std=0.02, generator=gen)
        out["norm.weight"], out["norm.bias"] = torch.ones(d), torch.zeros(d)
    return out


def synthetic_official_state_dict(variant: str | None, config: SpikformerConfig | str, *,
                                  seed: int = 0,
                                  firing: tuple[float, float] = DEFAULT_FIRING,
                                  samples: int = 8,
                                  prune: Callable[[Spikformer], Any] | None = None
                                  ) -> dict[str, torch.Tensor]:
    """An official-format state_dict of ``config`` with random weights, firing at ``firing``.

    :func:`synthetic_model` (inputs of the variant: 8-bit images for cifar/imagenet, 0/1
    event frames for dvs, :data:`INPUT_LEVELS`) written in the official key layout
    (:func:`to_official_state_dict`). It imports with
    :func:`~nmc_deploy.models.import_official.load_official_checkpoint` (``num_heads``,
    ``img_size``, ``time_steps`` and, for token-pruned configs, ``token_keep`` and
    ``token_blocks`` of ``config``) back into exactly the calibrated model.

    Parameters
    ----------
    variant : {'cifar', 'imagenet', 'dvs'} or None
        Official code variant; None takes the preset's (:data:`PRESET_VARIANTS`).
    config : SpikformerConfig or str
        The model, or a preset name (``"cifar10-4-384"``, ...). Its pooling, scale and LIF
        constants must be the variant's official ones.
    seed : int
        Seeds weights, calibration inputs and ``pos_embed``.
    firing : (float, float)
        Firing-rate range of every LIF layer.
    samples : int
        Calibration inputs.
    prune : callable, optional
        Applied to the random model before calibration (weight sparsity).

    Raises
    ------
    NmcDeployError
        If the variant is unknown, or ``config`` is not expressible in its layout.
    """
    variant, config = _resolve(variant, config)
    frames = variant == "dvs"
    model = synthetic_model(config, seed=seed, firing=firing, frames=frames,
                            levels=INPUT_LEVELS[variant], samples=samples, prune=prune)
    return to_official_state_dict(model, variant, seed=seed)
