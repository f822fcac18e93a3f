"""One pruning run on a loaded model: the method, sLIF, token selection and a summary."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from ..data import ImageDataset
from ..errors import NmcDeployError
from ..models.spikformer import Spikformer
from .common import PruneResult, accuracy_on_test
from .masks import sparsity_report
from .request import PruneRequest

__all__ = ["check_prunable", "run_prune"]


def check_prunable(model, request: PruneRequest, where: str) -> None:
    """Refuse models the request cannot prune (one line naming ``where``)."""
    if not hasattr(model, "blocks"):
        raise NmcDeployError(f"{where}: not a Spikformer checkpoint; prune works on Spikformer "
                             "models")
    if request.token_keep is not None:
        if model.config.token_blocks:
            raise NmcDeployError(f"{where}: the model already has token selectors; start from "
                                 "a model without them")
        dataclasses.replace(model.config, token_keep=request.token_keep,  # checks
                            token_blocks=request.selector_blocks(model.config.depth))


def _counts(model: Spikformer, data: ImageDataset) -> dict:
    return {"accuracy_float": accuracy_on_test(model, data),
            "params": int(sum(p.numel() for p in model.parameters())),
            "nonzeros": int(sum(int((p != 0).sum()) for p in model.parameters()))}


def _prune(model: Spikformer, data: ImageDataset, r: PruneRequest, state_dir: Path,
           progress: bool) -> PruneResult:
    if r.method == "lth":
        from .lth import run_lth

        return run_lth(model, data, epochs_per_round=r.epochs, rounds=r.rounds,
                       target_sparsity=None if r.rounds else r.sparsity, seed=r.seed,
                       state_dir=state_dir, progress=progress)
    if r.method == "none":
        return PruneResult(model=model)
    if r.method == "l1p":
        from .l1p import run_l1p

        return run_l1p(model, data, sparsity=r.sparsity, finetune_epochs=r.epochs, seed=r.seed,
                       progress=progress)
    from .dsp import run_dsp

    return run_dsp(model, data, energy=None if r.rank_budget else r.energy,
                   rank_budget=r.rank_budget, finetune_epochs=r.epochs, seed=r.seed,
                   progress=progress)


def run_prune(model: Spikformer, data: ImageDataset, request: PruneRequest, *,
              state_dir: Path, progress: bool = True,
              log: Callable[[str], None] | None = None) -> tuple[Spikformer, dict]:
    """Prune ``model`` as ``request`` says; returns the pruned model and a summary.

    The summary holds the request's settings, parameter and nonzero counts and float test
    accuracy before and after, the seconds taken, the per-round log and the sparsity of the
    prunable weights. LTH rounds are resumable through ``state_dir``.
    """
    r = request
    before = _counts(model, data)
    if r.slif:
        from .slif import convert_to_slif

        model = convert_to_slif(model)
    t0 = time.perf_counter()
    result = _prune(model, data, r, state_dir, progress)
    pruned = result.model
    if r.token_keep is not None:
        from .tokens import run_tokens

        blocks = r.selector_blocks(model.config.depth)
        if log is not None:
            log(f"training token selectors (r = {r.token_keep}, blocks {list(blocks)}, "
                f"{r.token_epochs} epochs)")
        tok = run_tokens(pruned, data, keep=r.token_keep, blocks=blocks, epochs=r.token_epochs,
                         seed=r.seed, masks=result.masks or None, progress=progress)
        result.log.extend(tok.log)
        pruned = tok.model
    after = _counts(pruned, data)
    rep = sparsity_report(pruned, result.masks or None)
    summary = {"method": r.method, "slif": r.slif, "sparsity": r.sparsity,
               "rank_budget": r.rank_budget, "energy": r.energy, "token_keep": r.token_keep,
               "token_blocks": list(pruned.config.token_blocks), "before": before,
               "after": after, "seconds": round(time.perf_counter() - t0, 1), "log": result.log,
               "prunable_sparsity": getattr(rep, "sparsity", None)}
    return pruned, summary
