"""Keep-masks on a model's weights: checking, applying and keeping masked weights at zero.

A mask set is a ``dict`` from parameter name (as in ``model.named_parameters()``) to a bool
tensor of the parameter's shape, True where the weight is kept. Training
(:func:`~nmc_deploy.models.train.train_model`) keeps masked weights at exactly zero with
:func:`keep_masked`; how masks are chosen (magnitude pruning, LTH, L1P) lives in
:mod:`nmc_deploy.prune.masks`, which re-exports these helpers.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..errors import NmcDeployError

__all__ = ["check_masks", "apply_masks", "keep_masked"]


def check_masks(params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    """Raise :class:`NmcDeployError` unless every mask names a parameter of ``params``,
    has its shape and dtype ``torch.bool``."""
    for n, m in masks.items():
        if n not in params:
            raise NmcDeployError(f"masks: '{n}' is not a parameter of the model")
        if tuple(m.shape) != tuple(params[n].shape):
            raise NmcDeployError(
                f"masks: '{n}' has shape {tuple(m.shape)}, the parameter has "
                f"{tuple(params[n].shape)}")
        if m.dtype != torch.bool:
            raise NmcDeployError(f"masks: '{n}' has dtype {m.dtype}; masks must be torch.bool")


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set the masked-out weights of ``model`` to exactly +0.0 (in place)."""
    params = dict(model.named_parameters())
    check_masks(params, masks)
    for n, m in masks.items():
        params[n].masked_fill_(~m, 0.0)


@contextlib.contextmanager
def keep_masked(model: nn.Module, masks: dict[str, torch.Tensor],
                optimizer: torch.optim.Optimizer | None = None) -> Iterator[None]:
    """Keep the masked-out weights at exactly 0 while training inside the block.

    On entry the masks are applied; every gradient of a masked tensor is multiplied by
    its mask (a tensor hook), and, if ``optimizer`` is given, the masks are re-applied
    after each ``optimizer.step()`` (AdamW's weight decay and moment estimates could
    otherwise move a zero). All hooks are removed on exit.
    """
    params = dict(model.named_parameters())
    check_masks(params, masks)
    apply_masks(model, masks)
    handles = []
    for n, m in masks.items():
        keep = m.to(params[n].dtype)
        handles.append(params[n].register_hook(lambda grad, keep=keep: grad * keep))
    if optimizer is not None:
        handles.append(optimizer.register_step_post_hook(
            lambda opt, args, kwargs: apply_masks(model, masks)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
