"""DSP: structured low-rank pruning of the block matrices by truncated SVD.

This is the proposal of docs/spikformer-and-pruning.md section 3.3 (the paper's own DSP
definition is unavailable). Each block matrix ``W`` (q/k/v/proj/fc1/fc2, ``out x in``) is
replaced by its rank-``r`` truncated SVD, split evenly between two linears::

    W = U S V^T ~ (U_r S_r^(1/2)) (S_r^(1/2) V_r^T) = up.weight @ down.weight

which has ``r * (in + out)`` instead of ``in * out`` weights. The rank of each matrix comes
from an energy criterion or from a global parameter budget; the ranks are recorded in
``SpikformerConfig.low_rank`` so that checkpoints reload.
"""
from __future__ import annotations

import copy
import dataclasses
import heapq
import time

import numpy as np
import torch

from ..data import ImageDataset
from ..errors import NmcDeployError
from ..models.spikformer import LowRankLinear, Spikformer, block_matrix_paths
from .common import FINETUNE_LR, PruneResult, accuracy_on_test, finetune

__all__ = ["LowRankLinear", "energy_rank", "budget_ranks", "factorize_model",
           "block_parameter_count", "run_dsp"]


def energy_rank(singular_values: np.ndarray, energy: float) -> int:
    r"""Smallest ``r`` with :math:`\sum_{i \le r} s_i^2 \ge \eta \sum_i s_i^2` (at least 1)."""
    s2 = np.asarray(singular_values, np.float64) ** 2
    cum = np.cumsum(s2)
    if cum[-1] == 0.0:
        return 1
    # a relative 1e-12 so that energy = 1 gives full rank despite rounding in cumsum
    r = int(np.searchsorted(cum / cum[-1], energy - 1e-12, side="left")) + 1
    return max(1, min(r, len(s2)))


def budget_ranks(singular_values: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]],
                 budget_params: int) -> dict[str, int]:
    r"""Ranks within a weight budget, allocated greedily by energy gain per weight.

    Every matrix starts at rank 1; then, repeatedly, the matrix whose next singular value
    adds the most *relative* energy per weight, :math:`s_{r+1}^2 / \|W\|_F^2 / (n_{in} +
    n_{out})`, gets one more rank while ``sum r (n_in + n_out) <= budget_params``.
    Relative energy is used because each matrix feeds a BatchNorm, which undoes its scale.

    Raises
    ------
    NmcDeployError
        If the budget does not even allow rank 1 everywhere.
    """
    ranks = {p: 1 for p in shapes}
    used = sum(out + inp for out, inp in shapes.values())
    if used > budget_params:
        raise NmcDeployError(
            f"rank budget: {budget_params} weights is below the {used} that rank 1 in every "
            f"matrix needs; raise rank_budget")
    heap = []
    rel = {}
    for p, s in singular_values.items():
        s2 = np.asarray(s, np.float64) ** 2
        rel[p] = s2 / s2.sum() if s2.sum() > 0 else np.zeros_like(s2)
        if len(s2) > 1:
            heapq.heappush(heap, (-rel[p][1] / sum(shapes[p]), p))
    while heap:
        _, p = heapq.heappop(heap)
        cost = sum(shapes[p])
        if used + cost > budget_params:
            continue  # this matrix cannot grow; cheaper ones may still
        ranks[p] += 1
        used += cost
        if ranks[p] < len(rel[p]):
            heapq.heappush(heap, (-rel[p][ranks[p]] / cost, p))
    return ranks


def _dense_weight(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    with torch.no_grad():
        return module.weight.detach().clone(), (
            None if module.bias is None else module.bias.detach().clone())


def block_parameter_count(model: Spikformer) -> tuple[int, int]:
    """``(weights now, weights if dense)`` of the block matrices (biases excluded)."""
    now = dense = 0
    for path, (out, inp) in block_matrix_paths(model.config).items():
        module = model.get_submodule(path)
        dense += out * inp
        now += module.rank * (out + inp) if isinstance(module, LowRankLinear) else out * inp
    return now, dense


@torch.no_grad()
def factorize_model(model: Spikformer, *, energy: float | None = None,
                    rank_budget: float | None = None, ranks: dict[str, int] | None = None,
                    paths: list[str] | None = None, inplace: bool = False) -> Spikformer:
    """Replace block matrices by their truncated SVD (:class:`LowRankLinear`).

    Give exactly one of ``energy``, ``rank_budget`` or ``ranks``.

    Parameters
    ----------
    model : Spikformer
        Dense or already factorised (a LowRankLinear is re-factorised from
        ``up.weight @ down.weight``).
    energy : float, optional
        In ``(0, 1]``: per matrix, the smallest rank keeping this fraction of
        :math:`\\sum s_i^2` (``1.0`` is full rank, reproducing the dense model up to
        float rounding).
    rank_budget : float, optional
        In ``(0, 1]``: the factorised matrices together may hold this fraction of the
        dense block weights; ranks from :func:`budget_ranks`.
    ranks : dict of str to int, optional
        Explicit ranks by module path (see
        :func:`~nmc_deploy.models.spikformer.block_matrix_paths`).
    paths : list of str, optional
        Which block matrices (default: all of them; with ``ranks``: its keys).
    inplace : bool
        Modify ``model`` instead of a deep copy.

    Returns
    -------
    Spikformer
        The factorised model; ``model.config.low_rank`` lists every factorised path and
        its rank. BN statistics, neurons and all other weights are unchanged.
    """
    if sum(x is not None for x in (energy, rank_budget, ranks)) != 1:
        raise NmcDeployError(
            "factorize_model: give exactly one of energy, rank_budget or ranks")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise NmcDeployError(f"factorize_model: energy ({energy}) must be in (0, 1]")
    if rank_budget is not None and not 0.0 < rank_budget <= 1.0:
        raise NmcDeployError(f"factorize_model: rank_budget ({rank_budget}) must be in (0, 1]")
    shapes_all = block_matrix_paths(model.config)
    if paths is None:
        paths = list(ranks) if ranks is not None else list(shapes_all)
    unknown = [p for p in paths if p not in shapes_all]
    if unknown:
        raise NmcDeployError(
            f"factorize_model: '{unknown[0]}' is not a block matrix; choose from "
            f"{', '.join(shapes_all)}")
    if not inplace:
        model = copy.deepcopy(model)

    svds = {}
    for path in paths:
        w, _ = _dense_weight(model.get_submodule(path))
        u, s, vh = np.linalg.svd(w.double().numpy(), full_matrices=False)
        svds[path] = (u, s, vh)
    if energy is not None:
        chosen = {p: energy_rank(svds[p][1], energy) for p in paths}
    elif rank_budget is not None:
        shapes = {p: shapes_all[p] for p in paths}
        budget = int(rank_budget * sum(o * i for o, i in shapes.values()))
        chosen = budget_ranks({p: svds[p][1] for p in paths}, shapes, budget)
    else:
        chosen = dict(ranks)

    for path in paths:
        out_f, in_f = shapes_all[path]
        rank = chosen[path]
        if isinstance(rank, bool) or not isinstance(rank, int) \
                or not 1 <= rank <= min(out_f, in_f):
            raise NmcDeployError(
                f"factorize_model: rank of '{path}' ({rank!r}) must be in 1..{min(out_f, in_f)}")
        old = model.get_submodule(path)
        _, bias = _dense_weight(old)
        u, s, vh = svds[path]
        root = np.sqrt(s[:rank])
        new = LowRankLinear(in_f, out_f, rank)
        new.down.weight.copy_(torch.from_numpy(root[:, None] * vh[:rank]).float())
        new.up.weight.copy_(torch.from_numpy(u[:, :rank] * root[None, :]).float())
        if bias is not None:
            new.up.bias.copy_(bias)
        else:
            new.up.bias.zero_()
        new.train(old.training)
        parent_path, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent_path), name, new)

    merged = dict(model.config.low_rank)
    merged.update({p: int(chosen[p]) for p in paths})
    low_rank = tuple((p, merged[p]) for p in shapes_all if p in merged)
    model.config = dataclasses.replace(model.config, low_rank=low_rank)
    return model


def run_dsp(model: Spikformer, dataset: ImageDataset, *, energy: float | None = None,
            rank_budget: float | None = None, finetune_epochs: int = 5,
            lr: float = FINETUNE_LR, batch_size: int = 64, seed: int = 0,
            progress: bool = False) -> PruneResult:
    """Factorise the block matrices of a trained model, then fine-tune it.

    The model is copied. With SLIF neurons (see :func:`~nmc_deploy.prune.slif.convert_to_slif`)
    their parameters are fine-tuned too, without weight decay.

    Returns
    -------
    PruneResult
        ``masks`` is empty; ``log`` holds two records, ``stage`` "factorized" (before
        fine-tuning) and "finetuned", each with ``block_params``, ``block_params_dense``,
        ``ranks``, ``accuracy_float_test`` and ``seconds``.
    """
    start = time.perf_counter()
    pruned = factorize_model(model, energy=energy, rank_budget=rank_budget)
    now, dense = block_parameter_count(pruned)
    ranks = {p: r for p, r in pruned.config.low_rank}
    log = [{"stage": "factorized", "block_params": now, "block_params_dense": dense,
            "ranks": ranks, "accuracy_float_test": accuracy_on_test(pruned, dataset),
            "seconds": time.perf_counter() - start}]
    start = time.perf_counter()
    if finetune_epochs > 0:
        finetune(pruned, dataset, epochs=finetune_epochs, lr=lr, seed=seed,
                 batch_size=batch_size, masks=None, progress=progress)
    log.append({"stage": "finetuned", "block_params": now, "block_params_dense": dense,
                "ranks": ranks, "accuracy_float_test": accuracy_on_test(pruned, dataset),
                "seconds": time.perf_counter() - start})
    return PruneResult(model=pruned, masks={}, log=log)
