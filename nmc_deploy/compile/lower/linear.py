"""Lowerings of the linear nodes: each composes into its input expression's matrices.

Conv2d, Conv1d, Affine, Scale, SumPool2d, AvgPool2d and Flatten multiply the expression
(scipy CSR; exact zeros of pruned weights never become synapses); a ``Delay`` of L steps
adds L to every lag. The first factor of a low-rank pair deployed as a relay
(``lower_graph(..., low_rank="relay")``) becomes a relay population instead.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...ir import Affine, AvgPool2d, Conv1d, Conv2d, Delay, Flatten, Scale, SumPool2d
from ..matrices import conv1d_matrix, conv2d_matrix, sumpool2d_matrix
from .context import LoweringContext, lowers
from .expr import LinearExpr, delay_steps

__all__ = ["lower_conv2d", "lower_conv1d", "lower_affine", "lower_scale", "lower_sumpool2d",
           "lower_avgpool2d", "lower_flatten", "lower_delay"]


def _relay_if_factor(ctx: LoweringContext, name: str, out: LinearExpr) -> LinearExpr:
    """``out``, or a relay population emitting it when ``name`` is a relay down factor."""
    return ctx.add_relay(name, out) if name in ctx.relay_nodes else out


@lowers(Conv2d)
def lower_conv2d(ctx: LoweringContext, name: str, node: Conv2d) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    m = conv2d_matrix(node.weight, node.input_hw, node.stride, node.padding, node.dilation,
                      node.groups)
    hw = node.output_shape[1] * node.output_shape[2]
    return inp.apply(m, np.repeat(np.asarray(node.bias, np.float64), hw), name)


@lowers(Conv1d)
def lower_conv1d(ctx: LoweringContext, name: str, node: Conv1d) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    m = conv1d_matrix(node.weight, node.input_length, node.stride, node.padding, node.dilation,
                      node.groups)
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
    m = sumpool2d_matrix(node.input_chw, node.kernel_size, node.stride, node.padding)
    return inp.apply(m, 0.0, name)


@lowers(AvgPool2d)
def lower_avgpool2d(ctx: LoweringContext, name: str, node: AvgPool2d) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    m = sumpool2d_matrix(node.input_chw, node.kernel_size, node.stride, node.padding)
    kh, kw = node.kernel_size
    return inp.apply(m / float(kh * kw), 0.0, name)


@lowers(Flatten)
def lower_flatten(ctx: LoweringContext, name: str, node: Flatten) -> LinearExpr:
    return ctx.summed_input(name, node)


@lowers(Delay)
def lower_delay(ctx: LoweringContext, name: str, node: Delay) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    lag = delay_steps(node.delay, ctx.timing.dt, name)
    return inp.delayed(lag) if lag else inp
