"""Lowerings of the neuron nodes: each becomes one population with one synapse group per
(source, lag) of its input. The decay, gain and leak of every neuron type, with
``k(tau) = dt/tau`` ("forward-euler") or ``1 - exp(-dt/tau)`` ("exact"), are tabled in the
docstring of :mod:`nmc_deploy.compile.lower`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from ...errors import GraphError, LoweringError
from ...ir import IF, LI, LIF, CubaLI, CubaLIF, Node, Threshold
from ...ir.conventions import RESETS, normalize_spike_fn, set_by_argument, v_min_of
from ...program import LI as LI_KIND
from .context import LoweringContext, lowers
from .expr import LinearExpr, decay_factor, flat, per_neuron, uniform_value

__all__ = ["RESET_NODES", "spiking_params", "same_step_reset", "add_delayed_subtract", "taus",
           "lower_lif", "lower_if", "lower_cuba",
           "lower_li", "lower_threshold"]

RESET_NODES = (LIF, IF, CubaLIF)  # spiking nodes whose reset the timing (or node) decides


def spiking_params(ctx: LoweringContext, name: str, node: Node) -> tuple:
    """``(v_threshold, threshold_ge, reset, rule)`` of a spiking node: node metadata
    "threshold_comparison", "reset", "spike_fn", "max_spikes" and "min_v_mem" override the
    graph's timing. ``rule``: the population's ``max_spikes`` (1: one spike per step; None:
    floor(v/theta), no limit) and ``v_min`` (None, a float or per neuron)."""
    graph_ge = ctx.timing.threshold_comparison == ">="
    ge = str(node.metadata.get("threshold_comparison", ">=" if graph_ge else ">")) == ">="
    reset = str(node.metadata.get("reset", ctx.timing.reset))
    if reset not in RESETS:
        raise LoweringError(f"{name}: reset '{reset}' is not one of {', '.join(RESETS)}")
    if reset.startswith("zero") and np.any(np.asarray(node.v_reset) != 0):
        raise LoweringError(f"{name}: v_reset must be 0 (Loihi resets to zero; or use "
                            "the reset \"subtract\")")
    v_th = per_neuron(node.v_threshold)
    md = dict(node.metadata)
    for key, drop in (("spike_fn", ("spike_fn", "max_spikes")), ("min_v_mem", ("min_v_mem",))):
        if set_by_argument(ctx.timing, key):  # --spikes / --v-min win over the node's own
            md = {k: v for k, v in md.items() if k not in drop}
    try:
        t = ctx.timing if not {"spike_fn", "max_spikes", "min_v_mem"} & set(md) else \
            node_timing(ctx.timing, md)
    except GraphError as exc:
        raise LoweringError(f"{name}: {str(exc).removeprefix('timing: ')}") from None
    v_min = v_min_of(t.min_v_mem, np.asarray(v_th, np.float64), isinstance(node, IF))
    return v_th, ge, reset, {"max_spikes": t.max_spikes, "v_min": v_min}


def node_timing(timing, md: dict):
    """``timing`` with a node's own "spike_fn", "max_spikes", "min_v_mem" metadata."""
    fn = normalize_spike_fn(md.get("spike_fn", timing.spike_fn))
    cap = md.get("max_spikes", timing.max_spikes if timing.spike_fn == "multi" else None)
    return dataclasses.replace(timing, spike_fn=fn, max_spikes=None if cap is None else
                               int(cap), min_v_mem=md.get("min_v_mem", timing.min_v_mem))


def same_step_reset(ctx: LoweringContext, name: str, node: Node, reset: str) -> str:
    """The population's own (same-step) reset for ``reset``; a delayed reset Loihi cannot
    express is refused by name (see :class:`~nmc_deploy.ir.conventions.Timing`)."""
    if reset == "zero-delayed":
        if isinstance(node, CubaLIF) or name in ctx.in_cycle:
            what = "CubaLIF (snnTorch Synaptic/RSynaptic)" if isinstance(node, CubaLIF) \
                else "recurrent LIF (snnTorch RLeaky)"
            raise LoweringError(
                f"{name}: reset 'zero-delayed' on a {what} sets v to 0 in the step after each "
                "spike (a one-step refractory period) that Loihi's LIF cannot express; train "
                "with reset_mechanism='subtract' (compile without --reset) or reset_delay=False "
                "(--reset zero; snnTorch 1.0.0's RSynaptic ignores it)")
        return "zero"  # Leaky: v_k = alpha (1 - z_{k-1}) v_{k-1} + ... is the same-step reset
    return reset.removesuffix("-delayed")


def add_delayed_subtract(ctx: LoweringContext, name: str, reset: str, alpha, v_th,
                         alpha_syn=None) -> None:
    """For reset "subtract-delayed" (snnTorch reset_delay=True): the one-step
    self-connection ``-(1 - alpha) theta`` that turns the same-step subtraction (decayed by
    alpha once) into snnTorch's undecayed subtraction of the previous spike's threshold;
    through a current (CubaLIF) a lag-2 term ``-alpha_syn`` times it cancels the current's
    decay, so the voltage receives exactly ``-(1 - alpha) theta z_{k-1}``."""
    if reset != "subtract-delayed":
        return
    size = np.size(v_th) if np.ndim(v_th) else None
    pop = next(p for p in ctx.pops if p.name == name)
    n = pop.size if size is None else size
    c = -(1.0 - np.broadcast_to(np.asarray(alpha, np.float64), (n,))) * \
        np.broadcast_to(np.asarray(v_th, np.float64), (n,))
    if not np.any(c):
        return  # IF (alpha = 1): the same-step subtraction is already exact
    ctx.add_group(name, name, sp.diags(c, format="csr"), 1, name)
    if alpha_syn is not None:
        a_syn = np.broadcast_to(np.asarray(alpha_syn, np.float64), (n,))
        ctx.add_group(name, name, sp.diags(-a_syn * c, format="csr"), 2, name)


def taus(ctx: LoweringContext, name: str, node: Node, *fields: str) -> list:
    """The node's time constants in seconds (times the timing's ``tau_scale``), checked: a
    forward-Euler decay ``1 - dt/tau`` must not be negative."""
    out = []
    for field in fields:
        tau = per_neuron(np.asarray(getattr(node, field), np.float64) * ctx.timing.tau_scale)
        t_min = float(np.min(tau))
        if ctx.timing.integrator == "forward-euler" and t_min < ctx.timing.dt:
            norse = "norse" in ctx.timing.source and ctx.timing.tau_scale == 1.0
            hint = ("norse 1.1.0 writes tau = dt/tau_mem_inv: use --convention norse-1.1 "
                    "(else give the right --dt)" if norse else
                    "give the --dt the tool used (or its --convention)")
            raise LoweringError(
                f"{name}: {field} ({t_min:.3g} s) is shorter than dt ({ctx.timing.dt:g} s), a "
                f"negative forward-Euler decay 1 - dt/tau; {hint}")
        out.append(tau)
    return out


@lowers(LIF)
def lower_lif(ctx: LoweringContext, name: str, node: LIF) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    dt, integrator = ctx.timing.dt, ctx.timing.integrator
    tau, = taus(ctx, name, node, "tau")  # per-neuron values: sLIF (issue 3)
    r = per_neuron(node.r)
    v_th, ge, reset, rule = spiking_params(ctx, name, node)
    if integrator == "forward-euler":  # the historical form, bit for bit
        alpha, gain = 1.0 - dt / tau, r * dt / tau
        leak = np.asarray(node.v_leak, np.float64).ravel() * dt / tau
    else:
        k = decay_factor(tau, dt, integrator)
        alpha, gain = 1.0 - k, r * k
        leak = np.asarray(node.v_leak, np.float64).ravel() * k
        if integrator == "rockpool":
            gain = per_neuron(r * dt / (np.asarray(tau) * alpha))
    out = ctx.add_population(name, "lif", node.output_shape, inp, alpha, gain, v_th, ge, leak,
                             reset=same_step_reset(ctx, name, node, reset), **rule)
    add_delayed_subtract(ctx, name, reset, alpha, v_th)
    return out


@lowers(IF)
def lower_if(ctx: LoweringContext, name: str, node: IF) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    v_th, ge, reset, rule = spiking_params(ctx, name, node)
    return ctx.add_population(name, "lif", node.output_shape, inp, 1.0,
                              per_neuron(node.r) * ctx.timing.dt, v_th, ge, 0.0,
                              reset=same_step_reset(ctx, name, node, reset), **rule)


@lowers(CubaLIF, CubaLI)
def lower_cuba(ctx: LoweringContext, name: str, node: CubaLIF | CubaLI) -> LinearExpr:
    """CubaLIF (spiking) and CubaLI (its voltage is an output): a current kept by
    ``alpha_syn`` feeding the voltage."""
    inp = ctx.summed_input(name, node)
    dt, integrator = ctx.timing.dt, ctx.timing.integrator
    size = int(np.prod(node.output_shape))
    tau_syn, tau_mem = taus(ctx, name, node, "tau_syn", "tau_mem")
    k_syn = flat(decay_factor(tau_syn, dt, integrator), size)
    k_mem = flat(decay_factor(tau_mem, dt, integrator), size)
    gain = per_neuron(flat(node.w_in, size) * k_syn * flat(node.r, size) * k_mem)
    if integrator == "rockpool":  # I_k = a_syn (I + w_in x), v_k = a v + r dt/(tau a) I_k
        gain = per_neuron(flat(node.w_in, size) * (1.0 - k_syn) * flat(node.r, size) * dt /
                          (flat(tau_mem, size) * (1.0 - k_mem)))
    leak = flat(node.v_leak, size) * k_mem
    alpha_syn = per_neuron(1.0 - k_syn)
    alpha = per_neuron(1.0 - k_mem)
    if np.any(np.asarray(alpha_syn) == 0):
        raise LoweringError(f"{name}: tau_syn equals dt (the current would not be kept "
                            "at all); use an LIF/LI node instead")
    if isinstance(node, CubaLIF):
        v_th, ge, reset, rule = spiking_params(ctx, name, node)
        out = ctx.add_population(name, "lif", node.output_shape, inp, alpha, gain, v_th, ge,
                                 leak, alpha_syn=alpha_syn,
                                 reset=same_step_reset(ctx, name, node, reset), **rule)
        add_delayed_subtract(ctx, name, reset, alpha, v_th, alpha_syn)
        return out
    return ctx.add_population(name, LI_KIND, node.output_shape, inp, alpha, gain, 0.0, False,
                              leak, alpha_syn=alpha_syn)


@lowers(LI)
def lower_li(ctx: LoweringContext, name: str, node: LI) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    tau, = taus(ctx, name, node, "tau")
    k = decay_factor(tau, ctx.timing.dt, ctx.timing.integrator)
    gain = per_neuron(node.r) * k
    if ctx.timing.integrator == "rockpool":  # v_k = a (v + x): gain a = r dt/tau
        gain = per_neuron(np.asarray(node.r, np.float64).ravel() * ctx.timing.dt /
                          np.asarray(tau).ravel())
    return ctx.add_population(name, LI_KIND, node.output_shape, inp, 1.0 - k, gain, 0.0, False,
                              np.asarray(node.v_leak, np.float64).ravel() * k)


@lowers(Threshold)
def lower_threshold(ctx: LoweringContext, name: str, node: Threshold) -> LinearExpr:
    inp = ctx.summed_input(name, node)
    v_th = uniform_value(node.threshold, "threshold", name)
    return ctx.add_population(name, "threshold", node.output_shape, inp, 0.0, 1.0, v_th, False,
                              0.0)
