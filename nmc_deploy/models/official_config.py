"""The configuration of an official Spikformer / SparseSpikformer checkpoint, read from its weights.

Which code variant wrote a state_dict (CIFAR, ImageNet or DVS), and the
:class:`~nmc_deploy.models.config.SpikformerConfig` its tensors imply (depth, widths, SPS
stages and pooling, token selectors). :mod:`nmc_deploy.models.import_official` converts the
weights; the user guide is docs/checkpoint-import.md.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch

from ..errors import CheckpointError, NmcDeployError
from .config import PAPER_SHAPES, SpikformerConfig

__all__ = ["VARIANTS", "DEFAULT_NUM_HEADS", "SELECTOR_LAYOUTS", "unwrap_official_state_dict",
           "detect_official_variant", "infer_official_config"]

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

_ATTN_SCALE = {v: shape.attn_scale for v, shape in PAPER_SHAPES.items()}  # s of the official code
# ndim of the official q/k/v/proj and fc1/fc2 weights
_ATTN_WEIGHT_NDIM = {"cifar": 2, "imagenet": 3, "dvs": 3}
_MLP_WEIGHT_NDIM = {"cifar": 2, "imagenet": 4, "dvs": 3}

_FIRST_CONV = "patch_embed.proj_conv.weight"
_WRAPPER_KEYS = ("model", "state_dict")  # torch.save({'model': sd}) / timm {'state_dict': sd}
_DP_PREFIX = "module."  # key prefix added by nn.DataParallel / DistributedDataParallel
# Key prefixes of SparseSpikformer token selectors, ``<prefix>.<p>.linear.{0,2}.{weight,bias}``:
# "predictor" is the release's (``self.predictor = nn.ModuleList(Predictor ...)`` in every
# sparse_new_model.py of Rocherster/SparseSpikformer); "score_predictor" is the older layout
# this importer first read (the release has the name only in a commented-out line).
SELECTOR_LAYOUTS = ("predictor", "score_predictor")
_SELECTOR_KEY = re.compile(r"^(predictor|score_predictor)\.(\d+)\.(.+)$")
# sub-modules of the release's unused ``PredictorLG`` (LayerNorm, Linear D->D, GELU, half the
# channels replaced by a policy-weighted global mean, MLP D->D/2->D/4->2), which our
# TokenPredictor (Linear D->D/2, GELU, Linear D/2->2) cannot represent
_PREDICTOR_LG = re.compile(r"^(in_conv|out_conv)\.")


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


def _selector_layout(sd: dict, where: str) -> tuple[str, int]:
    """The token selectors' key prefix (one of :data:`SELECTOR_LAYOUTS`) and their number P.

    P is 0 (prefix "predictor", the release's) for a file without selectors; indices must
    be 0 .. P-1 and all selectors must use one prefix.
    """
    found: dict[str, set[int]] = {}
    for key in sd:
        if m := _SELECTOR_KEY.match(key):
            found.setdefault(m.group(1), set()).add(int(m.group(2)))
    if len(found) > 1:
        first = {prefix: next(k for k in sd if k.startswith(prefix + ".")) for prefix in found}
        raise CheckpointError(
            f"{where}: token selector keys in two layouts, 'predictor.<p>.*' (the release's; "
            f"e.g. '{first['predictor']}') and 'score_predictor.<p>.*' (older; e.g. "
            f"'{first['score_predictor']}'); a checkpoint holds one layout, so this file is "
            f"malformed")
    if not found:
        return SELECTOR_LAYOUTS[0], 0
    prefix, indices = next(iter(found.items()))
    count = max(indices) + 1
    missing = sorted(set(range(count)) - indices)
    if missing:
        raise CheckpointError(
            f"{where}: missing keys '{prefix}.{missing[0]}.*' (selectors {sorted(indices)} "
            f"present)")
    return prefix, count


def _check_selector_form(sd: dict, where: str) -> None:
    """Refuse selectors of the release's ``PredictorLG`` form (only when importing them)."""
    for key in sd:
        m = _SELECTOR_KEY.match(key)
        if m and _PREDICTOR_LG.match(m.group(3)):
            raise CheckpointError(
                f"{where}: '{key}' belongs to the release's PredictorLG token selector "
                f"(LayerNorm, global-feature concatenation, MLP D->D/2->D/4->2), which our "
                f"TokenPredictor (Linear D->D/2, GELU, Linear D/2->2) cannot represent; omit "
                f"token_keep to import the dense backbone")


def _no_selectors_text() -> str:
    return "no 'predictor.<p>.*' (or older 'score_predictor.<p>.*') keys"


def _selector_range(prefix: str, count: int) -> str:
    return f"{prefix}.0" if count == 1 else f"{prefix}.0 .. {count - 1}"


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
    prefix, count = _selector_layout(sd, where)
    if count == 0:
        raise CheckpointError(
            f"{where}: token_keep ({token_keep}) was given but the checkpoint has "
            f"{_no_selectors_text()} (no SparseSpikformer token selectors); omit token_keep")
    _check_selector_form(sd, where)
    if count > depth:
        raise CheckpointError(
            f"{where}: {count} token selectors ({_selector_range(prefix, count)}) but only "
            f"{depth} blocks; each selector precedes its own block, so the checkpoint is "
            f"inconsistent")
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
            f"the checkpoint has {count} token selectors ({_selector_range(prefix, count)}); "
            f"give one block index per selector")
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

    SparseSpikformer token selectors (``predictor.<p>``, the release's layout, or the older
    ``score_predictor.<p>``; P of them) are left out of the config unless ``token_keep`` is
    given; then ``token_keep=r`` and ``token_blocks`` (default the last P blocks,
    ``range(depth - P, depth)``: the release's ``pruning_loc=[1, 2, 3]`` for 4 blocks) are
    set, and :func:`convert_official_state_dict` imports the selectors.

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
        selectors, their keys mix the two layouts or are those of the release's unused
        ``PredictorLG``, there are more selectors than blocks, ``token_blocks`` has not one
        entry per selector, or the values do not form a valid config.
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


def _short_list(keys: list, limit: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# --------------------------------------------------------------------------------------------
# loading


