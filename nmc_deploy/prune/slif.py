"""sLIF compensation: swap LIF neurons for SLIFs with learnable per-channel threshold and leak.

The neuron itself is :class:`nmc_deploy.models.lif.SLIF` (re-exported here; the model
package must build it when a checkpoint's ``SpikformerConfig.neuron`` asks for it). This is
the proposal of docs/spikformer-and-pruning.md section 3.3: the paper's sLIF equations are
not available, so "intrinsic plasticity" is a learnable threshold and leak per channel,
initialised to the dense model's values so the converted model starts identical to it.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from torch import nn

from ..errors import NmcDeployError
from ..models.lif import SLIF, MultiStepLIF
from ..models.spikformer import Spikformer

__all__ = ["SLIF", "convert_to_slif", "slif_param_groups", "slif_parameters", "has_slif"]


def _neuron_slots(model: Spikformer, blocks_only: bool) -> list[tuple[nn.Module, str, int, int]]:
    """``(parent, attribute, channels, channel_dim)`` of every neuron to convert."""
    cfg = model.config
    d, hidden = cfg.embed_dim, cfg.embed_dim * cfg.mlp_ratio
    slots = []
    if not blocks_only:
        sps = model.patch_embed
        for i, c in enumerate(cfg.sps_channels):
            slots.append((sps.lifs, str(i), c, 2))
        slots.append((sps, "rpe_lif", d, 2))
    for block in model.blocks:
        for key in ("q", "k", "v", "attn", "proj"):
            slots.append((block.attn, f"{key}_lif", d, -1))
        slots.append((block.mlp, "fc1_lif", hidden, -1))
        slots.append((block.mlp, "fc2_lif", d, -1))
    return slots


def convert_to_slif(model: Spikformer, *, blocks_only: bool = True,
                    inplace: bool = False) -> Spikformer:
    """Replace LIF neurons by SLIFs that start with the same tau and threshold.

    Converted: every block's q/k/v/attn/proj/fc1/fc2 neuron, and with
    ``blocks_only=False`` also the SPS neurons (``lifs.i`` with ``channel_dim=2``,
    ``rpe_lif``). Neurons that are SLIFs already are kept. The config's ``neuron`` field
    becomes ``"slif_blocks"`` or ``"slif_all"`` so that checkpoints reload. For
    ``tau = 2`` the converted model computes exactly (bit for bit) what the original does.

    Parameters
    ----------
    model : Spikformer
    blocks_only : bool
        Leave the SPS neurons as they are.
    inplace : bool
        Modify ``model`` itself instead of a deep copy.

    Returns
    -------
    Spikformer
        The converted model (``model`` itself when ``inplace``), in ``model``'s mode.
    """
    if not isinstance(model, Spikformer):
        raise NmcDeployError(
            f"convert_to_slif: expected a Spikformer, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    cfg = model.config
    kind = "slif_blocks" if blocks_only and cfg.neuron != "slif_all" else "slif_all"
    for parent, name, channels, channel_dim in _neuron_slots(model, blocks_only):
        lif = getattr(parent, name) if not isinstance(parent, nn.ModuleList) \
            else parent[int(name)]
        if isinstance(lif, SLIF):
            continue
        if not isinstance(lif, MultiStepLIF):
            raise NmcDeployError(
                f"convert_to_slif: cannot convert a neuron of type '{type(lif).__name__}'")
        slif = SLIF.from_lif(lif, channels, channel_dim)
        slif.train(lif.training)
        if isinstance(parent, nn.ModuleList):
            parent[int(name)] = slif
        else:
            setattr(parent, name, slif)
    model.config = dataclasses.replace(cfg, neuron=kind)
    return model


def slif_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``v_threshold`` and ``leak_logit`` parameters of every SLIF, in model order."""
    return [p for m in model.modules() if isinstance(m, SLIF) for p in m.parameters()]


def slif_param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0
                      ) -> list[dict[str, Any]]:
    """AdamW parameter groups that give the SLIF parameters a group of their own.

    Returns ``[{"params": <all other parameters>}, {"params": <SLIF parameters>,
    "lr": lr, "weight_decay": weight_decay}]``; the first group takes the optimiser's
    defaults (for :func:`~nmc_deploy.models.train.fit`: its ``lr`` and ``weight_decay``),
    so thresholds and leaks are not decayed towards 0 by default. Pass the result as
    ``fit(..., param_groups=...)``. Without SLIFs, only the first group is returned.
    """
    if not lr > 0:
        raise NmcDeployError(f"slif_param_groups: lr ({lr!r}) must be positive")
    special = slif_parameters(model)
    ids = {id(p) for p in special}
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if id(p) not in ids]}]
    if special:
        groups.append({"params": special, "lr": float(lr), "weight_decay": float(weight_decay)})
    return groups


def has_slif(model: nn.Module) -> bool:
    """True if any neuron of ``model`` is an SLIF."""
    return any(isinstance(m, SLIF) for m in model.modules())
