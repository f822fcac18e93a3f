"""L1P: magnitude (L1) pruning of the block matrices, one-shot or gradual, then fine-tuning.

This is the proposal of docs/spikformer-and-pruning.md section 3.3 (the paper's own L1P
definition is unavailable): prune the q/k/v/proj/fc1/fc2 weights with the smallest
``|w|`` to a target sparsity, keep a binary mask, fine-tune with the mask enforced.

Gradual pruning follows the cubic schedule of Zhu & Gupta (2017) over ``k`` steps::

    s_j = s_final * (1 - (1 - j / k)^3),   j = 1..k

with ``epochs_per_step`` masked fine-tuning epochs after each step, then
``finetune_epochs`` more.
"""
from __future__ import annotations

import copy
import time
from typing import Sequence

from ..data import ImageDataset
from ..errors import NmcDeployError
from ..models.spikformer import Spikformer
from .common import FINETUNE_LR, PruneResult, accuracy_on_test, finetune
from .masks import SCOPES, apply_masks, full_masks, magnitude_masks, mask_density

__all__ = ["cubic_sparsity_schedule", "run_l1p", "prune_one_shot"]


def cubic_sparsity_schedule(final_sparsity: float, steps: int) -> list[float]:
    """Target sparsity after each of ``steps`` pruning steps (the last is ``final``)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise NmcDeployError(f"cubic_sparsity_schedule: steps ({steps!r}) must be >= 1")
    return [final_sparsity * (1.0 - (1.0 - j / steps) ** 3) for j in range(1, steps + 1)]


def run_l1p(model: Spikformer, dataset: ImageDataset, *, sparsity: float = 0.9,
            scope: str = "global", tensors: str | Sequence[str] = "blocks_only",
            schedule: str = "one_shot", steps: int = 4, epochs_per_step: int = 1,
            finetune_epochs: int = 5, lr: float = FINETUNE_LR, batch_size: int = 64,
            seed: int = 0, progress: bool = False) -> PruneResult:
    """Prune a trained model's block matrices by magnitude and fine-tune it with masks.

    The model is copied. With SLIF neurons (see
    :func:`~nmc_deploy.prune.slif.convert_to_slif`), their thresholds and leaks are
    fine-tuned too, without weight decay.

    Parameters
    ----------
    model : Spikformer
        A trained model.
    dataset : ImageDataset
    sparsity : float
        Final fraction of the selected weights that are zero, in ``[0, 1)``.
    scope : {"global", "layer"}
        One threshold across all selected tensors, or the same sparsity in each.
    tensors : {"blocks_only", "all"} or sequence of str
        Which weights (see :mod:`nmc_deploy.prune.masks`).
    schedule : {"one_shot", "gradual"}
        Prune to ``sparsity`` at once, or along :func:`cubic_sparsity_schedule` over
        ``steps`` steps with ``epochs_per_step`` fine-tuning epochs after each.
    finetune_epochs : int
        Masked fine-tuning epochs at the end (0 for none).
    lr, batch_size, seed, progress
        Fine-tuning settings (:func:`~nmc_deploy.models.train.fit`); step ``j`` uses
        ``seed + j``.

    Returns
    -------
    PruneResult
        ``log`` has one record per pruning step (``step``, ``sparsity``,
        ``accuracy_pruned`` right after pruning, ``accuracy_float_test`` after that
        step's fine-tuning, ``seconds``) and, if ``finetune_epochs``, a final record with
        ``step = "finetune"``.
    """
    if not 0.0 <= sparsity < 1.0:
        raise NmcDeployError(f"run_l1p: sparsity ({sparsity}) must be in [0, 1)")
    if scope not in SCOPES:
        raise NmcDeployError(f"run_l1p: scope ({scope!r}) must be one of {', '.join(SCOPES)}")
    if schedule == "one_shot":
        targets, step_epochs = [sparsity], 0
    elif schedule == "gradual":
        targets, step_epochs = cubic_sparsity_schedule(sparsity, steps), epochs_per_step
    else:
        raise NmcDeployError(
            f"run_l1p: schedule ({schedule!r}) must be 'one_shot' or 'gradual'")
    pruned = copy.deepcopy(model)
    masks = full_masks(pruned, tensors)
    log: list[dict] = []
    for j, target in enumerate(targets, start=1):
        start = time.perf_counter()
        density = mask_density(masks)
        fraction = 0.0 if density == 0 else max(0.0, 1.0 - (1.0 - target) / density)
        masks = magnitude_masks(pruned, fraction, scope, old_masks=masks)
        apply_masks(pruned, masks)
        record = {"step": j, "sparsity": 1.0 - mask_density(masks),
                  "accuracy_pruned": accuracy_on_test(pruned, dataset)}
        if step_epochs > 0:
            finetune(pruned, dataset, epochs=step_epochs, lr=lr, seed=seed + j,
                     batch_size=batch_size, masks=masks, progress=progress)
        record["accuracy_float_test"] = accuracy_on_test(pruned, dataset)
        record["seconds"] = time.perf_counter() - start
        log.append(record)
    if finetune_epochs > 0:
        start = time.perf_counter()
        finetune(pruned, dataset, epochs=finetune_epochs, lr=lr, seed=seed,
                 batch_size=batch_size, masks=masks, progress=progress)
        log.append({"step": "finetune", "sparsity": 1.0 - mask_density(masks),
                    "accuracy_float_test": accuracy_on_test(pruned, dataset),
                    "seconds": time.perf_counter() - start})
    return PruneResult(model=pruned, masks=masks, log=log)


def prune_one_shot(model: Spikformer, sparsity: float = 0.9, *, scope: str = "layer",
                   tensors: str | Sequence[str] = "blocks_only") -> dict:
    """Zero the ``sparsity`` fraction of smallest-``|w|`` weights of ``model``, in place.

    One L1P magnitude step (:func:`~nmc_deploy.prune.masks.magnitude_masks`, then
    :func:`~nmc_deploy.prune.masks.apply_masks`) without fine-tuning: unstructured sparsity
    for deployment studies, e.g. the ``prune`` hook of
    :func:`nmc_deploy.models.synthetic.synthetic_official_state_dict`
    (``functools.partial(prune_one_shot, sparsity=0.9)``). With ``scope="layer"`` (default)
    every selected matrix gets the same sparsity, ``floor(sparsity * size)`` zeros.

    Returns
    -------
    dict of str to bool tensor
        The masks (True = kept).
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) \
            or not 0.0 <= sparsity < 1.0:
        raise NmcDeployError(f"prune_one_shot: sparsity ({sparsity!r}) must be in [0, 1)")
    masks = magnitude_masks(model, float(sparsity), scope, tensors)
    apply_masks(model, masks)
    return masks
