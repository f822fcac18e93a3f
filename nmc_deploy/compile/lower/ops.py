"""Lowerings of the graph's input, its ops (spiking self-attention, token selection) and
its outputs (the host readout of an Integrator or the Output node)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...errors import LoweringError
from ...ir import Input, Integrator, Output, SpikingSelfAttention, TokenSelect
from ...program import CONST, INPUT, AttentionOp, FloatGroup, FloatTokenSelect, Readout
from ...program.shared_weights import as_csr, is_shared
from .context import LoweringContext, lowers
from .expr import LinearExpr, identity_expr, sum_exprs, uniform_value

__all__ = ["identity_source", "lower_input", "lower_attention", "lower_token_select",
           "lower_integrator", "lower_output"]


def identity_source(e: LinearExpr, where: str) -> str:
    """The one population ``e`` passes through unchanged (attention inputs must be spikes)."""
    if len(e.terms) == 1 and not np.any(e.bias):
        ((src, lag), m), = e.terms.items()
        if (lag == 0 and not is_shared(m) and m.shape[0] == m.shape[1] and
                (m != sp.identity(m.shape[0], format="csr")).nnz == 0):
            return src
    raise LoweringError(f"{where}: attention inputs must come straight from one spiking "
                        "population each, without weights or delays in between")


@lowers(Input)
def lower_input(ctx: LoweringContext, name: str, node: Input) -> LinearExpr:
    """The graded input: integers ``0..input_levels`` stand for ``0..1``."""
    ctx.input_shape = node.shape
    n = int(np.prod(node.shape))
    return LinearExpr({(INPUT, 0): sp.identity(n, format="csr") / ctx.input_levels},
                      np.zeros(n), name)


def _refuse_counts(ctx: LoweringContext, name: str, sources, why: str) -> None:
    """Multi-spike (count) populations may not feed an op whose bounds assume 0/1 spikes."""
    multi = [p.name for p in ctx.pops if p.name in set(sources) and p.multi_spike]
    if multi:
        raise LoweringError(f"{name}: input '{multi[0]}' emits several spikes per step "
                            f"(multi spike), but {why}; compile with --spikes single")


@lowers(SpikingSelfAttention)
def lower_attention(ctx: LoweringContext, name: str,
                    node: SpikingSelfAttention) -> LinearExpr:
    """An :class:`AttentionOp` reading q, k, v straight from spiking populations."""
    ports: dict[str, list] = {}
    for src, port in ctx.graph.predecessors(name):
        ports.setdefault(port, []).append(ctx.source_expr(src, name))
    missing = {"q", "k", "v"} - set(ports)
    if missing:
        raise LoweringError(f"{name}: attention port(s) {', '.join(sorted(missing))} "
                            "have no incoming edge")
    srcs = {p: identity_source(sum_exprs(ports[p], name), f"{name}.{p}") for p in "qkv"}
    if ctx.relays & set(srcs.values()):
        raise LoweringError(f"{name}: attention inputs must be spiking populations, "
                            "not low-rank relays")
    bad = [s for s in srcs.values() if s not in ctx.spiking]
    if bad:
        raise LoweringError(f"{name}: attention input '{bad[0]}' is not a spiking "
                            "population")
    _refuse_counts(ctx, name, srcs.values(), "the attention products count binary spikes")
    ctx.ops.append(AttentionOp(name=name, q=srcs["q"], k=srcs["k"], v=srcs["v"],
                               num_heads=node.num_heads, dim=node.dim, n_tokens=node.n_tokens))
    return identity_expr(name, node.dim * node.n_tokens, name, scale=node.scale)


@lowers(TokenSelect)
def lower_token_select(ctx: LoweringContext, name: str, node: TokenSelect) -> LinearExpr:
    """A :class:`FloatTokenSelect` over a sum of spike sources (its gated stream is a graded
    source)."""
    inp = ctx.summed_input(name, node)
    if np.any(inp.bias):
        raise LoweringError(f"{name}: the token selector's input has a constant term; "
                            "it must be a sum of spike sources")
    inputs = []
    for (src, lag), m in inp.terms.items():
        if (src in (INPUT, CONST) or src in ctx.relays or ctx.is_op(src) or lag or
                src in ctx.back_of or src in ctx.li_pops):
            raise LoweringError(f"{name}: the token selector may only read spiking "
                                "populations and earlier selectors, without delays")
        _refuse_counts(ctx, name, [src], "the token scores count binary spikes")
        inputs.append(FloatGroup(name=f"{src}->{name}", source=src, target=name,
                                 weight=as_csr(m), layer=name, kind="token_input"))
    if node.previous and not ctx.is_selector(node.previous):
        raise LoweringError(f"{name}: previous selector '{node.previous}' does not "
                            "come before it")
    ctx.selects.append(FloatTokenSelect(
        name=name, inputs=tuple(inputs), w1=np.asarray(node.w1), b1=np.asarray(node.b1),
        w2=np.asarray(node.w2), b2=np.asarray(node.b2), dim=node.dim,
        n_tokens=node.n_tokens, n_keep=node.n_keep, previous=node.previous))
    if node.time_steps != ctx.time_steps:
        raise LoweringError(f"{name}: time_steps ({node.time_steps}) differs from the "
                            f"graph's ({ctx.time_steps})")
    return identity_expr(name, node.dim * node.n_tokens, name)


@lowers(Integrator)
def lower_integrator(ctx: LoweringContext, name: str, node: Integrator) -> LinearExpr:
    """The host readout, summed over the steps (NIR ``I`` integrates ``r dt x``)."""
    inp = ctx.summed_input(name, node)
    r = uniform_value(node.r, "r", name)
    ctx.readout = Readout(weights=ctx.readout_weights(inp, name, voltages=False),
                          bias=inp.bias, scale=r * ctx.timing.dt, num_outputs=inp.size,
                          cumulative=True)
    return inp


@lowers(Output)
def lower_output(ctx: LoweringContext, name: str, node: Output) -> None:
    """The host readout of sources read directly: spikes (counts) or LI voltages (unless an
    Integrator already made one)."""
    inp = ctx.summed_input(name, node)
    if ctx.readout is None:
        ctx.readout = Readout(weights=ctx.readout_weights(inp, name, voltages=True),
                              bias=inp.bias, scale=1.0, num_outputs=inp.size)
    return None
