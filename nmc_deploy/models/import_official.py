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

SparseSpikformer (section 2) is the same backbone plus P token selectors, each the release's
``Predictor`` (``Linear(D, D/2) -> GELU -> Linear(D/2, 2) -> LogSoftmax``), stored as
``predictor.<p>.linear.{0,2}.*`` (the release's layout) or ``score_predictor.<p>.linear.{0,2}.*``
(an older layout, still read). By default they are ignored and the imported model is the
dense backbone. With ``token_keep=r`` they are imported as our
:class:`~nmc_deploy.models.spikformer.TokenPredictor` modules (``<prefix>.<p>.linear.0`` ->
``token_predictors.<p>.fc1``, ``.linear.2`` -> ``.fc2``), placed before the blocks of the
release's ``pruning_loc`` (the last P of the L blocks, or ``token_blocks``); selector p keeps
``floor(N r**p)`` tokens in eval mode (:meth:`Spikformer.forward_blocks
<nmc_deploy.models.spikformer.Spikformer.forward_blocks>`). The release's other selector,
``PredictorLG`` (defined, never instantiated), is refused by key name.

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
from .official_config import (DEFAULT_NUM_HEADS, SELECTOR_LAYOUTS, VARIANTS,  # noqa: F401
                              _ATTN_SCALE, _SELECTOR_KEY, _check_selector_form,
                              _check_token_args, _infer, _no_selectors_text, _official_pools,
                              _selector_layout, _selector_range, _sps_name,
                              detect_official_variant, infer_official_config,
                              unwrap_official_state_dict)

__all__ = [
    "VARIANTS", "DEFAULT_NUM_HEADS", "SELECTOR_LAYOUTS", "ImportReport",
    "unwrap_official_state_dict", "detect_official_variant", "infer_official_config",
    "convert_official_state_dict", "load_official_checkpoint",
]

_BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# timm's CheckpointSaver stores the training arguments as an argparse.Namespace: plain data,
# allowed on top of torch's weights-only set so official *.pth.tar files load as they are.
_SAFE_GLOBALS = [argparse.Namespace]

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


def _official_key(our_key: str, variant: str, selector_prefix: str) -> str:
    """Official key that supplies ``our_key`` (of a :class:`Spikformer` state_dict).

    ``selector_prefix`` is the file's token-selector layout (:data:`SELECTOR_LAYOUTS`).
    """
    parts = our_key.split(".")
    if parts[0] == "token_predictors":  # token_predictors.<p>.fc1.weight
        return ".".join([selector_prefix, parts[1], "linear", _SELECTOR_LAYERS[parts[2]]]
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
            "repeats one image T times, so classify frames with "
            "model.forward_tokens(model.patch_embed(frames))")
    if ignored_selectors:
        notes.append(
            "SparseSpikformer token selectors ignored: the imported model keeps all tokens, "
            "while the official inference drops tokens (top-k per selector); logits differ "
            "from the token-pruned model. Pass token_keep=r (the release's CIFAR base_rate "
            "is 0.9) to import them")
    return notes


def _selector_notes(cfg: SpikformerConfig, prefix: str) -> list[str]:
    if not cfg.token_blocks:
        return []
    kept = ", ".join(str(cfg.kept_tokens(p)) for p in range(1, len(cfg.token_blocks) + 1))
    layout = "the release's layout" if prefix == SELECTOR_LAYOUTS[0] else "older layout"
    notes = [
        f"token selectors '{prefix}.<p>' ({layout}) imported before blocks "
        f"{list(cfg.token_blocks)}: in eval mode selector p keeps floor(N r**p) of the "
        f"N={cfg.num_tokens} tokens ({kept}; "
        f"r={cfg.token_keep}), one schedule for training and inference like the release's "
        f"CIFAR code; its DVS inference used other ratios than its training "
        f"(docs/checkpoint-import.md)",
        "tokens are ranked by logit_keep - logit_drop, the order of the release's LogSoftmax "
        "keep log-probability; ties go to the lower token index (unspecified in the release, "
        "whose float32 log-probability also ties at 0 once logit_keep - logit_drop > ~17)",
    ]
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
    * ``predictor.<p>.linear.0.*`` (the release's layout; the older
      ``score_predictor.<p>.linear.0.*`` alike) -> ``token_predictors.<p>.fc1.*`` and
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
        official key and both shapes), if the selector keys mix the two layouts, or if
        ``cfg.token_blocks`` is not empty and does not have one entry per selector of the
        checkpoint or the selectors are the release's ``PredictorLG``.
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
    (prefix, selectors), n_cfg = _selector_layout(sd, where), len(cfg.token_blocks)
    if n_cfg and selectors != n_cfg:
        have = (f"{selectors} token selectors ({_selector_range(prefix, selectors)})"
                if selectors else f"{_no_selectors_text()} (no token selectors)")
        raise CheckpointError(
            f"{where}: cfg.token_blocks {list(cfg.token_blocks)} asks for {n_cfg} token "
            f"selectors but the checkpoint has {have}; give one block per selector, or no "
            f"token_blocks for the dense import")
    if n_cfg:
        _check_selector_form(sd, where)
    with torch.device("meta"):  # shapes only, no memory and no init cost
        expected = Spikformer(cfg).state_dict()
    wanted = {_official_key(ours, variant, prefix): ours for ours in expected}

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
    notes += _variant_notes(variant, any(_SELECTOR_KEY.match(k) for k, _ in ignored))
    notes += _selector_notes(cfg, prefix)
    report = ImportReport(variant=variant, mapped=tuple(mapped), reshaped=tuple(reshaped),
                          added=tuple(added), ignored=tuple(ignored), notes=tuple(notes))
    return out, report


def _more(keys: list) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


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
