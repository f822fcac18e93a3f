"""What the pruning drivers share: the result type, fine-tuning and evaluation helpers."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data import ImageDataset
from ..models.spikformer import Spikformer
from ..models.train import NUM_THREADS, evaluate_model, fit
from .slif import has_slif, slif_param_groups

__all__ = ["PruneResult", "FINETUNE_LR", "accuracy_on_test", "finetune"]

FINETUNE_LR = 1e-3  # default peak AdamW learning rate when fine-tuning a trained model


@dataclass
class PruneResult:
    """A pruned model with its masks and the per-round (or per-step) log."""

    model: Spikformer  # the pruned (and fine-tuned) model, eval mode
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> keep mask; {} if none
    log: list[dict] = field(default_factory=list)  # one plain-data record per round or step


def accuracy_on_test(model: Spikformer, dataset: ImageDataset) -> float:
    """Float accuracy (0..1) of ``model`` on the whole test split of ``dataset``.

    Runs with ``NUM_THREADS`` torch threads, as training does (predictable time on a
    shared machine), and restores the previous setting.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS)
    try:
        return evaluate_model(model, dataset.x_test, dataset.y_test, dataset.levels)
    finally:
        torch.set_num_threads(previous)


def finetune(model: Spikformer, dataset: ImageDataset, *, epochs: int, lr: float, seed: int,
             batch_size: int, masks: dict[str, torch.Tensor] | None, progress: bool,
             slif_lr: float | None = None, log=None, on_epoch_end=None,
             batch_loss=None) -> list[dict]:
    """:func:`~nmc_deploy.models.train.fit` with SLIF parameters in their own group.

    When the model has SLIF neurons their thresholds and leaks get a group without weight
    decay and learning rate ``slif_lr`` (default ``lr``).
    """
    groups = None
    if has_slif(model):
        groups = slif_param_groups(model, lr if slif_lr is None else slif_lr)
    return fit(model, dataset, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size,
               masks=masks, param_groups=groups, progress=progress, log=log,
               on_epoch_end=on_epoch_end, batch_loss=batch_loss)
