"""SparseSpikformer's token selector: training with Gumbel masking and distillation.

A :class:`~nmc_deploy.models.spikformer.TokenPredictor` before each block of
``token_blocks`` scores every token from the time-averaged block input; the ``p``-th
selector keeps ``k_p = floor(N r**p)`` tokens (one schedule, rho_p = r**p, for the training
target and for inference). Training (docs/spikformer-and-pruning.md section 2.2)::

    keep_p = hard_gumbel_softmax(log p_p)[keep] * keep_{p-1}      (straight-through)
    L = CE_smooth(z, y) + RATIO_WEIGHT * mean_p mean_b (mean_n keep_p[b, n] - rho_p)^2
        + DISTILL_WEIGHT * KL(softmax(z_teacher) || softmax(z))

with the frozen dense teacher in eval mode (its LIF state starts from zero at every
forward, i.e. it is reset every batch: the released code's teacher is neither). Departures
from the release, recorded in docs/pruning.md: the pooling before the head is weighted by
the keep policy during training (so the training forward of kept tokens equals inference's
hard removal), and weight pruning (LTH / L1P masks) is done before token training rather
than interleaved with it.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data import ImageDataset
from ..errors import NmcDeployError
from ..models.spikformer import Spikformer
from ..models.train import LABEL_SMOOTHING
from .common import FINETUNE_LR, PruneResult, accuracy_on_test, finetune

__all__ = ["RATIO_WEIGHT", "DISTILL_WEIGHT", "add_token_selectors", "token_loss", "run_tokens"]

RATIO_WEIGHT = 2.0  # as the release (ratio_weight 2.0, averaged over the selectors)
DISTILL_WEIGHT = 0.5  # as the release (KL distillation weight)


def add_token_selectors(model: Spikformer, keep: float,
                        blocks: Sequence[int] | None = None) -> Spikformer:
    """A copy of ``model`` with token selectors before ``blocks`` (default: every block).

    The backbone's weights are copied unchanged; the selectors are freshly initialised
    (truncated normal, std 0.02, as the release). ``model`` is not modified.
    """
    cfg = model.config
    blocks = tuple(range(cfg.depth)) if blocks is None else tuple(int(b) for b in blocks)
    new_cfg = dataclasses.replace(cfg, token_keep=float(keep), token_blocks=blocks)
    out = Spikformer(new_cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("token_predictors.")}
    missing, unexpected = out.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("token_predictors.") for k in missing):
        raise NmcDeployError(f"add_token_selectors: state does not fit ({unexpected or missing})")
    out.eval()
    return out


def token_loss(student: Spikformer, teacher: Spikformer, images: torch.Tensor,
               labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The loss of the module docstring for one batch (``student`` just ran ``images``)."""
    cfg = student.config
    ce = F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)
    masks = student.token_keep_masks
    if len(masks) != len(cfg.token_blocks):
        raise NmcDeployError("token_loss: the student's last forward recorded no keep masks; "
                             "train it in 'gumbel' or 'mask' mode")
    ratio = sum(((m.mean(1) - cfg.token_keep ** (p + 1)) ** 2).mean()
                for p, m in enumerate(masks)) / len(masks)
    with torch.no_grad():
        teacher.eval()
        z_t = teacher(images)
    kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(z_t, -1), log_target=True,
                  reduction="batchmean")
    return ce + RATIO_WEIGHT * ratio + DISTILL_WEIGHT * kl


def run_tokens(model: Spikformer, dataset: ImageDataset, *, keep: float,
               blocks: Sequence[int] | None = None, epochs: int = 10,
               lr: float = FINETUNE_LR, seed: int = 0, batch_size: int = 64,
               masks: dict[str, torch.Tensor] | None = None,
               teacher: Spikformer | None = None, progress: bool = False) -> PruneResult:
    """Add token selectors to ``model`` and train the whole network with :func:`token_loss`.

    Parameters
    ----------
    model : Spikformer
        Trained (possibly weight-pruned) model; copied, not modified. Also the default
        teacher (a frozen copy).
    keep : float
        r in (0, 1): the p-th selector keeps ``floor(N r**p)`` tokens.
    blocks : sequence of int, optional
        Blocks preceded by a selector (default every block).
    masks : dict, optional
        Weight masks of an earlier pruning (LTH/L1P): pruned weights stay exactly 0.
    """
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep < 1.0:
        raise NmcDeployError(f"run_tokens: keep ({keep!r}) must be in (0, 1)")
    if model.config.token_blocks:
        raise NmcDeployError("run_tokens: the model already has token selectors; start from "
                             "a model without them")
    t0 = time.perf_counter()
    student = add_token_selectors(model, keep, blocks)
    teacher = copy.deepcopy(model if teacher is None else teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    log: list[dict] = []
    history = finetune(student, dataset, epochs=epochs, lr=lr, seed=seed,
                       batch_size=batch_size, masks=masks, progress=progress,
                       batch_loss=lambda m, x, y, z: token_loss(m, teacher, x, y, z))
    student.eval()
    cfg = student.config
    log.append({"keep": keep, "blocks": list(cfg.token_blocks),
                "kept_tokens": [cfg.kept_tokens(p + 1) for p in range(len(cfg.token_blocks))],
                "epochs": epochs, "final_train_loss": history[-1]["loss"] if history else None,
                "accuracy_float_test": accuracy_on_test(student, dataset),
                "seconds": time.perf_counter() - t0})
    return PruneResult(model=student, masks=dict(masks or {}), log=log)
