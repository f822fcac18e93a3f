"""Import checkpoints of the official Spikformer and SparseSpikformer code.

The official code (``ZK-Zhou/spikformer``; docs: spikformer-and-pruning.md section 1)
comes in three variants that differ in module names, weight shapes, pooling and the
attention scale:

=========  ==========================  ===========================  ==========  =====
variant    q/k/v/proj, fc1/fc2          SPS MaxPool(3, 2, 1) after   in_chans    scale
=========  ==========================  ===========================  ==========  =====
cifar      ``*_linear`` (nn.Linear)     stages 3 and 4 of 4          3           0.125
imagenet   ``*_conv``: Conv1d 1x1       all 4 stages                 3           0.125
           (q/k/v bias-free); MLP
           Conv2d 1x1
dvs        ``*_conv``: Conv1d 1x1       all 4 stages                 2           0.25
           (q/k/v bias-free); MLP
           Conv1d 1x1
=========  ==========================  ===========================  ==========  =====

SparseSpikformer (section 2) is the same backbone plus ``score_predictor.<p>`` token
selectors (``Linear(D, D/2) -> GELU -> Linear(D/2, 2) -> LogSoftmax``). By default they are
ignored and the imported model is the dense backbone. With ``token_keep=r`` they are imported
as our :class:`~nmc_deploy.models.spikformer.TokenPredictor` modules
(``score_predictor.<p>.linear.0`` -> ``token_predictors.<p>.fc1``, ``.linear.2`` -> ``.fc2``),
placed before the blocks of the release's ``pruning_loc`` (the last P of the L blocks, or
``token_blocks``); selector p keeps ``floor(N r**p)`` tokens in eval mode.

:func:`convert_official_state_dict` renames the official keys to ours, turns 1x1-conv
weights into ``nn.Linear`` weights, adds the zero biases our q/k/v linears have and the
official bias-free convs lack, and checks every shape. Every problem is one
:class:`~nmc_deploy.errors.CheckpointError` line that names the offending key.
Files are read with ``torch.load(..., weights_only=True)`` only: no code in a file is run.
The user guide is docs/checkpoint-import.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import CheckpointError, NmcDeployError
from .checkpoint import read_torch_archive
from .spikformer import Spikformer, SpikformerConfig

__all__ = [
    "VARIANTS", "DEFAULT_NUM_HEADS", "ImportReport", "unwrap_official_state_dict",
    "detect_official_variant", "infer_official_config", "convert_official_state_dict",
    "load_official_checkpoint",
]

VARIANTS = ("cifar", "imagenet", "dvs")  # official code variants, see the module docstring

# num_heads of the official configurations, keyed by (variant, embed_dim); the weights do
# not determine it (docs section 1.4: CIFAR 4-384: 12, ImageNet 8-512: 8, 8-768: 12,
# DVS 2-256 and SparseSpikformer DVS 4-256: 16). Any other size needs num_heads.
DEFAULT_NUM_HEADS: dict[tuple[str, int], int] = {
    ("cifar", 384): 12,
    ("imagenet", 512): 8,
    ("imagenet", 768): 12,
    ("dvs", 256): 16,
}

_ATTN_SCALE = {"cifar": 0.125, "imagenet": 0.125, "dvs": 0.25}  # s of the official code
# ndim of the official q/k/v/proj and fc1/fc2 weights
_ATTN_WEIGHT_NDIM = {"cifar": 2, "imagenet": 3, "dvs": 3}
_MLP_WEIGHT_NDIM = {"cifar": 2, "imagenet": 4, "dvs": 3}

_WRAPPER_KEYS = ("model", "state_dict")  # torch.save({'model': sd}) / timm {'state_dict': sd}
_DP_PREFIX = "module."  # key prefix added by nn.DataParallel / DistributedDataParallel
_BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_FIRST_CONV = "patch_embed.proj_conv.weight"
# timm's CheckpointSaver stores the training arguments as an argparse.Namespace: plain data,
# allowed on top of torch's weights-only set so official *.pth.tar files load as they are.
_SAFE_GLOBALS = [argparse.Namespace]

# SparseSpikformer token selector ``score_predictor.<p>.linear.{0,2}.{weight,bias}``
_SELECTOR_KEY = re.compile(r"^score_predictor\.(\d+)\..+$")
# Official keys that exist but take no part in the forward pass (docs sections 1.2, 1.4, 2.2).
_IGNORED = (
    (re.compile(r"^block\.\d+\.norm[12]\.(weight|bias)$"),
     "LayerNorm instantiated but unused in the official forward"),
    (re.compile(r"^norm\.(weight|bias)$"), "LayerNorm unused in the official DVS forward"),
    (re.compile(r"^(patch_embed\.)?pos_embed$"), "pos_embed unused in the official DVS forward"),
    (_SELECTOR_KEY,
     "SparseSpikformer token selector; not imported without token_keep (dense import)"),
)
# our TokenPredictor sub-module <- index in the official Predictor's nn.Sequential
_SELECTOR_LAYERS = {"fc1": "0", "fc2": "2"}


@dataclass(frozen=True)
class ImportReport:
    """What :func:`convert_official_state_dict` did with each key (immutable).

    Attributes
    ----------
    variant : str
        Official code variant the keys belong to (one of :data:`VARIANTS`).
    mapped : tuple of (str, str)
        ``(official_key, our_key)`` for every copied tensor.
    reshaped : tuple of str
        Official keys of 1x1-conv weights flattened to ``nn.Linear`` weights.
    added : tuple of (str, str)
        ``(our_key, reason)`` for tensors the official file lacks and the import creates
        (zero q/k/v biases, ``num_batches_tracked``).
    ignored : tuple of (str, str)
        ``(official_key, reason)`` for keys that are not imported.
    notes : tuple of str
        Known differences between the official model and the imported one.
    """

    variant: str
    mapped: tuple[tuple[str, str], ...]
    reshaped: tuple[str, ...]
    added: tuple[tuple[str, str], ...]
    ignored: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields (pairs become two-element lists)."""
        return {f.name: _listify(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def summary(self) -> str:
        """Multi-line human-readable summary (counts, ignored keys, notes)."""
        lines = [f"official {self.variant} checkpoint: {len(self.mapped)} tensors mapped "
                 f"({len(self.reshaped)} reshaped from 1x1 convs), {len(self.added)} added, "
                 f"{len(self.ignored)} ignored"]
        lines += [f"  added {key}: {why}" for key, why in self.added]
        lines += [f"  ignored {key}: {why}" for key, why in self.ignored]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _listify(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listify(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# unwrapping and detection


def unwrap_official_state_dict(obj: Any, where: str = "official checkpoint"
                               ) -> dict[str, torch.Tensor]:
    """Return the bare state_dict held by ``obj``.

    Accepts a bare state_dict, ``{'model': sd}``, ``{'state_dict': sd}`` (timm's
    ``CheckpointSaver``; other entries such as ``optimizer``, ``args``, ``epoch`` and
    ``state_dict_ema`` are left alone), and keys prefixed with ``module.`` (saved from
    ``nn.DataParallel``). The input is not modified.

    Parameters
    ----------
    obj : Any
        What ``torch.load`` returned.
    where : str
        Prefix of error messages (usually the file name).

    Returns
    -------
    dict
        ``{official_key: tensor}``, without the ``module.`` prefix.

    Raises
    ------
    CheckpointError
        If ``obj`` is not a dict of tensors, or is an nmc-deploy checkpoint.
    """
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{where}: holds a {type(obj).__name__}, not a state_dict; give the file saved "
            f"with torch.save(model.state_dict()) or a {{'model': ...}} / {{'state_dict': ...}} "
            f"checkpoint")
    if obj.get("format") == "nmc-deploy-checkpoint":
        raise CheckpointError(
            f"{where}: is an nmc-deploy checkpoint, not an official one; load it with "
            f"nmc_deploy.models.checkpoint.load_checkpoint")
    state = obj
    if _FIRST_CONV not in _strip_prefix(obj):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{where}: the state_dict is empty")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{where}: key {key!r} is a {type(key).__name__}; a state_dict has string keys")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{where}: entry '{key}' is a {type(value).__name__}, not a tensor; this is not "
                f"a state_dict (entries: {_short_list(list(state))})")
    return _strip_prefix(state)


def _strip_prefix(state: dict) -> dict:
    """Drop the ``module.`` prefix if every key has it."""
    keys = [k for k in state if isinstance(k, str)]
    if keys and len(keys) == len(state) and all(k.startswith(_DP_PREFIX) for k in keys):
        return {k[len(_DP_PREFIX):]: v for k, v in state.items()}
    return state


def detect_official_variant(sd: dict[str, torch.Tensor], where: str = "official checkpoint"
                            ) -> str:
    """Tell the official code variant from the key names and weight shapes.

    ``block.0.attn.q_linear`` means ``cifar``; ``block.0.attn.q_conv`` with a Conv2d 1x1
    MLP (4-D ``fc1_conv`` weight) means ``imagenet``, with a Conv1d 1x1 MLP (3-D) ``dvs``.

    Raises
    ------
    CheckpointError
        If the keys fit none of the variants.
    """
    sd = unwrap_official_state_dict(sd, where)
    if _FIRST_CONV not in sd:
        raise CheckpointError(
            f"{where}: not an official Spikformer state_dict (no '{_FIRST_CONV}'; keys: "
            f"{_short_list(list(sd))})")
    if "block.0.attn.q_linear.weight" in sd:
        return "cifar"
    key = "block.0.mlp.fc1_conv.weight"
    if "block.0.attn.q_conv.weight" in sd and key in sd:
        ndim = sd[key].ndim
        for variant in ("imagenet", "dvs"):
            if ndim == _MLP_WEIGHT_NDIM[variant]:
                return variant
        raise CheckpointError(
            f"{where}: '{key}' has shape {tuple(sd[key].shape)}; expected a Conv2d 1x1 "
            f"(imagenet) or Conv1d 1x1 (dvs) weight")
    raise CheckpointError(
        f"{where}: no 'block.0.attn.q_linear.weight' (cifar) nor 'block.0.attn.q_conv.weight' "
        f"+ 'block.0.mlp.fc1_conv.weight' (imagenet/dvs); not an official Spikformer "
        f"state_dict or a model without blocks")


# --------------------------------------------------------------------------------------------
# config inference


def _count_sps_stages(sd: dict) -> int:
    n = 0
    while f"patch_embed.{_sps_name('proj_conv', n)}.weight" in sd:
        n += 1
    return n


def _sps_name(base: str, i: int) -> str:
    """Official SPS module name of stage ``i``: proj_conv, proj_conv1, proj_conv2, ..."""
    return base if i == 0 else f"{base}{i}"


def _count_blocks(sd: dict, where: str) -> int:
    indices = {int(m.group(1)) for k in sd if (m := re.match(r"^block\.(\d+)\.", k))}
    if not indices:
        raise CheckpointError(f"{where}: no 'block.<i>.' keys; the model has no blocks")
    depth = max(indices) + 1
    missing = sorted(set(range(depth)) - indices)
    if missing:
        raise CheckpointError(
            f"{where}: missing keys 'block.{missing[0]}.*' (blocks {sorted(indices)} present)")
    return depth


def _official_pools(variant: str, num_stages: int) -> tuple[bool, ...]:
    """MaxPool after stage i? cifar: the last two stages (3 and 4 of 4); imagenet/dvs: all."""
    if variant == "cifar":
        return tuple(i >= num_stages - 2 for i in range(num_stages))
    return (True,) * num_stages


def _weight_shape(sd: dict, key: str, ndim: int, where: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{where}: missing key '{key}'")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{where}: '{key}' has shape {shape}; expected a {ndim}-D weight")
    return shape


def _count_selectors(sd: dict, where: str) -> int:
    """P, the number of ``score_predictor.<p>`` token selectors (indices 0 .. P-1)."""
    indices = {int(m.group(1)) for k in sd if (m := _SELECTOR_KEY.match(k))}
    if not indices:
        return 0
    count = max(indices) + 1
    missing = sorted(set(range(count)) - indices)
    if missing:
        raise CheckpointError(
            f"{where}: missing keys 'score_predictor.{missing[0]}.*' (selectors "
            f"{sorted(indices)} present)")
    return count


def _selector_range(count: int) -> str:
    return "score_predictor.0" if count == 1 else f"score_predictor.0 .. {count - 1}"


def _check_token_args(token_keep: Any, token_blocks: Any, where: str
                      ) -> tuple[float | None, tuple[int, ...] | None]:
    """Validate the ``token_keep`` / ``token_blocks`` arguments (not yet the checkpoint)."""
    if token_keep is None:
        if token_blocks is not None:
            raise NmcDeployError(
                f"{where}: token_blocks ({token_blocks!r}) is given without token_keep; pass "
                f"token_keep=r too to import the token selectors")
        return None, None
    if (isinstance(token_keep, bool) or not isinstance(token_keep, (int, float))
            or not 0.0 < token_keep < 1.0):
        raise NmcDeployError(
            f"{where}: token_keep ({token_keep!r}) must be in (0, 1), the fraction r of the "
            f"tokens each selector keeps (selector p keeps floor(N r**p); the release's CIFAR "
            f"base_rate is 0.9); omit it to import the dense backbone")
    if token_blocks is None:
        return float(token_keep), None
    if not isinstance(token_blocks, (tuple, list)) or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in token_blocks):
        raise NmcDeployError(
            f"{where}: token_blocks ({token_blocks!r}) must be a sequence of block indices, "
            f"one per token selector")
    return float(token_keep), tuple(token_blocks)


def _selector_config(sd: dict, depth: int, token_keep: float | None,
                     token_blocks: tuple[int, ...] | None, where: str
                     ) -> tuple[float, tuple[int, ...], list[str]]:
    """``token_keep``, ``token_blocks`` and notes of the config (``(1.0, (), [])``: dense)."""
    if token_keep is None:
        return 1.0, (), []
    count = _count_selectors(sd, where)
    if count == 0:
        raise CheckpointError(
            f"{where}: token_keep ({token_keep}) was given but the checkpoint has no "
            f"'score_predictor.<p>.*' keys (no SparseSpikformer token selectors); omit "
            f"token_keep")
    if count > depth:
        raise CheckpointError(
            f"{where}: {count} token selectors ({_selector_range(count)}) but only {depth} "
            f"blocks; each selector precedes its own block, so the checkpoint is inconsistent")
    notes = []
    if token_blocks is None:
        token_blocks = tuple(range(depth - count, depth))
        notes.append(
            f"token selectors placed before blocks {list(token_blocks)} (the last {count} of "
            f"{depth}, as the release's pruning_loc=[1, 2, 3] for 4 blocks); pass token_blocks "
            f"if the model was trained with another pruning_loc")
    elif len(token_blocks) != count:
        raise CheckpointError(
            f"{where}: token_blocks {list(token_blocks)} has {len(token_blocks)} entries but "
            f"the checkpoint has {count} token selectors ({_selector_range(count)}); give one "
            f"block index per selector")
    return token_keep, token_blocks, notes


def _infer(sd: dict, *, img_size: int, time_steps: int, num_heads: int | None,
           variant: str | None, where: str, token_keep: float | None = None,
           token_blocks: Sequence[int] | None = None
           ) -> tuple[SpikformerConfig, str, list[str]]:
    """Config, variant and notes about the inference (see :func:`infer_official_config`)."""
    token_keep, token_blocks = _check_token_args(token_keep, token_blocks, where)
    sd = unwrap_official_state_dict(sd, where)
    detected = detect_official_variant(sd, where)
    if variant is None:
        variant = detected
    elif variant not in VARIANTS:
        raise NmcDeployError(
            f"{where}: variant ({variant!r}) is unknown; choose one of {', '.join(VARIANTS)}")
    elif variant != detected:
        raise CheckpointError(
            f"{where}: variant '{variant}' was requested but the keys are those of the "
            f"'{detected}' code ({_style_evidence(detected)})")
    notes = []

    num_stages = _count_sps_stages(sd)
    sps_channels = []
    for i in range(num_stages):
        key = f"patch_embed.{_sps_name('proj_conv', i)}.weight"
        sps_channels.append(_weight_shape(sd, key, 4, where)[0])
    in_channels = _weight_shape(sd, _FIRST_CONV, 4, where)[1]
    embed_dim = sps_channels[-1]
    mlp_key = f"block.0.mlp.{'fc1_linear' if variant == 'cifar' else 'fc1_conv'}.weight"
    hidden = _weight_shape(sd, mlp_key, _MLP_WEIGHT_NDIM[variant], where)[0]
    if hidden % embed_dim != 0:
        raise CheckpointError(
            f"{where}: '{mlp_key}' has {hidden} output channels, not a multiple of embed_dim "
            f"({embed_dim}); cannot express the MLP with an integer mlp_ratio")
    num_classes = _weight_shape(sd, "head.weight", 2, where)[0]

    if num_heads is None:
        num_heads = DEFAULT_NUM_HEADS.get((variant, embed_dim))
        if num_heads is None:
            known = ", ".join(f"{v} D={d}: {h}" for (v, d), h in DEFAULT_NUM_HEADS.items())
            raise CheckpointError(
                f"{where}: num_heads cannot be read from the weights and {variant} "
                f"embed_dim={embed_dim} is not an official configuration; pass num_heads "
                f"(official defaults: {known})")
        notes.append(f"num_heads={num_heads} assumed (official {variant} D={embed_dim} "
                     f"default); pass num_heads if the model was trained otherwise")
    depth = _count_blocks(sd, where)
    keep, blocks, selector_notes = _selector_config(sd, depth, token_keep, token_blocks, where)
    notes += selector_notes
    try:
        cfg = SpikformerConfig(
            img_size=img_size, in_channels=in_channels, num_classes=num_classes,
            embed_dim=embed_dim, num_heads=num_heads, depth=depth,
            mlp_ratio=hidden // embed_dim, time_steps=time_steps,
            sps_channels=tuple(sps_channels), sps_pool=_official_pools(variant, num_stages),
            attn_scale=_ATTN_SCALE[variant], token_keep=keep, token_blocks=blocks)
    except CheckpointError:
        raise
    except NmcDeployError as exc:
        raise CheckpointError(f"{where}: cannot build the config: {exc}") from exc
    return cfg, variant, notes


def _style_evidence(variant: str) -> str:
    if variant == "cifar":
        return "nn.Linear q_linear/fc1_linear"
    return ("Conv1d q_conv, Conv2d fc1_conv" if variant == "imagenet"
            else "Conv1d q_conv, Conv1d fc1_conv")


def infer_official_config(sd: dict[str, torch.Tensor], *, img_size: int, time_steps: int,
                          num_heads: int | None = None, variant: str | None = None,
                          token_keep: float | None = None,
                          token_blocks: Sequence[int] | None = None) -> SpikformerConfig:
    """Build the :class:`SpikformerConfig` of an official Spikformer state_dict.

    Read from the weights: ``in_channels`` (first SPS conv), ``sps_channels`` (one per
    ``proj_conv``, ``proj_conv1``, ...), ``embed_dim`` (the last of them), ``depth``
    (``block.<i>`` indices), ``mlp_ratio`` (``fc1`` outputs / D) and ``num_classes``
    (``head``). Fixed by the variant: ``sps_pool`` (cifar: MaxPool after the last two of the
    four stages, ``(False, False, True, True)``; imagenet/dvs: after all four) and
    ``attn_scale`` (0.125; dvs 0.25). LIF constants are the official ones (tau 2, threshold 1,
    attention threshold 0.5).

    SparseSpikformer token selectors (``score_predictor.<p>``, P of them) are left out of the
    config unless ``token_keep`` is given; then ``token_keep=r`` and ``token_blocks`` (default
    the last P blocks, ``range(depth - P, depth)``: the release's ``pruning_loc=[1, 2, 3]``
    for 4 blocks) are set, and :func:`convert_official_state_dict` imports the selectors.

    Parameters
    ----------
    sd : dict
        Official state_dict (wrappers and ``module.`` prefixes are removed first).
    img_size : int
        Input height = width in pixels (official: cifar 32, imagenet 224, dvs 128).
    time_steps : int
        T (official: cifar and imagenet 4, dvs 16 frames).
    num_heads : int, optional
        Attention heads; they leave no trace in the weights. Default: the official value
        for the variant and width, :data:`DEFAULT_NUM_HEADS` (cifar D=384: 12, imagenet
        D=512: 8, D=768: 12, dvs D=256: 16); other widths must pass it.
    variant : {'cifar', 'imagenet', 'dvs'}, optional
        Official code variant; detected from the keys by default
        (:func:`detect_official_variant`). If given, it must agree with the keys.
    token_keep : float, optional
        r in (0, 1): import the SparseSpikformer token selectors; the p-th selector
        (p = 1 .. P) keeps ``floor(N r**p)`` tokens in eval mode (one schedule for training
        and inference; the release's CIFAR ``base_rate`` is 0.9). Default None: dense import,
        the selectors are ignored.
    token_blocks : sequence of int, optional
        The block each selector precedes (the release's ``pruning_loc``), one per selector;
        only with ``token_keep``. Default: the last P blocks.

    Returns
    -------
    SpikformerConfig

    Raises
    ------
    CheckpointError
        If ``sd`` is not an official Spikformer state_dict, ``variant`` disagrees with it,
        ``num_heads`` is needed but not given, ``token_keep`` is given but there are no
        selectors, there are more selectors than blocks, ``token_blocks`` has not one entry
        per selector, or the values do not form a valid config.
    NmcDeployError
        If ``variant`` is unknown, ``token_keep`` is not in (0, 1), or ``token_blocks`` is
        given without ``token_keep``.
    """
    cfg, _, _ = _infer(sd, img_size=img_size, time_steps=time_steps, num_heads=num_heads,
                       variant=variant, where="official checkpoint", token_keep=token_keep,
                       token_blocks=token_blocks)
    return cfg


# --------------------------------------------------------------------------------------------
# conversion


def _official_key(our_key: str, variant: str) -> str:
    """Official key that supplies ``our_key`` (of a :class:`Spikformer` state_dict)."""
    parts = our_key.split(".")
    if parts[0] == "token_predictors":  # token_predictors.<p>.fc1.weight
        return ".".join(["score_predictor", parts[1], "linear", _SELECTOR_LAYERS[parts[2]]]
                        + parts[3:])
    if parts[0] == "patch_embed" and parts[1] in ("convs", "bns"):
        base = "proj_conv" if parts[1] == "convs" else "proj_bn"
        return ".".join(["patch_embed", _sps_name(base, int(parts[2]))] + parts[3:])
    if parts[0] == "blocks":
        parts[0] = "block"
        if variant != "cifar" and parts[3].endswith("_linear"):
            parts[3] = parts[3][: -len("_linear")] + "_conv"
    return ".".join(parts)


def _optional_reason(official_key: str, variant: str) -> str | None:
    """Why an absent official key may be filled in, or None if it is required."""
    if official_key.endswith(".num_batches_tracked"):
        return "num_batches_tracked absent (older PyTorch); set to 0, unused in eval"
    if variant != "cifar" and re.fullmatch(r"block\.\d+\.attn\.[qkv]_conv\.bias", official_key):
        return "official q/k/v Conv1d has bias=False; zero bias"
    return None


def _cfg_notes(cfg: SpikformerConfig, variant: str, num_stages: int) -> list[str]:
    notes = []
    pools = _official_pools(variant, num_stages)
    if cfg.sps_pool != pools:
        notes.append(f"cfg.sps_pool {cfg.sps_pool} differs from the official {variant} "
                     f"pooling {pools}; logits will not match the official model")
    if cfg.attn_scale != _ATTN_SCALE[variant]:
        notes.append(f"cfg.attn_scale ({cfg.attn_scale}) differs from the official {variant} "
                     f"scale ({_ATTN_SCALE[variant]}); logits will not match the official model")
    return notes


def _variant_notes(variant: str, ignored_selectors: bool) -> list[str]:
    notes = []
    if variant != "cifar":
        notes.append(
            "official tokens are (T, B, D, N) with 1x1 convs; ours are (T, B, N, D) with "
            "nn.Linear, token n = row * W + col in both; identical results")
    if variant == "dvs":
        notes.append(
            "official dvs code multiplies by 0.25 after A @ V; we scale Q K^T before it. The "
            "scale is linear and precedes attn_lif, and 0.25 is a power of two: identical "
            "results")
        notes.append(
            "the official dvs model takes T event frames (T, B, 2, H, W); Spikformer.forward "
            "repeats one image T times, so feed frames through patch_embed, blocks and head")
    if ignored_selectors:
        notes.append(
            "SparseSpikformer token selectors ignored: the imported model keeps all tokens, "
            "while the official inference drops tokens (top-k per selector); logits differ "
            "from the token-pruned model. Pass token_keep=r (the release's CIFAR base_rate "
            "is 0.9) to import them")
    return notes


def _selector_notes(cfg: SpikformerConfig, variant: str) -> list[str]:
    if not cfg.token_blocks:
        return []
    kept = ", ".join(str(cfg.kept_tokens(p)) for p in range(1, len(cfg.token_blocks) + 1))
    notes = [
        f"token selectors imported before blocks {list(cfg.token_blocks)}: in eval mode "
        f"selector p keeps floor(N r**p) of the N={cfg.num_tokens} tokens ({kept}; "
        f"r={cfg.token_keep}), one schedule for training and inference like the release's "
        f"CIFAR code; its DVS inference used other ratios than its training "
        f"(docs/checkpoint-import.md)",
        "tokens are ranked by logit_keep - logit_drop, the order of the release's LogSoftmax "
        "keep log-probability; ties go to the lower token index (unspecified in the release)",
    ]
    if variant == "dvs":
        notes.append(
            "feeding event frames through patch_embed, blocks and head bypasses the token "
            "selectors; only Spikformer.forward (a repeated image) applies them")
    return notes


def convert_official_state_dict(sd: dict[str, torch.Tensor], cfg: SpikformerConfig
                                ) -> tuple[dict[str, torch.Tensor], ImportReport]:
    """Rename and reshape an official state_dict to the keys of ``Spikformer(cfg)``.

    The mapping (docs/checkpoint-import.md has the full table):

    * ``patch_embed.proj_conv{,1,2,3}`` / ``proj_bn{,1,2,3}`` -> ``patch_embed.convs.<i>`` /
      ``bns.<i>``; ``rpe_conv``/``rpe_bn`` and ``head`` keep their names;
    * ``block.<i>.attn.{q,k,v,proj}_linear|_conv`` -> ``blocks.<i>.attn.{q,k,v,proj}_linear``
      and ``block.<i>.mlp.fc{1,2}_linear|_conv`` -> ``blocks.<i>.mlp.fc{1,2}_linear``; 1x1
      conv weights ``(out, in, 1[, 1])`` become ``(out, in)``; BN entries keep their names;
    * missing q/k/v biases (bias-free official convs) become zeros; a missing
      ``num_batches_tracked`` becomes 0;
    * ``score_predictor.<p>.linear.0.*`` -> ``token_predictors.<p>.fc1.*`` and
      ``.linear.2.*`` -> ``token_predictors.<p>.fc2.*`` if ``cfg.token_blocks`` has one entry
      per selector (a config from :func:`infer_official_config` with ``token_keep``);
      with no ``token_blocks`` they are ignored (dense import);
    * ``block.<i>.norm1/norm2``, ``norm`` and ``pos_embed`` are ignored (unused in the
      official forward).

    The input is not modified; the returned tensors are contiguous copies.

    Parameters
    ----------
    sd : dict
        Official state_dict (wrappers and ``module.`` prefixes are removed first).
    cfg : SpikformerConfig
        Target config, normally from :func:`infer_official_config`.

    Returns
    -------
    state_dict : dict
        Exactly the keys of ``Spikformer(cfg).state_dict()``, with matching shapes.
    report : ImportReport

    Raises
    ------
    CheckpointError
        On the first missing key, unexpected key or shape mismatch (the message names the
        official key and both shapes), or if ``cfg.token_blocks`` is not empty and does not
        have one entry per selector of the checkpoint.
    """
    return _convert(sd, cfg, where="official checkpoint")


def _convert(sd: dict, cfg: SpikformerConfig, where: str
             ) -> tuple[dict[str, torch.Tensor], ImportReport]:
    if not isinstance(cfg, SpikformerConfig):
        raise NmcDeployError(f"{where}: cfg must be a SpikformerConfig, got {type(cfg).__name__}")
    # Official models have plain LIF neurons and full-rank matrices; read with getattr so
    # that this check also holds for configs without these (newer) fields.
    if getattr(cfg, "neuron", "lif") != "lif" or getattr(cfg, "low_rank", ()):
        raise NmcDeployError(
            f"{where}: cfg has neuron={getattr(cfg, 'neuron', 'lif')!r} and "
            f"low_rank={getattr(cfg, 'low_rank', ())!r}; official checkpoints hold plain LIF "
            f"and full-rank weights, so import with the defaults (neuron='lif', low_rank=()) "
            f"and convert the model afterwards")
    sd = unwrap_official_state_dict(sd, where)
    variant = detect_official_variant(sd, where)
    selectors, n_cfg = _count_selectors(sd, where), len(cfg.token_blocks)
    if n_cfg and selectors != n_cfg:
        have = (f"{selectors} token selectors ({_selector_range(selectors)})" if selectors
                else "no 'score_predictor.<p>.*' keys (no token selectors)")
        raise CheckpointError(
            f"{where}: cfg.token_blocks {list(cfg.token_blocks)} asks for {n_cfg} token "
            f"selectors but the checkpoint has {have}; give one block per selector, or no "
            f"token_blocks for the dense import")
    with torch.device("meta"):  # shapes only, no memory and no init cost
        expected = Spikformer(cfg).state_dict()
    wanted = {_official_key(ours, variant): ours for ours in expected}

    ignored, unexpected = [], []
    for key in sd:
        if key in wanted:
            continue
        reason = next((why for pattern, why in _IGNORED if pattern.match(key)
                       and not (n_cfg and pattern is _SELECTOR_KEY)), None)
        if reason is None:
            unexpected.append(key)
        else:
            ignored.append((key, reason))
    if unexpected:
        raise CheckpointError(
            f"{where}: unexpected key '{unexpected[0]}'{_more(unexpected)}; the checkpoint "
            f"does not fit the config (depth {cfg.depth}, {len(cfg.sps_channels)} SPS stages) "
            f"or is not an official Spikformer")

    out, mapped, reshaped, added = {}, [], [], []
    for official, ours in wanted.items():
        ref = expected[ours]
        if official not in sd:
            reason = _optional_reason(official, variant)
            if reason is None:
                missing = [k for k in wanted if k not in sd and _optional_reason(k, variant)
                           is None]
                raise CheckpointError(
                    f"{where}: missing key '{official}'{_more(missing)} (needed for our "
                    f"'{ours}')")
            out[ours] = torch.zeros(ref.shape, dtype=ref.dtype)
            added.append((ours, reason))
            continue
        value = sd[official]
        shape = tuple(value.shape)
        if shape != tuple(ref.shape) and ref.ndim == 2 and ours.startswith("blocks."):
            # 1x1 conv (out, in, 1) / (out, in, 1, 1) -> linear (out, in)
            if value.ndim in (3, 4) and all(s == 1 for s in shape[2:]):
                value = value.reshape(shape[:2])
                reshaped.append(official)
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{where}: '{official}' has shape {shape}, the config needs "
                f"{tuple(ref.shape)} for '{ours}'")
        if value.dtype.is_floating_point != ref.dtype.is_floating_point:
            raise CheckpointError(
                f"{where}: '{official}' has dtype {value.dtype}, expected {ref.dtype}")
        out[ours] = value.detach().to(device="cpu", dtype=ref.dtype).clone().contiguous()
        mapped.append((official, ours))

    notes = _cfg_notes(cfg, variant, len(cfg.sps_channels))
    notes += _variant_notes(variant, any(k.startswith("score_predictor.") for k, _ in ignored))
    notes += _selector_notes(cfg, variant)
    report = ImportReport(variant=variant, mapped=tuple(mapped), reshaped=tuple(reshaped),
                          added=tuple(added), ignored=tuple(ignored), notes=tuple(notes))
    return out, report


def _more(keys: list) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def _short_list(keys: list, limit: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# --------------------------------------------------------------------------------------------
# loading


def load_official_checkpoint(path: str | Path, *, num_heads: int | None, img_size: int,
                             time_steps: int, variant: str | None = None,
                             token_keep: float | None = None,
                             token_blocks: Sequence[int] | None = None
                             ) -> tuple[Spikformer, ImportReport]:
    """Load an official Spikformer / SparseSpikformer checkpoint as our :class:`Spikformer`.

    Reads the file with ``torch.load(path, map_location="cpu", weights_only=True)`` (plus
    ``argparse.Namespace``, which timm stores as ``args``), unwraps it
    (:func:`unwrap_official_state_dict`), infers the config
    (:func:`infer_official_config`), converts the keys
    (:func:`convert_official_state_dict`) and loads them with ``strict=True``.

    Parameters
    ----------
    path : str or Path
        Checkpoint file (``*.pth``, ``*.pth.tar``, ``*.pt``).
    num_heads : int or None
        Attention heads (not stored in the weights). None takes the official default for
        the variant and width (:data:`DEFAULT_NUM_HEADS`) and says so in the report.
    img_size : int
        Input height = width in pixels.
    time_steps : int
        T, time steps (the image is repeated T times by ``Spikformer.forward``).
    variant : {'cifar', 'imagenet', 'dvs'}, optional
        Official code variant; detected from the keys if omitted, checked if given.
    token_keep : float, optional
        r in (0, 1): import SparseSpikformer's token selectors; in eval mode the p-th
        selector keeps the ``floor(N r**p)`` highest-scoring tokens and removes the others.
        Default None: the selectors are ignored (dense backbone, noted in the report).
    token_blocks : sequence of int, optional
        Blocks preceded by a selector (the release's ``pruning_loc``), one per selector;
        default the last P blocks. Only with ``token_keep``.

    Returns
    -------
    model : Spikformer
        In eval mode, on the CPU.
    report : ImportReport
        Mapped, reshaped, added and ignored keys and the known differences.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, holds non-plain-data objects, is not an
        official Spikformer state_dict, a key is missing, unexpected or of the wrong shape,
        or the token selectors do not fit ``token_keep`` / ``token_blocks`` (see
        :func:`infer_official_config`).
    NmcDeployError
        If an argument is invalid (unknown ``variant``, ``token_keep`` not in (0, 1)).
    """
    path = Path(path)
    where = str(path)
    _check_token_args(token_keep, token_blocks, where)  # before reading the file
    sd = unwrap_official_state_dict(read_torch_archive(
        path, safe_globals=tuple(_SAFE_GLOBALS),
        hint="if you trust the file, re-save only its state_dict with torch.save"), where)
    cfg, variant, infer_notes = _infer(sd, img_size=img_size, time_steps=time_steps,
                                       num_heads=num_heads, variant=variant, where=where,
                                       token_keep=token_keep, token_blocks=token_blocks)
    state, report = _convert(sd, cfg, where)
    if infer_notes:
        report = dataclasses.replace(report, notes=tuple(infer_notes) + report.notes)
    model = Spikformer(cfg)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, report
