"""Export a trained Spikformer to the graph IR (and from there to NIR).

What the exported graph holds (docs/nir-extensions.md has the full mapping):

* Conv2d/Linear + eval-mode BatchNorm are folded into one ``Conv2d`` / ``Conv1d(k=1)``
  (per-token linear over the (C, N) token layout) in float64:
  ``s = gamma / sqrt(var + eps)``, ``W' = s W``, ``b' = s (b - mean) + beta``.
* spikingjelly's ``MultiStepLIF(tau)`` (``h = v + (x - v)/tau``, fire on ``h >= v_th``, hard
  reset to 0) becomes NIR ``LIF`` with ``tau = tau_steps * dt``, ``r = 1``, ``v_leak = 0``,
  ``v_reset = 0``; under forward Euler ``alpha = 1 - dt/tau`` and ``gain = r dt/tau`` recover
  ``1 - 1/tau_steps`` and ``1/tau_steps`` exactly (nir.md §5.3). Metadata says ``>=``.
* MaxPool2d on spikes is an OR: ``SumPool2d`` then ``Threshold(0.5)``.
* Residual sums are ``Scale(1)`` junction nodes with fan-in edges (NIR sums fan-in).
* ``q k^T v`` is our ``SpikingSelfAttention`` extension node with ports q, k, v.
* Token mean + head Linear is one ``Affine`` on the flattened (D*N) stream with
  ``W'[o, c*N + n] = W[o, c] / k`` (k = N, or the tokens the last selector keeps); the time
  mean is an ``I`` node with ``r = 1/(T dt)``.
* A token selector (SparseSpikformer) is our ``TokenSelect`` extension node on the stream
  before its block, naming the LIF nodes it gates (those of its block and the following
  ones up to the next selector).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ExportError
from ..ir import (Affine, Conv1d, Conv2d, Flatten, Graph, Input, Integrator, LIF, Output, Scale,
                  SpikingSelfAttention, SumPool2d, Threshold, TokenSelect)

__all__ = ["export_spikformer", "fold_batchnorm_weights", "DT"]

DT = 1e-4  # seconds per time step; spikingjelly's NIR convention (nir.md §5.2)


def fold_batchnorm_weights(weight, bias, bn_mean, bn_var, bn_eps, bn_w, bn_b):
    """Fold eval-mode BatchNorm into the preceding layer (float64; arrays in, arrays out).

    ``weight`` has the output channel first; ``bias`` may be None.
    """
    weight = np.asarray(weight, np.float64)
    s = np.asarray(bn_w, np.float64) / np.sqrt(np.asarray(bn_var, np.float64) + float(bn_eps))
    b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64)
    w_f = weight * s.reshape(-1, *([1] * (weight.ndim - 1)))
    b_f = (b - np.asarray(bn_mean, np.float64)) * s + np.asarray(bn_b, np.float64)
    return w_f, b_f


def _np(t):
    return None if t is None else t.detach().cpu().double().numpy()


def _fold(layer, bn):
    if bn.training:
        raise ExportError("BatchNorm must be in eval mode to fold; call model.eval()")
    return fold_batchnorm_weights(_np(layer.weight), _np(layer.bias), _np(bn.running_mean),
                                  _np(bn.running_var), bn.eps, _np(bn.weight), _np(bn.bias))


def _lif_node(lif, shape, time_steps_meta: dict) -> LIF:
    """LIF node; an sLIF's per-channel gain k (= 1/tau) and threshold are broadcast over the
    channel axis, which is the first axis in our (C, H, W) and (C, N) layouts."""
    ones = np.ones(shape)
    if hasattr(lif, "v_threshold_per_channel"):  # sLIF (issue 3)
        per_channel = (-1,) + (1,) * (len(shape) - 1)
        k = lif.input_gain_per_channel().double().numpy().reshape(per_channel)
        v_th = lif.v_threshold_per_channel().double().numpy().reshape(per_channel)
        tau = ones * DT / k
        source = "sLIF: per-channel leak and threshold, h = v + (x - v) * k"
    else:
        tau_steps = float(lif.tau)
        tau = ones * tau_steps * DT
        v_th = float(lif.v_threshold)
        source = f"spikingjelly MultiStepLIFNode(tau={tau_steps}, decay_input=True, v_reset=0)"
    return LIF(tau=tau, r=ones, v_leak=np.zeros(shape), v_threshold=ones * v_th,
               v_reset=np.zeros(shape),
               metadata={"threshold_comparison": ">=", "source_neuron": source,
                         **time_steps_meta})


def export_spikformer(model: torch.nn.Module, meta: dict[str, Any] | None = None) -> Graph:
    """Export an eval-mode Spikformer to the graph IR. Does not modify ``model``."""
    cfg = model.config
    was_training = model.training
    model.eval()
    try:
        return _export(model, cfg, dict(meta or {}))
    finally:
        model.train(was_training)


class _Builder:
    """Nodes and edges of the graph under construction, in insertion order."""

    def __init__(self):
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name, node, *sources):
        self.nodes[name] = node
        self.edges.extend((s, name) for s in sources)
        return name


def _export_sps(g: _Builder, model, cfg) -> tuple[str, tuple[int, int]]:
    """Spiking patch splitting: conv/BN/LIF(/max-pool) stages, RPE and the token stream.

    Returns the residual stream's node name and the token grid ``(h, w)``."""
    C, H, W = cfg.in_channels, cfg.img_size, cfg.img_size
    prev = g.add("input", Input(shape=(C, H, W)))
    sps = model.patch_embed
    hw = (H, W)
    for i, (conv, bn, lif, pool) in enumerate(zip(sps.convs, sps.bns, sps.lifs, sps.pools)):
        w, b = _fold(conv, bn)
        node = Conv2d(weight=w, bias=b, input_hw=hw, stride=conv.stride, padding=conv.padding,
                      dilation=conv.dilation, groups=conv.groups)
        prev = g.add(f"patch_embed.convs.{i}", node, prev)
        prev = g.add(f"patch_embed.lifs.{i}", _lif_node(lif, node.output_shape, {}), prev)
        if isinstance(pool, torch.nn.MaxPool2d):
            if pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
                raise ExportError(f"patch_embed.pools.{i}: only MaxPool2d without dilation and "
                                  "ceil_mode can be exported")
            sp = SumPool2d(kernel_size=pool.kernel_size, stride=pool.stride,
                           padding=pool.padding, input_chw=node.output_shape)
            prev = g.add(f"patch_embed.pools.{i}", sp, prev)
            prev = g.add(f"patch_embed.pools.{i}.or", Threshold(
                threshold=np.full(sp.output_shape, 0.5),
                metadata={"note": "max-pool of binary spikes = OR = sum > 0.5"}), prev)
            hw = sp.output_shape[1:]
        elif not isinstance(pool, torch.nn.Identity):
            raise ExportError(f"patch_embed.pools.{i}: cannot export {type(pool).__name__}")
        else:
            hw = node.output_shape[1:]
    feat = prev
    D = cfg.embed_dim
    w, b = _fold(sps.rpe_conv, sps.rpe_bn)
    rpe = Conv2d(weight=w, bias=b, input_hw=hw, stride=sps.rpe_conv.stride,
                 padding=sps.rpe_conv.padding, dilation=sps.rpe_conv.dilation,
                 groups=sps.rpe_conv.groups)
    g.add("patch_embed.rpe_conv", rpe, feat)
    g.add("patch_embed.rpe_lif", _lif_node(sps.rpe_lif, rpe.output_shape, {}),
          "patch_embed.rpe_conv")
    N = int(hw[0] * hw[1])
    g.add("patch_embed.feat_tokens", Flatten(input_type=(D, *hw), start_dim=1), feat)
    g.add("patch_embed.rpe_tokens", Flatten(input_type=(D, *hw), start_dim=1),
          "patch_embed.rpe_lif")
    stream = g.add("patch_embed.output", Scale(scale=np.ones((D, N)),
                                               metadata={"role": "residual sum"}),
                   "patch_embed.feat_tokens", "patch_embed.rpe_tokens")
    return stream, hw


def _token_linear(g: _Builder, name, linear, bn, src, N: int) -> str:
    """A token-wise linear (+ folded BN) as Conv1d, or two Conv1d for low-rank factors."""
    if hasattr(linear, "down") and hasattr(linear, "up"):  # low-rank factors (DSP)
        if linear.down.bias is not None:
            raise ExportError(f"{name}.down: a low-rank factor with a bias cannot be "
                              "exported; factor without bias")
        down = _np(linear.down.weight)
        g.add(f"{name}.down", Conv1d(weight=down[:, :, None], bias=np.zeros(down.shape[0]),
                                     input_length=N, metadata={"role": "low-rank factor"}), src)
        w, b = _fold(linear.up, bn)
        return g.add(name, Conv1d(weight=w[:, :, None], bias=b, input_length=N,
                                  metadata={"role": "low-rank factor"}), f"{name}.down")
    w, b = _fold(linear, bn)
    return g.add(name, Conv1d(weight=w[:, :, None], bias=b, input_length=N), src)


_BLOCK_LIFS = ("attn.q_lif", "attn.k_lif", "attn.v_lif", "attn.attn_lif", "attn.proj_lif",
               "mlp.fc1_lif", "mlp.fc2_lif")


def _export_selector(g: _Builder, model, cfg, i: int, stream: str, previous: str, N: int
                     ) -> tuple[str, int]:
    """The token selector before block ``i``; returns its node name and the tokens kept."""
    selectors = list(cfg.token_blocks)
    j = selectors.index(i)
    until = selectors[j + 1] if j + 1 < len(selectors) else cfg.depth
    gates = tuple(f"blocks.{b}.{key}" for b in range(i, until) for key in _BLOCK_LIFS)
    pred = model.token_predictors[j]
    n_keep = cfg.kept_tokens(j + 1)
    name = g.add(f"blocks.{i}.token_select", TokenSelect(
        w1=_np(pred.fc1.weight), b1=_np(pred.fc1.bias), w2=_np(pred.fc2.weight),
        b2=_np(pred.fc2.bias), dim=cfg.embed_dim, n_tokens=N, n_keep=n_keep,
        time_steps=cfg.time_steps, gates=gates, previous=previous,
        metadata={"keep_ratio": cfg.token_keep ** (j + 1)}), stream)
    return name, n_keep


def _export_block(g: _Builder, blk, p: str, stream: str, D: int, N: int) -> str:
    """One block: SSA and MLP with their residual sums; returns the block's output stream."""
    ones = np.ones((D, N))
    a = blk.attn
    for key in ("q", "k", "v"):
        _token_linear(g, f"{p}.attn.{key}_linear", getattr(a, f"{key}_linear"),
                      getattr(a, f"{key}_bn"), stream, N)
        g.add(f"{p}.attn.{key}_lif", _lif_node(getattr(a, f"{key}_lif"), (D, N), {}),
              f"{p}.attn.{key}_linear")
    g.add(f"{p}.attn.ssa", SpikingSelfAttention(num_heads=a.num_heads, dim=D, n_tokens=N,
                                                scale=float(a.scale)))
    g.edges.extend((f"{p}.attn.{key}_lif", f"{p}.attn.ssa.{key}") for key in ("q", "k", "v"))
    g.add(f"{p}.attn.attn_lif", _lif_node(a.attn_lif, (D, N), {}), f"{p}.attn.ssa")
    _token_linear(g, f"{p}.attn.proj_linear", a.proj_linear, a.proj_bn, f"{p}.attn.attn_lif", N)
    g.add(f"{p}.attn.proj_lif", _lif_node(a.proj_lif, (D, N), {}), f"{p}.attn.proj_linear")
    mid = g.add(f"{p}.attn.output", Scale(scale=ones, metadata={"role": "residual sum"}),
                stream, f"{p}.attn.proj_lif")
    m = blk.mlp
    hidden = m.fc1_bn.num_features
    _token_linear(g, f"{p}.mlp.fc1_linear", m.fc1_linear, m.fc1_bn, mid, N)
    g.add(f"{p}.mlp.fc1_lif", _lif_node(m.fc1_lif, (hidden, N), {}), f"{p}.mlp.fc1_linear")
    _token_linear(g, f"{p}.mlp.fc2_linear", m.fc2_linear, m.fc2_bn, f"{p}.mlp.fc1_lif", N)
    g.add(f"{p}.mlp.fc2_lif", _lif_node(m.fc2_lif, (D, N), {}), f"{p}.mlp.fc2_linear")
    return g.add(f"{p}.output", Scale(scale=ones, metadata={"role": "residual sum"}),
                 mid, f"{p}.mlp.fc2_lif")


def _export_head(g: _Builder, model, cfg, stream: str, N: int, n_keep: int) -> None:
    """Token mean folded into the head, time mean as an Integrator read at step T, Output."""
    D = cfg.embed_dim
    g.add("head.tokens", Flatten(input_type=(D, N), start_dim=0), stream)
    w_head = _np(model.head.weight)
    b_head = _np(model.head.bias)
    # W'[o, c*N + n] = W[o, c] / k: the mean over the k tokens present (k = N without token
    # selection; removed tokens are zero in the stream, so summing all N is the kept sum)
    w_flat = np.repeat(w_head / n_keep, N, axis=1)
    g.add("head", Affine(weight=w_flat, bias=b_head,
                         metadata={"note": f"mean over the {n_keep} tokens present folded "
                                           "into the head"}), "head.tokens")
    T = cfg.time_steps
    g.add("head.time_mean", Integrator(r=np.full(b_head.shape, 1.0 / (T * DT)),
                                       metadata={"note": "read at step T: time mean of the "
                                                         "logits"}),
          "head")
    g.add("output", Output(shape=b_head.shape), "head.time_mean")


def _export(model, cfg, meta) -> Graph:
    g = _Builder()
    stream, hw = _export_sps(g, model, cfg)
    N = int(hw[0] * hw[1])
    previous = ""
    n_keep = N
    for i, blk in enumerate(model.blocks):
        if i in cfg.token_blocks:  # token selector before this block (SparseSpikformer)
            stream, n_keep = _export_selector(g, model, cfg, i, stream, previous, N)
            previous = stream
        stream = _export_block(g, blk, f"blocks.{i}", stream, cfg.embed_dim, N)
    _export_head(g, model, cfg, stream, N, n_keep)
    metadata = {
        "format": "nmc-deploy-graph", "format_version": 1, "model": "spikformer",
        "dt": DT, "integrator": "forward-euler", "reset": "zero", "threshold_comparison": ">=",
        "time_steps": cfg.time_steps,
        "layout": "images (C,H,W); tokens (C,N) with n = h*W + w",
        "encoding": "direct: the image is repeated at every time step",
        "extensions": ["SpikingSelfAttention"] + (["TokenSelect"] if cfg.token_blocks else []),
        "source": "nmc-deploy",
        "config": _json_safe(cfg.to_dict()),
        **{k: v for k, v in meta.items() if v is not None},
    }
    return Graph(nodes=g.nodes, edges=tuple(g.edges), metadata=metadata)


def _json_safe(d):
    import json

    return json.dumps(d)
