"""Lowerings of the linear nodes: each composes into its input expression's matrices.

Conv2d, Conv1d, Affine, Scale, SumPool2d, AvgPool2d and Flatten multiply the expression
(exact zeros of pruned weights never become synapses). Convolutions and pools stay shared
(:class:`~nmc_deploy.program.shared_weights.ConvShared`, one kernel for every position;
a 1x1 convolution over tokens is a
:class:`~nmc_deploy.program.shared_weights.TokenShared` matrix), Affine and Scale are scipy
CSR; products the shared forms cannot express expand to CSR. A ``Delay`` of L steps
adds L to every lag. The first factor of a low-rank pair deployed as a relay
(``lower_graph(..., low_rank="relay")``) becomes a relay population instead.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...ir import Affine, AvgPool2d, Conv1d, Conv2d, Delay, Flatten, Scale, SumPool2d
from ...program.shared_weights import ConvShared, TokenShared
from .context import LoweringContext, lowers
from .expr import LinearExpr, delay_steps

__all__ = ["conv_weights", "lower_conv2d", "lower_conv1d", "lower_affine", "lower_scale", "lower_sumpool2d",
           "lower_avgpool2d", "lower_flatten", "lower_delay"]


def _pair(v) -> tuple[int, int]:
    v = np.atleast_1d(np.asarray(v, np.int64))
    return (int(v[0]), int(v[-1]))


def conv_weights(weight, input_hw, stride, padding, dilation, groups):
    """Shared weights of a 2-d convolution (kernel (C_out, C_in/groups, kH, kW)) on a
    (C_in, H, W) input: a :class:`TokenShared` matrix for a 1x1 kernel with unit stride,
    no padding and one group (a token-parallel linear layer over the H*W positions), else
    a :class:`ConvShared` kernel."""
    weight = np.asarray(weight, np.float64)
    co, cig, kh, kw = weight.shape
    H, W = (int(v) for v in input_hw)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0) and int(groups) == 1:
        return TokenShared(sp.csr_matrix(weight[:, :, 0, 0]), H * W)
    return ConvShared(weight, (cig * int(groups), H, W), stride, padding, dilation,
                      int(groups))


def _pool_weights(node, value: float) -> ConvShared:
    """A sum (``value`` 1) or average pool as a depthwise shared kernel."""
    c = int(node.input_chw[0])
    kh, kw = (int(v) for v in node.kernel_size)
    return ConvShared(np.full((c, 1, kh, kw), value), tuple(int(v) for v in node.input_chw),
                      _pair(node.stride), _pair(node.padding), (1, 1), c)


def _relay_if_factor(ctx: LoweringContext, name: str, out: LinearExpr) -> LinearExpr:
    """``out``, or a relay population emitting it when ``name`` is a relay down factor."""
    return ctx.add_relay(name, out) if name in ctx.relay_nodes else out


@lowers(Conv2d)
def lower_conv2d(ctx: LoweringContext, name: str, node: Conv2d) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    m = conv_weights(node.weight, node.input_hw, node.stride, node.padding, node.dilation,
                     node.groups)
    hw = node.output_shape[1] * node.output_shape[2]
    return inp.apply(m, np.repeat(np.asarray(node.bias, np.float64), hw), name)


@lowers(Conv1d)
def lower_conv1d(ctx: LoweringContext, name: str, node: Conv1d) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    m = conv_weights(np.asarray(node.weight)[:, :, None, :], (1, node.input_length),
                     (1, node.stride), (0, node.padding), (1, node.dilation), node.groups)
    out = inp.apply(m, np.repeat(np.asarray(node.bias, np.float64), node.output_shape[1]), name)
    return _relay_if_factor(ctx, name, out)


@lowers(Affine)
def lower_affine(ctx: LoweringContext, name: str, node: Affine) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    out = inp.apply(sp.csr_matrix(np.asarray(node.weight, np.float64)),
                    np.asarray(node.bias, np.float64), name)
    return _relay_if_factor(ctx, name, out)


@lowers(Scale)
def lower_scale(ctx: LoweringContext, name: str, node: Scale) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    s = np.asarray(node.scale, np.float64).ravel()
    return inp if np.all(s == 1) else inp.apply(sp.diags(s), 0.0, name)


@lowers(SumPool2d)
def lower_sumpool2d(ctx: LoweringContext, name: str, node: SumPool2d) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    return inp.apply(_pool_weights(node, 1.0), 0.0, name)


@lowers(AvgPool2d)
def lower_avgpool2d(ctx: LoweringContext, name: str, node: AvgPool2d) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    kh, kw = node.kernel_size
    return inp.apply(_pool_weights(node, 1.0 / float(kh * kw)), 0.0, name)


@lowers(Flatten)
def lower_flatten(ctx: LoweringContext, name: str, node: Flatten) -> LinearExpr:
    return ctx.summed_input(name, node)


@lowers(Delay)
def lower_delay(ctx: LoweringContext, name: str, node: Delay) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    lag = delay_steps(node.delay, ctx.timing.dt, name)
    return inp.delayed(lag) if lag else inp
