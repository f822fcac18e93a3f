"""CPU training and evaluation of a :class:`~nmc_deploy.models.spikformer.Spikformer`.

Recipe (tuned on the 8x8 digits, see benchmarks/train_digits.py): AdamW, a linear warmup
then cosine decay of the learning rate per batch, cross-entropy with label smoothing, and
random shifts of up to one pixel (zero fill) as the only augmentation. Runs are seeded:
the same seed, data and thread count give the same model.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..data import ImageDataset
from ..errors import DatasetError, NmcDeployError
from .spikformer import Spikformer, SpikformerConfig, preset_config

__all__ = [
    "DEFAULT_EPOCHS", "DEFAULT_LR", "train_model", "fit", "evaluate_model",
    "recalibrate_batchnorm", "images_to_float",
]

# Epochs of the default recipe per preset (digits: see benchmarks/train_digits.py).
# The papers' presets get their published schedules (spikformer-and-pruning.md section 1.8:
# CIFAR and ImageNet 300 + 10 cooldown epochs, CIFAR10-DVS 96 + 10; SparseSpikformer's selector
# training 300 + 10 on CIFAR, 300 on DVS, section 2.2); they need their data sets.
DEFAULT_EPOCHS: dict[str, int] = {
    "digits": 30, "tiny": 5, "cifar10-4-384": 310, "imagenet-8-512": 310,
    "cifar10dvs-2-256": 106, "sparse-cifar10-4-384": 310, "sparse-cifar10dvs-4-256": 300,
    "sparse-dvs128-4-256": 300}
DEFAULT_LR = 5e-3  # peak AdamW learning rate
WEIGHT_DECAY = 0.01  # AdamW decoupled weight decay
LABEL_SMOOTHING = 0.1  # cross-entropy label smoothing
WARMUP_EPOCHS = 2  # linear warmup from lr/10, then cosine decay to MIN_LR_FRACTION * lr
MIN_LR_FRACTION = 0.01
MAX_SHIFT_PX = 1  # random translation of training images, pixels in each direction
# torch intra-op threads during training. One, not two: on the 2-core project machine two
# OpenMP threads are ~20-25 % faster when the machine is idle (digits epoch 1.7 s vs 2.2 s),
# but 3-4x slower as soon as one other busy process shares the cores (5.4 s vs 1.8 s per
# epoch with one `while True: pass` beside it: a thread waits at every barrier for its
# descheduled partner). One thread keeps training time predictable on a shared machine;
# compare with `benchmarks/train_digits.py --num-threads 2`.
NUM_THREADS = 1


def images_to_float(x_int: np.ndarray, levels: int) -> torch.Tensor:
    """Convert integer images ``0..levels`` to the float model input ``x / levels``."""
    return torch.tensor(np.asarray(x_int), dtype=torch.float32) / float(levels)


def _random_shift(x: np.ndarray, rng: np.random.Generator, max_shift_px: int) -> np.ndarray:
    """Translate each image by a random integer offset in ``[-max_shift_px, max_shift_px]``.

    Pixels shifted in from outside the image are zero.
    """
    if max_shift_px == 0:
        return x
    n, _, h, w = x.shape
    p = max_shift_px
    padded = np.zeros((n, x.shape[1], h + 2 * p, w + 2 * p), dtype=x.dtype)
    padded[:, :, p:p + h, p:p + w] = x
    dy = rng.integers(0, 2 * p + 1, size=n)
    dx = rng.integers(0, 2 * p + 1, size=n)
    out = np.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def _lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warmup from 0.1, then cosine to MIN_LR_FRACTION."""
    if step < warmup_steps:
        return 0.1 + 0.9 * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * cosine


def _check_dataset(cfg: SpikformerConfig, dataset: ImageDataset) -> None:
    expected = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if dataset.image_shape != expected:
        raise DatasetError(
            f"dataset '{dataset.name}': image shape ({dataset.image_shape}) does not match the "
            f"model (in_channels, img_size, img_size) ({expected}); choose a matching preset")
    if dataset.num_classes != cfg.num_classes:
        raise DatasetError(
            f"dataset '{dataset.name}': num_classes ({dataset.num_classes}) does not match the "
            f"model num_classes ({cfg.num_classes}); choose a matching preset")


def train_model(
    cfg: SpikformerConfig | str,
    dataset: ImageDataset,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[dict], None] | None = None,
    num_threads: int = NUM_THREADS,
) -> tuple[Spikformer, list[dict]]:
    r"""Train a Spikformer on ``dataset``'s training split on the CPU.

    The loss is label-smoothed cross-entropy; the learning rate follows, per batch,

    .. math::

        \eta(k) = \eta_0 \left(0.1 + 0.9\,k / k_w\right) \; (k < k_w), \qquad
        \eta(k) = \eta_0 \left(f + (1 - f)\,\tfrac{1}{2}(1 + \cos \pi p)\right)

    with ``p`` the fraction of post-warmup steps done and ``f = MIN_LR_FRACTION``.

    Parameters
    ----------
    cfg : SpikformerConfig or str
        Model configuration, or the name of a preset.
    dataset : ImageDataset
        Integer images ``0..levels``; the model sees ``x / levels``.
    epochs : int
        Passes over the training split (see ``DEFAULT_EPOCHS``).
    batch_size : int
        Images per optimiser step (the last, smaller batch of an epoch is dropped when it
        has fewer than 2 images, since BatchNorm needs at least 2 rows).
    lr : float
        Peak AdamW learning rate.
    seed : int
        Seeds the weight initialisation (``torch.manual_seed``), the shuffling and the
        augmentation (``numpy.random.default_rng``).
    progress : bool
        Show a tqdm bar over epochs on stderr with the loss and training accuracy.
    log : callable, optional
        Called with each epoch's history record after the epoch.
    num_threads : int
        torch intra-op threads while training (``torch.set_num_threads``); the previous
        setting is restored afterwards.

    Returns
    -------
    model : Spikformer
        The trained model, in eval mode.
    history : list of dict
        One record per epoch: ``epoch`` (1-based), ``loss`` (mean training loss),
        ``train_acc`` (accuracy on the augmented training batches, train-mode BN),
        ``lr`` (learning rate at the epoch's end) and ``seconds`` (wall time of the epoch).

    Raises
    ------
    NmcDeployError
        If ``epochs``, ``batch_size`` or ``lr`` are not positive, or (``DatasetError``) the
        data set does not fit the configuration.
    """
    if isinstance(cfg, str):
        cfg = preset_config(cfg)
    _check_fit_arguments("train_model", epochs, batch_size, lr, num_threads)
    _check_dataset(cfg, dataset)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        torch.manual_seed(seed)
        model = Spikformer(cfg)
        history = _fit(model, dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       progress=progress, log=log)
    finally:
        torch.set_num_threads(previous_threads)
    return model, history


def _check_fit_arguments(where: str, epochs, batch_size, lr, num_threads) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise NmcDeployError(f"{where}: epochs ({epochs!r}) must be a positive integer")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise NmcDeployError(f"{where}: batch_size ({batch_size!r}) must be an integer >= 2")
    if not lr > 0:
        raise NmcDeployError(f"{where}: lr ({lr!r}) must be positive")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise NmcDeployError(
            f"{where}: num_threads ({num_threads!r}) must be a positive integer")


def fit(
    model: Spikformer,
    dataset: ImageDataset,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
    param_groups: Iterable[dict[str, Any]] | None = None,
    weight_decay: float = WEIGHT_DECAY,
    warmup_epochs: int = WARMUP_EPOCHS,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batch_loss: Callable[..., torch.Tensor] | None = None,
    on_epoch_end: Callable[[Spikformer, dict], None] | None = None,
    progress: bool = True,
    log: Callable[[dict], None] | None = None,
    num_threads: int = NUM_THREADS,
) -> list[dict]:
    """Train an existing model in place with the recipe of :func:`train_model`.

    The loop, learning-rate schedule, augmentation and seeding are those of
    :func:`train_model` (which calls this with a fresh model), with a new AdamW optimiser.
    ``seed`` seeds only the shuffling and augmentation (``numpy.random.default_rng``);
    the model's weights are whatever they are on entry.

    Parameters
    ----------
    model : Spikformer
        Trained in place; left in eval mode.
    dataset : ImageDataset
        Integer images ``0..levels``; the model sees ``x / levels``.
    epochs, batch_size, lr, seed, progress, log, num_threads
        As in :func:`train_model`.
    masks : dict of str to bool tensor, optional
        Parameter name -> keep mask (True keeps the weight). Masked weights are zeroed on
        entry, their gradients are zeroed, and they are zeroed again after every optimiser
        step (AdamW's weight decay and moments could otherwise move them), so they stay
        exactly 0 (see :func:`nmc_deploy.models.masks.keep_masked`).
    param_groups : iterable of dict, optional
        AdamW parameter groups (``{"params": [...], "weight_decay": ...}``); default one
        group of every parameter with ``weight_decay``.
    weight_decay : float
        AdamW decoupled weight decay of the default group.
    warmup_epochs : int
        Epochs of linear warmup (capped at a quarter of all steps); 0 starts at ``lr``.
    loss_fn : callable, optional
        ``loss_fn(logits, labels) -> scalar``; default label-smoothed cross-entropy.
    batch_loss : callable, optional
        ``batch_loss(model, images, labels, logits) -> scalar``, replacing ``loss_fn`` when
        the loss needs more than the logits (token selection: keep-ratio and distillation
        terms, see :mod:`nmc_deploy.prune.tokens`).
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(model, record)`` after every epoch (model in train mode).

    Returns
    -------
    list of dict
        The per-epoch history, as :func:`train_model` returns it.

    Raises
    ------
    NmcDeployError
        On invalid arguments, or (``DatasetError``) a data set that does not fit the model.
    """
    _check_fit_arguments("fit", epochs, batch_size, lr, num_threads)
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) \
            or warmup_epochs < 0:
        raise NmcDeployError(
            f"fit: warmup_epochs ({warmup_epochs!r}) must be a non-negative integer")
    _check_dataset(model.config, dataset)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        return _fit(model, dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                    progress=progress, log=log, masks=masks, param_groups=param_groups,
                    weight_decay=weight_decay, warmup_epochs=warmup_epochs, loss_fn=loss_fn,
                    batch_loss=batch_loss, on_epoch_end=on_epoch_end)
    finally:
        torch.set_num_threads(previous_threads)


def _fit(model: Spikformer, dataset: ImageDataset, *, epochs: int, batch_size: int,
         lr: float, seed: int, progress: bool, log: Callable[[dict], None] | None,
         masks: dict[str, torch.Tensor] | None = None,
         param_groups: Iterable[dict[str, Any]] | None = None,
         weight_decay: float = WEIGHT_DECAY, warmup_epochs: int = WARMUP_EPOCHS,
         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
         batch_loss: Callable[..., torch.Tensor] | None = None,
         on_epoch_end: Callable[[Spikformer, dict], None] | None = None) -> list[dict]:
    """The training loop of :func:`fit` and :func:`train_model` (arguments checked)."""
    rng = np.random.default_rng(seed)
    model.train()

    x_train = np.asarray(dataset.x_train)
    y_train = torch.tensor(np.asarray(dataset.y_train), dtype=torch.long)
    n = len(x_train)
    batches = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    if len(batches) > 1 and batches[-1][1] - batches[-1][0] < 2:
        batches.pop()
    total_steps = epochs * len(batches)
    warmup_steps = min(warmup_epochs * len(batches), total_steps // 4)

    groups = model.parameters() if param_groups is None else list(param_groups)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: _lr_factor(k, total_steps, warmup_steps))
    criterion = (nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING) if loss_fn is None
                 else loss_fn)

    masking = None
    bar = None
    history: list[dict] = []
    try:
        if masks is not None:
            from .masks import keep_masked

            masking = keep_masked(model, masks, optimizer)
            masking.__enter__()
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=epochs, desc="train", unit="epoch", file=sys.stderr, leave=True)
        for epoch in range(1, epochs + 1):
            start_s = time.perf_counter()
            order = rng.permutation(n)
            x_epoch = _random_shift(x_train[order], rng, MAX_SHIFT_PX)
            x_epoch = images_to_float(x_epoch, dataset.levels)
            y_epoch = y_train[torch.as_tensor(order)]
            loss_sum, correct, seen = 0.0, 0, 0
            for lo, hi in batches:
                xb, yb = x_epoch[lo:hi], y_epoch[lo:hi]
                logits = model(xb)
                loss = (criterion(logits, yb) if batch_loss is None
                        else batch_loss(model, xb, yb, logits))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * (hi - lo)
                correct += int((logits.argmax(1) == yb).sum())
                seen += hi - lo
            record = {
                "epoch": epoch,
                "loss": loss_sum / seen,
                "train_acc": correct / seen,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start_s,
            }
            history.append(record)
            if bar is not None:
                bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['train_acc']:.3f}")
                bar.update(1)
            if log is not None:
                log(record)
            if on_epoch_end is not None:
                on_epoch_end(model, record)
    finally:
        if bar is not None:
            bar.close()
        if masking is not None:
            masking.__exit__(None, None, None)
    model.eval()
    return history


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> None:
    """Replace every BatchNorm's running statistics by their average over ``x`` (in place).

    "Precise BN": the running mean and variance become the equal-weight averages of the
    per-batch mean and (unbiased) variance of the batches of ``x``, exactly the statistics
    the training forward pass normalises with (over ``T*B`` or ``T*B*N`` rows). Affine
    parameters are not touched. The model is left in eval mode.

    Parameters
    ----------
    model : nn.Module
        Model whose ``BatchNorm1d``/``BatchNorm2d`` modules are recalibrated.
    x : torch.Tensor
        Float model inputs ``(n, C, H, W)``, e.g. ``images_to_float(x_train, levels)``.
    batch_size : int
        Images per forward pass (use the training batch size).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative (equal-weight) average over the batches
    model.train()
    try:
        for lo in range(0, len(x), batch_size):
            if len(x[lo:lo + batch_size]) >= 2:
                model(x[lo:lo + batch_size])
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()


@torch.no_grad()
def evaluate_model(model: nn.Module, x_int: np.ndarray, y: np.ndarray, levels: int,
                   batch_size: int = 256) -> float:
    """Return the classification accuracy (0..1) of ``model`` on integer images ``x_int``.

    The model runs in eval mode (BN running statistics) on ``x_int / levels``; its previous
    train/eval mode is restored afterwards.
    """
    x_int, y = np.asarray(x_int), np.asarray(y)
    if len(x_int) != len(y):
        raise NmcDeployError(
            f"evaluate_model: number of images ({len(x_int)}) differs from number of labels "
            f"({len(y)})")
    if len(y) == 0:
        raise NmcDeployError("evaluate_model: no images given")
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for lo in range(0, len(y), batch_size):
            logits = model(images_to_float(x_int[lo:lo + batch_size], levels))
            correct += int((logits.argmax(1).numpy() == y[lo:lo + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / len(y)
