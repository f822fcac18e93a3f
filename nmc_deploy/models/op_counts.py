"""NeuroBench-compatible operation counts of a torch model (NeuroBench 2.3.0 definitions).

Counted on the float torch model, the model NeuroBench itself would be run on, so every
definition applies to the same tensors (docs/op-counts.md says why not on the NIR graph).
NeuroBench is not imported here; tests/models/test_op_counts.py runs NeuroBench on the same
models and inputs and checks that the numbers are equal.

Definitions (NeuroBench 2.3.0, ``neurobench/metrics``), per call of a connection layer
(``nn.Linear``, ``nn.Conv1d/2d/3d``) with input ``x`` and weight ``W``:

* effective ops = the layer's forward on ``1[x != 0]`` with weights ``1[W != 0]`` and no
  bias, summed: every (nonzero input, nonzero weight) pair, padding never counted;
* dense ops = the same forward with every input and weight set to 1;
* the call's ops are ACs when every entry of ``x`` is -1, 0 or +1 (a spike tensor), else
  MACs; the test covers the whole call (all samples of the batch, all time steps).

Sums over calls are divided by the number of samples: ``Effective_ACs``,
``Effective_MACs``, ``Dense`` are per sample, summed over the time steps.
``ActivationSparsity`` = 1 - nonzero outputs / outputs of every activation module
(:class:`MultiStepLIF`, :class:`SLIF`, ``nn.ReLU``, ``nn.Sigmoid``) in a batch, then the
mean over batches weighted by batch size (NeuroBench's ``WorkloadMetric`` average).
``MembraneUpdates`` applies NeuroBench's rule (first step: every neuron; later steps:
neurons whose stored membrane potential changed) to the carried state ``v[t]`` of our LIF
neurons, per sample. NeuroBench itself sees membranes of snnTorch neurons only (for our
neurons it reports 0); the test checks the rule on snnTorch ``Leaky`` neurons built to
the same dynamics.

Functional products (``q @ k^T``, ``attn @ v``, the token mean) are no connection layers:
NeuroBench does not count them, and neither does this count (the hardware-event count of
the energy report does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NmcDeployError
from .lif import SLIF, MultiStepLIF, multistep_lif_trace, slif_trace

__all__ = ["NEUROBENCH_LABEL", "NEUROBENCH_KEYS", "CONNECTION_LAYERS", "ACTIVATION_LAYERS",
           "count_neurobench_ops", "count_checkpoint_ops", "connection_call_ops"]

NEUROBENCH_LABEL = "NeuroBench 2.3.0 definitions on the float model"
NEUROBENCH_KEYS = ("Effective_ACs", "Effective_MACs", "Dense", "ActivationSparsity",
                   "MembraneUpdates")
CONNECTION_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ACTIVATION_LAYERS = (MultiStepLIF, SLIF, nn.ReLU, nn.Sigmoid)
_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def connection_call_ops(layer: nn.Module, x: torch.Tensor) -> tuple[int, int, bool]:
    """``(effective, dense, spiking)`` of one call of a connection layer on input ``x``.

    Per output the count is a small integer, exact in float32; the sums are taken in
    float64 (exact below 2**53; NeuroBench sums in float32).
    """
    with torch.no_grad():
        spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
        xb = (x != 0).to(torch.float32)
        wb = (layer.weight != 0).to(torch.float32)
        if isinstance(layer, nn.Linear):
            rows = xb.reshape(-1, layer.in_features)
            effective = float(rows.sum(0).double() @ wb.sum(0).double())
            dense = rows.shape[0] * layer.in_features * layer.out_features
            return int(round(effective)), int(dense), spiking
        conv = _CONV[type(layer)]
        if layer.padding_mode != "zeros":
            raise NmcDeployError(f"op counts: padding_mode ({layer.padding_mode!r}) of "
                                 f"{type(layer).__name__} is not counted; only 'zeros' is")
        args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                    groups=layer.groups)
        effective = conv(xb, wb, **args).double().sum().item()
        dense = conv(torch.ones_like(xb), torch.ones_like(wb), **args).double().sum().item()
    return int(round(effective)), int(round(dense)), spiking


def _membrane_updates(layer: nn.Module, x: torch.Tensor) -> int:
    """NeuroBench's membrane-update rule on the carried state ``v[t]`` of one call."""
    if isinstance(layer, MultiStepLIF):
        _, _, v = multistep_lif_trace(x, layer.tau, layer.v_threshold)
    elif isinstance(layer, SLIF):
        shape = layer._broadcast_shape(x)
        with torch.no_grad():
            k = torch.sigmoid(-layer.leak_logit).reshape(shape)
            v_th = layer._threshold().reshape(shape)
        _, _, v = slif_trace(x, k, v_th)
    else:  # a non-spiking activation has no membrane (NeuroBench: no mem attribute)
        return 0
    changed = torch.count_nonzero(v[1:] - v[:-1]).item() if v.shape[0] > 1 else 0
    return int(v[0].numel() + changed)


@dataclass
class _Tally:
    macs: int = 0
    acs: int = 0
    dense: int = 0
    membrane_updates: int = 0
    batch_nonzero: int = 0
    batch_numel: int = 0
    per_layer: dict = field(default_factory=dict)

    def connection(self, name: str, layer: nn.Module, x: torch.Tensor) -> None:
        eff, dense, spiking = connection_call_ops(layer, x)
        if spiking:
            self.acs += eff
        else:
            self.macs += eff
        self.dense += dense
        row = self.per_layer.setdefault(name, {"acs": 0, "macs": 0, "dense": 0})
        row["acs" if spiking else "macs"] += eff
        row["dense"] += dense

    def activation(self, layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> None:
        self.batch_nonzero += int(torch.count_nonzero(out).item())
        self.batch_numel += out.numel()
        self.membrane_updates += _membrane_updates(layer, x)


def _register(model: nn.Module, tally: _Tally) -> list:
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, CONNECTION_LAYERS):
            handles.append(mod.register_forward_pre_hook(
                lambda m, args, n=name: tally.connection(n, m, args[0])))
        elif isinstance(mod, ACTIVATION_LAYERS):
            handles.append(mod.register_forward_hook(
                lambda m, args, out: tally.activation(m, args[0], out)))
    return handles


def count_neurobench_ops(model: nn.Module, images: torch.Tensor, batch_size: int = 1,
                         per_layer: bool = False) -> dict:
    """Run ``model`` on ``images`` in batches and count as NeuroBench 2.3.0 would.

    Parameters
    ----------
    model : nn.Module
        The float model (put in eval mode for the count, as NeuroBench's ``TorchModel``
        does; the caller's mode is restored). Not otherwise changed.
    images : torch.Tensor
        Inputs, batch first, exactly as the model's ``forward`` takes them.
    batch_size : int
        Samples per forward call. NeuroBench's spike test covers a whole call, so a layer
        whose input is non-binary for one sample counts as MACs for the whole batch;
        counts are comparable to a NeuroBench run with the same batch size.
    per_layer : bool
        Also return ``"layers"``: per connection layer ACs, MACs and dense ops (per sample).

    Returns
    -------
    dict
        ``Effective_ACs``, ``Effective_MACs``, ``Dense``, ``ActivationSparsity``,
        ``MembraneUpdates``, ``samples``, ``batch_size``, ``label``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NmcDeployError(f"op counts: batch_size ({batch_size!r}) must be a positive integer")
    n = int(images.shape[0])
    if n < 1:
        raise NmcDeployError("op counts: no samples given")
    tally = _Tally()
    handles = _register(model, tally)
    was_training = model.training
    model.eval()
    sparsity_sum = 0.0
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                batch = images[start:start + batch_size]
                tally.batch_nonzero = tally.batch_numel = 0
                model(batch)
                if tally.batch_numel:
                    sparsity = (tally.batch_numel - tally.batch_nonzero) / tally.batch_numel
                    sparsity_sum += sparsity * batch.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {"Effective_ACs": tally.acs / n, "Effective_MACs": tally.macs / n,
           "Dense": tally.dense / n, "ActivationSparsity": sparsity_sum / n,
           "MembraneUpdates": tally.membrane_updates / n,
           "samples": n, "batch_size": batch_size, "label": NEUROBENCH_LABEL}
    if per_layer:
        out["layers"] = {k: {kk: vv / n for kk, vv in v.items()}
                         for k, v in tally.per_layer.items()}
    return out


def count_checkpoint_ops(ckpt: str | Path | None, x_int, levels: int) -> dict | None:
    """:func:`count_neurobench_ops` of a checkpoint's model on integer images ``0..levels``
    (the model sees ``x / levels``), one sample per call; None without the checkpoint file."""
    if not ckpt or not Path(ckpt).is_file():
        return None
    from .checkpoint import load_checkpoint
    from .train import images_to_float

    model, _ = load_checkpoint(Path(ckpt))
    counts = count_neurobench_ops(model, images_to_float(x_int, levels), batch_size=1)
    return {**counts, "checkpoint": str(ckpt)}
