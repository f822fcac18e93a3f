"""Pruning studies with statistical power: arms run on replicates of repeated k-fold.

A *replicate* is one ``(repeat, fold)`` of repeated stratified k-fold over the pooled data
set (:mod:`nmc_deploy.data.splits`), with its own training seed. On a replicate the dense
model is trained from scratch, then every :class:`Arm` (a pruning method with its
settings, optionally sLIF compensation, optionally following another arm) is run from it
and evaluated on the replicate's test fold. All arms of a replicate share its dense model,
split and seed, so their accuracies are paired; :mod:`nmc_deploy.prune.stats` turns the
per-replicate values into intervals and paired tests.

Everything is seeded: the same replicate, arms, configuration and thread count give the
same rows (the determinism is tested). Deployment figures (fixed-point accuracy, synaptic
operations, energy, cores) need the compile and simulate stages, which this package may
not import: the caller passes ``evaluate(model, dataset, deploy) -> dict`` and its
results are merged into each row.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from ..data import ImageDataset
from ..data.splits import fold_dataset
from ..errors import NmcDeployError
from ..models.spikformer import Spikformer, SpikformerConfig
from ..models.train import fit
from .common import FINETUNE_LR, PruneResult, accuracy_on_test, finetune
from .masks import apply_masks, magnitude_masks, prunable_parameters
from .slif import convert_to_slif

__all__ = ["Arm", "Replicate", "ENDS", "arm_seed", "arms_from_dicts", "replicates",
           "run_replicate", "state_digest"]

ARM_METHODS = ("dense", "l1p", "dsp", "lth", "tokens")
SLIF_KINDS = ("none", "blocks", "all")
# The first conv and the head: left dense by "all_but_ends" (pruning them with the rest costs
# most of the accuracy on the digits model: docs/results-pruning.md).
ENDS = ("patch_embed.convs.0.weight", "head.weight")


@dataclass(frozen=True)
class Arm:
    """One row of a study: how a model is derived from the replicate's dense model.

    ``method``: "dense" (the dense model itself), "l1p" (one-shot global magnitude pruning
    of ``tensors`` to ``sparsity``, then ``epochs`` masked fine-tuning epochs), "dsp"
    (truncated-SVD factorisation of the block matrices to ``rank_budget``, then ``epochs``
    epochs), "lth" (iterative magnitude pruning with late rewinding to the dense run's
    weights after ``rewind_epoch`` epochs, ``prune_fraction`` of the remaining weights per
    round, ``epochs`` epochs per round, until ``sparsity``) or "tokens" (token selectors,
    ``token_keep``, ``epochs`` epochs, distilled from the arm it starts from).
    ``slif``: convert neurons to sLIF first ("blocks": the blocks' neurons; "all": also the
    SPS neurons), their thresholds and leaks trained with learning rate ``slif_lr``.
    ``after``: the name of an earlier arm to start from instead of the dense model (its
    masks are kept). ``deploy``: how low-rank factors deploy ("fused" or "relay"); each
    entry gives one evaluated row.
    """

    name: str
    method: str
    sparsity: float | None = None
    tensors: str = "blocks_only"  # l1p, lth: "blocks_only", "all" or "all_but_ends"
    rank_budget: float | None = None  # dsp
    epochs: int = 5
    lr: float = FINETUNE_LR
    slif: str = "none"
    slif_lr: float | None = None
    prune_fraction: float = 0.25  # lth
    rewind_epoch: int = 3  # lth
    lth_lr: float | None = None  # lth (None: run_lth's default for an early rewind point)
    token_keep: float | None = None  # tokens
    after: str | None = None
    deploy: tuple[str, ...] = ("fused",)

    def __post_init__(self):
        if self.method not in ARM_METHODS:
            raise NmcDeployError(f"arm '{self.name}': method ({self.method!r}) must be one "
                                 f"of {', '.join(ARM_METHODS)}")
        if self.slif not in SLIF_KINDS:
            raise NmcDeployError(f"arm '{self.name}': slif ({self.slif!r}) must be one of "
                                 f"{', '.join(SLIF_KINDS)}")
        if self.method in ("l1p", "lth") and self.sparsity is None:
            raise NmcDeployError(f"arm '{self.name}': {self.method} needs a sparsity")
        if self.method == "dsp" and self.rank_budget is None:
            raise NmcDeployError(f"arm '{self.name}': dsp needs a rank_budget")
        if self.method == "lth" and self.slif != "none":
            raise NmcDeployError(f"arm '{self.name}': lth rewinds to the dense run's weights, "
                                 "which have no sLIF parameters; use slif 'none'")
        if self.method == "tokens" and self.token_keep is None:
            raise NmcDeployError(f"arm '{self.name}': tokens needs token_keep")

    def settings(self) -> dict:
        """The arm's fields as plain data (recorded with every row)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Replicate:
    """Replicate ``(repeat, fold)`` of repeated stratified ``k``-fold.

    The folds of repeat ``r`` are dealt with seed ``split_seed + r``; training uses seed
    ``seed = seed0 + r * k + fold`` (a different seed for every replicate).
    """

    repeat: int
    fold: int
    k: int
    seed: int
    split_seed: int

    def dataset(self, pool: ImageDataset) -> ImageDataset:
        return fold_dataset(pool, self.k, self.fold, self.split_seed)

    def to_dict(self) -> dict:
        return asdict(self)


def replicates(k: int, repeats: int, seed0: int = 0, split_seed0: int = 0
               ) -> list[Replicate]:
    """Every replicate of ``repeats`` repeats of ``k``-fold, repeat-major."""
    return [Replicate(r, f, k, seed0 + r * k + f, split_seed0 + r)
            for r in range(repeats) for f in range(k)]


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer of ``model`` (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy()
                 .tobytes())
    return h.hexdigest()


def arm_seed(seed: int, name: str) -> int:
    """The torch seed of arm ``name`` on a replicate with training seed ``seed`` (stable)."""
    digest = hashlib.sha256(f"{seed}|{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _tensor_names(model: Spikformer, tensors: str) -> str | list[str]:
    if tensors == "all_but_ends":
        return [n for n in prunable_parameters(model, "all") if n not in ENDS]
    return tensors


def _l1p(arm: Arm, model: Spikformer, data: ImageDataset, seed: int,
         masks_in: dict | None) -> PruneResult:
    m = copy.deepcopy(model)
    old = masks_in or None
    masks = magnitude_masks(m, arm.sparsity if old is None else _fraction(arm, old),
                            "global", _tensor_names(m, arm.tensors), old_masks=old)
    apply_masks(m, masks)
    if arm.epochs:
        finetune(m, data, epochs=arm.epochs, lr=arm.lr, seed=seed, batch_size=64,
                 masks=masks, progress=False, slif_lr=arm.slif_lr)
    return PruneResult(model=m, masks=masks)


def _fraction(arm: Arm, old: dict) -> float:
    kept = sum(int(v.sum()) for v in old.values()) / sum(v.numel() for v in old.values())
    return max(0.0, 1.0 - (1.0 - arm.sparsity) / kept)


def _derive(arm: Arm, start: Spikformer, masks: dict, data: ImageDataset, seed: int,
            theta_rw: dict) -> PruneResult:
    """The arm's model from ``start`` (with ``masks``, possibly empty)."""
    if arm.slif != "none":
        start = convert_to_slif(start, blocks_only=arm.slif == "blocks")
    if arm.method == "dense":
        return PruneResult(model=start, masks=masks)
    if arm.method == "l1p":
        return _l1p(arm, start, data, seed, masks)
    if arm.method == "dsp":
        from .dsp import run_dsp

        res = run_dsp(start, data, rank_budget=arm.rank_budget, finetune_epochs=0, seed=seed)
        if arm.epochs:
            finetune(res.model, data, epochs=arm.epochs, lr=arm.lr, seed=seed, batch_size=64,
                     masks=None, progress=False, slif_lr=arm.slif_lr)
        return res
    if arm.method == "lth":
        from .lth import run_lth

        return run_lth(start, data, epochs_per_round=arm.epochs, target_sparsity=arm.sparsity,
                       prune_fraction=arm.prune_fraction,
                       tensors=_tensor_names(start, arm.tensors), rewind_state=theta_rw,
                       lr=arm.lth_lr, seed=seed)
    from .tokens import run_tokens

    return run_tokens(start, data, keep=arm.token_keep, epochs=arm.epochs, lr=arm.lr,
                      seed=seed, masks=masks or None)


def _nonzero_weights(model: Spikformer) -> tuple[int, int]:
    params = [p for _, p in model.named_parameters() if p.ndim >= 2]
    return (int(sum(p.numel() for p in params)),
            int(sum(int((p != 0).sum()) for p in params)))


def run_replicate(pool: ImageDataset, config: SpikformerConfig, arms: Sequence[Arm],
                  replicate: Replicate, *, dense_epochs: int,
                  evaluate: Callable[[Spikformer, ImageDataset, str], dict] | None = None,
                  log: Callable[[dict], None] | None = None) -> list[dict]:
    """Train the replicate's dense model, run every arm, return one row per arm and deploy.

    Each row: ``arm`` (the row name: the arm's, with " (relay)" for a relay deployment),
    the replicate's fields, the arm's settings, ``accuracy_float`` (torch, the test fold),
    ``n_test``, ``weights`` and ``nonzero_weights`` (>= 2-D parameters), ``sparsity``
    (of the masked tensors, None without masks), ``digest`` (:func:`state_digest`),
    ``seconds`` (training), and whatever ``evaluate(model, test data, deploy)`` returns.
    ``log`` is called with each row as it is made.
    """
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise NmcDeployError("run_replicate: arm names must be unique")
    data = replicate.dataset(pool)
    t0 = time.perf_counter()
    torch.manual_seed(replicate.seed)
    base = Spikformer(config)
    # the dense run's parameters at every rewind epoch an LTH arm asks for (0: the initial)
    wanted = {a.rewind_epoch for a in arms if a.method == "lth"}
    bad = sorted(e for e in wanted if not 0 <= e <= dense_epochs)
    if bad:
        raise NmcDeployError(f"run_replicate: rewind_epoch ({bad[0]}) must be in "
                             f"0..dense_epochs ({dense_epochs})")
    theta_rw: dict[int, dict] = {}

    def keep(m, epoch):
        if epoch in wanted:
            theta_rw[epoch] = {n: p.detach().clone() for n, p in m.named_parameters()}

    keep(base, 0)
    fit(base, data, epochs=dense_epochs, seed=replicate.seed, progress=False,
        on_epoch_end=lambda m, record: keep(m, record["epoch"]))
    dense_seconds = time.perf_counter() - t0
    done: dict[str, PruneResult] = {}
    rows: list[dict] = []
    for arm in arms:
        t0 = time.perf_counter()
        if arm.after is not None and arm.after not in done:
            raise NmcDeployError(f"arm '{arm.name}': starts after '{arm.after}', which is "
                                 "not an earlier arm")
        prev = done[arm.after] if arm.after else PruneResult(model=base)
        # torch's generator (token selectors' initial weights, Gumbel noise) starts from a
        # seed of the replicate and the arm: an arm's result does not depend on the others
        torch.manual_seed(arm_seed(replicate.seed, arm.name))
        result = _derive(arm, prev.model, dict(prev.masks), data, replicate.seed,
                         theta_rw.get(arm.rewind_epoch, {}))
        result.model.eval()
        done[arm.name] = result
        seconds = time.perf_counter() - t0 + (dense_seconds if arm.method == "dense" else 0.0)
        weights, nonzero = _nonzero_weights(result.model)
        masks = result.masks
        sparsity = (None if not masks else
                    1.0 - sum(int(m.sum()) for m in masks.values())
                    / sum(m.numel() for m in masks.values()))
        common = {**replicate.to_dict(), "settings": arm.settings(),
                  "dense_epochs": dense_epochs,
                  "accuracy_float": accuracy_on_test(result.model, data),
                  "n_test": len(data.y_test), "n_train": len(data.y_train),
                  "weights": weights, "nonzero_weights": nonzero, "sparsity": sparsity,
                  "digest": state_digest(result.model), "seconds": round(seconds, 1)}
        for deploy in arm.deploy:
            row = {"arm": arm.name + ("" if deploy == "fused" else f" ({deploy})"),
                   "deploy": deploy, **common}
            if evaluate is not None:
                row.update(evaluate(result.model, data, deploy))
            rows.append(row)
            if log is not None:
                log(row)
    return rows


def arms_from_dicts(items: Sequence[dict]) -> list[Arm]:
    """Arms from plain dicts (JSON), ``deploy`` given as a list."""
    return [Arm(**{**d, "deploy": tuple(d.get("deploy", ("fused",)))}) for d in items]

