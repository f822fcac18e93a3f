"""Unstructured weight masks: which weights are prunable, magnitude pruning, keeping zeros.

A mask set is a ``dict`` from parameter name (as in ``model.named_parameters()``) to a bool
tensor of the parameter's shape, True where the weight is kept. Pruned weights are exact
zeros in the model; :func:`keep_masked` keeps them zero while training (it and
:func:`apply_masks` live in :mod:`nmc_deploy.models.masks`, which training uses; re-exported
here).

Which weights are prunable (``tensors``):

* ``"all"`` (SparseSpikformer, docs/spikformer-and-pruning.md section 2.3): every
  parameter of two or more dimensions whose name ends in ``weight``: SPS convs (incl. the
  first conv and the RPE conv), q/k/v/proj, fc1/fc2 and the head. Not biases, not BN.
* ``"blocks_only"`` (L1P, section 3.3): the q/k/v/proj/fc1/fc2 matrices of the
  transformer blocks (for a factorised :class:`LowRankLinear`, its ``down``/``up``).
* an explicit sequence of parameter names.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import NmcDeployError
from ..models.masks import apply_masks, check_masks, keep_masked

__all__ = [
    "SCOPES", "TENSOR_SELECTIONS", "prunable_parameters", "full_masks", "magnitude_masks",
    "apply_masks", "keep_masked", "SparsityReport", "sparsity_report", "mask_density",
]

SCOPES = ("global", "layer")  # one magnitude threshold across tensors, or one per tensor
TENSOR_SELECTIONS = ("all", "blocks_only")

_BLOCK_WEIGHT_RE = re.compile(
    r"blocks\.\d+\.(attn\.(q|k|v|proj)_linear|mlp\.fc[12]_linear)\.(.+\.)?weight")


def prunable_parameters(model: nn.Module, tensors: str | Sequence[str] = "all"
                        ) -> dict[str, nn.Parameter]:
    """Return the prunable parameters of ``model`` by name, in model order.

    Parameters
    ----------
    model : nn.Module
        Usually a Spikformer.
    tensors : {"all", "blocks_only"} or sequence of str
        The selection (see the module docstring) or explicit parameter names.

    Raises
    ------
    NmcDeployError
        If ``tensors`` is unknown, names a missing parameter, or selects nothing.
    """
    params = dict(model.named_parameters())
    if isinstance(tensors, str):
        if tensors == "all":
            out = {n: p for n, p in params.items() if n.endswith("weight") and p.ndim >= 2}
        elif tensors == "blocks_only":
            out = {n: p for n, p in params.items()
                   if p.ndim >= 2 and _BLOCK_WEIGHT_RE.fullmatch(n)}
        else:
            raise NmcDeployError(
                f"tensors ({tensors!r}) must be one of {', '.join(TENSOR_SELECTIONS)} or a "
                f"list of parameter names")
    else:
        names = list(tensors)
        missing = [n for n in names if n not in params]
        if missing:
            raise NmcDeployError(
                f"tensors: no parameter named {', '.join(repr(n) for n in missing[:3])}; "
                f"see model.named_parameters()")
        out = {n: params[n] for n in params if n in set(names)}
    if not out:
        raise NmcDeployError(f"tensors ({tensors!r}): selects no parameter of the model")
    return out


def full_masks(model: nn.Module, tensors: str | Sequence[str] = "all"
               ) -> dict[str, torch.Tensor]:
    """All-True masks for the prunable parameters (nothing pruned yet)."""
    return {n: torch.ones_like(p, dtype=torch.bool)
            for n, p in prunable_parameters(model, tensors).items()}


def _prune_count(fraction: float, alive: int) -> int:
    # floor, as SparseSpikformer's int(len * percent / 100); the epsilon absorbs float
    # error such as 0.9 * 10 = 8.999999999999998.
    return min(alive, int(math.floor(fraction * alive + 1e-9)))


def _smallest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` smallest entries (ties: lower index first)."""
    return torch.argsort(scores, stable=True)[:count]


@torch.no_grad()
def magnitude_masks(model: nn.Module, fraction_of_remaining: float, scope: str = "global",
                    tensors: str | Sequence[str] = "all",
                    old_masks: dict[str, torch.Tensor] | None = None
                    ) -> dict[str, torch.Tensor]:
    r"""Prune a fraction of the still-alive weights with the smallest ``|w|``.

    With ``scope="global"``, ``floor(fraction * n_alive)`` weights with the smallest
    magnitudes over all selected tensors together are pruned (SparseSpikformer's IMP
    step); with ``scope="layer"`` each tensor loses ``floor(fraction * its n_alive)``.
    Already-pruned weights stay pruned and do not count as alive. Ties are broken by
    position, so the result is deterministic. The model is not modified.

    Parameters
    ----------
    model : nn.Module
        Source of the weights.
    fraction_of_remaining : float
        In ``[0, 1]``.
    scope : {"global", "layer"}
    tensors : {"all", "blocks_only"} or sequence of str
        Which tensors, when ``old_masks`` is None (otherwise the tensors of ``old_masks``).
    old_masks : dict, optional
        The current masks; default nothing pruned.

    Returns
    -------
    dict of str to bool tensor
        New masks (True = kept).
    """
    if not 0.0 <= fraction_of_remaining <= 1.0:
        raise NmcDeployError(
            f"magnitude_masks: fraction_of_remaining ({fraction_of_remaining}) must be in "
            f"[0, 1]")
    if scope not in SCOPES:
        raise NmcDeployError(f"magnitude_masks: scope ({scope!r}) must be one of "
                             f"{', '.join(SCOPES)}")
    params = prunable_parameters(model, tensors if old_masks is None else list(old_masks))
    old = full_masks(model, list(params)) if old_masks is None else old_masks
    check_masks(params, old)
    # Magnitudes with dead weights at +inf so that they are never picked again.
    scores = {n: torch.where(old[n], p.detach().abs(), torch.tensor(math.inf)).flatten()
              for n, p in params.items()}
    new = {n: old[n].clone() for n in params}
    if scope == "global":
        flat = torch.cat(list(scores.values()))
        alive = int(sum(int(m.sum()) for m in old.values()))
        chosen = _smallest(flat, _prune_count(fraction_of_remaining, alive))
        offset = 0
        for n, s in scores.items():
            local = chosen[(chosen >= offset) & (chosen < offset + s.numel())] - offset
            new[n].view(-1)[local] = False
            offset += s.numel()
    else:
        for n, s in scores.items():
            alive = int(old[n].sum())
            new[n].view(-1)[_smallest(s, _prune_count(fraction_of_remaining, alive))] = False
    return new


def mask_density(masks: dict[str, torch.Tensor]) -> float:
    """Fraction of the masked tensors' weights that are kept."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0


@dataclass(frozen=True)
class SparsityReport:
    """Parameter and nonzero counts of a model (numbers only).

    ``tensors`` maps each reported tensor to ``(params, nonzero)``.
    """

    tensors: dict[str, tuple[int, int]]  # name -> (params, nonzero) of the reported tensors
    prunable_params: int  # weights in the reported tensors
    prunable_nonzero: int  # nonzero weights among them
    total_params: int  # every parameter of the model
    total_nonzero: int  # nonzero parameters of the model

    @property
    def sparsity(self) -> float:
        """Fraction of the reported (prunable) weights that are zero."""
        return 1.0 - self.prunable_nonzero / self.prunable_params

    @property
    def total_sparsity(self) -> float:
        """Fraction of all parameters that are zero."""
        return 1.0 - self.total_nonzero / self.total_params

    def to_dict(self) -> dict:
        """Plain-data dict (for JSON and checkpoint meta)."""
        return {"tensors": {n: list(v) for n, v in self.tensors.items()},
                "prunable_params": self.prunable_params,
                "prunable_nonzero": self.prunable_nonzero,
                "total_params": self.total_params, "total_nonzero": self.total_nonzero,
                "sparsity": self.sparsity, "total_sparsity": self.total_sparsity}


@torch.no_grad()
def sparsity_report(model: nn.Module, masks: dict[str, torch.Tensor] | None = None,
                    tensors: str | Sequence[str] = "all") -> SparsityReport:
    """Count parameters and nonzeros per tensor and overall.

    The reported tensors are those of ``masks`` when given, else the ``tensors``
    selection of :func:`prunable_parameters`. Counts are of actual nonzero values, so a
    mask that was not applied shows up as missing sparsity.
    """
    params = dict(model.named_parameters())
    names = list(masks) if masks is not None else list(prunable_parameters(model, tensors))
    per = {n: (params[n].numel(), int(torch.count_nonzero(params[n]))) for n in names}
    return SparsityReport(
        tensors=per,
        prunable_params=sum(v[0] for v in per.values()),
        prunable_nonzero=sum(v[1] for v in per.values()),
        total_params=sum(p.numel() for p in params.values()),
        total_nonzero=sum(int(torch.count_nonzero(p)) for p in params.values()))
