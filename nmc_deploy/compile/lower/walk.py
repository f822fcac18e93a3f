"""``lower_graph``: walk the graph in topological order and dispatch each node to its
registered lowering function (:mod:`.context`); the discretisation comes as a typed
:class:`~nmc_deploy.ir.conventions.Timing`."""
from __future__ import annotations

from ...errors import GraphError, LoweringError
from ...ir import Graph, Input, topo_order
from ...ir.conventions import (INTEGRATORS, NIR_DEFAULTS, RESETS, Timing, apply_timing,
                              normalize_spike_fn)
from ...ir.graph import back_edges
from ...program import LOW_RANK_MODES, RESIDUAL_MODES, FloatProgram
from . import linear, neurons, ops  # noqa: F401  (registers the lowering functions)
from .context import LoweringContext, lowering_of
from .neurons import RESET_NODES
from .structure import (check_cycles, cycle_neurons, low_rank_down_nodes,
                        recurrence_placeholders, token_gates)

__all__ = ["lower_graph", "graph_timing"]


def _graph_reset(graph: Graph, md: dict) -> str:
    """The graph metadata's reset, checked where a node uses it (NIR default "zero")."""
    reset = str(md.get("reset", NIR_DEFAULTS["reset"]))
    if reset in RESETS:
        return reset
    for name in topo_order(graph):
        node = graph.nodes[name]
        if isinstance(node, RESET_NODES) and "reset" not in node.metadata:
            raise LoweringError(f"{name}: reset '{reset}' is not one of {', '.join(RESETS)}")
    return NIR_DEFAULTS["reset"]  # no node uses the graph's reset


def graph_timing(graph: Graph) -> Timing:
    """The :class:`Timing` a graph's metadata gives ("dt", "integrator", "reset",
    "threshold_comparison"; missing keys take :data:`~nmc_deploy.ir.conventions.NIR_DEFAULTS`).

    Values are read as written (no aliases, unlike :func:`~nmc_deploy.ir.conventions.
    resolve_timing`): a threshold comparison other than ">=" is ">". Raises
    :class:`LoweringError` without dt or with an unknown integrator, and for an unknown
    reset naming the first spiking node that would use it.
    """
    md = dict(graph.metadata)
    dt = md.get("dt")
    if dt is None:
        raise LoweringError("graph: no 'dt' in the graph metadata; give the time step "
                            "(NIR does not carry one)")
    integrator = str(md.get("integrator", NIR_DEFAULTS["integrator"]))
    if integrator not in INTEGRATORS:
        raise LoweringError(f"graph: integrator '{integrator}' is not one of "
                            f"{', '.join(INTEGRATORS)}")
    comparison = str(md.get("threshold_comparison", NIR_DEFAULTS["threshold_comparison"]))
    spike_fn = normalize_spike_fn(md.get("spike_fn", "single"))
    max_spikes = md.get("max_spikes")
    try:
        return Timing(dt=float(dt), integrator=integrator, reset=_graph_reset(graph, md),
                      threshold_comparison=">=" if comparison == ">=" else ">",
                      source=str(md.get("timing_source", "graph metadata")),
                      tau_scale=float(md.get("tau_scale", 1.0)),
                      spike_fn=spike_fn, max_spikes=None if max_spikes is None else
                      int(max_spikes), min_v_mem=md.get("min_v_mem"),
                      spike_source=str(md.get("spike_source", "graph metadata")))
    except GraphError as exc:
        raise LoweringError(f"graph: {str(exc).removeprefix('timing: ')}") from None


def lower_graph(graph: Graph, *, timing: Timing | None = None, input_levels: int | None = None,
                low_rank: str = "fused", residual: str = "fan-in") -> FloatProgram:
    """Lower ``graph`` to a :class:`FloatProgram`; ``graph`` is not modified.

    Parameters
    ----------
    graph : Graph
        The graph IR (BatchNorm folded).
    timing : Timing, optional
        The discretisation (dt, integrator, reset, threshold comparison); the program's
        metadata records it as :func:`~nmc_deploy.ir.conventions.apply_timing` would.
        Default: the graph metadata's (:func:`graph_timing`).
    input_levels : int, optional
        The integer intensity that stands for 1.0 at the input (default: graph metadata
        "input_levels", else 1): the program is driven with integers ``0..input_levels``.
    low_rank : {"fused", "relay"}
        How low-rank factor pairs deploy (package docstring); recorded in the program
        metadata ("low_rank").
    residual : {"fan-in", "relay"}
        How a residual stream reaches the populations that read it (package docstring):
        one group per stream population, or one graded relay population per stream;
        recorded in the program metadata ("residual", and the relays' names in
        "residual_relays").
    """
    if low_rank not in LOW_RANK_MODES:
        raise LoweringError(f"graph: low_rank '{low_rank}' is not one of "
                            f"{', '.join(LOW_RANK_MODES)}")
    if residual not in RESIDUAL_MODES:
        raise LoweringError(f"graph: residual '{residual}' is not one of "
                            f"{', '.join(RESIDUAL_MODES)}")
    relay_nodes = set(low_rank_down_nodes(graph)) if low_rank == "relay" else set()
    if timing is None:
        timing = graph_timing(graph)
    else:
        graph = apply_timing(graph, timing)
    md = dict(graph.metadata)
    md["input_name"] = graph.input_name  # NIRData inputs are keyed to it
    levels = int(input_levels if input_levels is not None else md.get("input_levels", 1))
    back = back_edges(graph)
    check_cycles(graph, back, relay_nodes)
    back_of, back_into = recurrence_placeholders(graph, back)
    ctx = LoweringContext(graph, timing, input_levels=levels,
                          time_steps=int(md.get("time_steps", 1)), relay_nodes=relay_nodes,
                          back_of=back_of, back_into=back_into, gate_of=token_gates(graph),
                          residual=residual)
    ctx.in_cycle = cycle_neurons(graph, back)
    for name in topo_order(graph):
        node = graph.nodes[name]
        lower = lowering_of(type(node))
        if not isinstance(node, Input) and not graph.predecessors(name):
            raise LoweringError(f"{name}: node has no inputs")
        if lower is None:
            raise LoweringError(f"{name}: cannot lower node of type '{type(node).__name__}'")
        out = lower(ctx, name, node)
        if out is not None:
            ctx.exprs[name] = out
    if not ctx.pops:
        raise LoweringError("graph: no spiking neurons to place on cores")
    missing = set(ctx.gate_of) - ctx.spiking
    if missing:
        raise LoweringError(f"gated node(s) {', '.join(sorted(missing))} are not spiking "
                            "populations; a token selector can only gate LIF/Threshold nodes")
    ctx.close_recurrence()
    md["low_rank"] = low_rank
    md["residual"] = residual
    if ctx.stream_relays:
        md["residual_relays"] = sorted(ctx.stream_relays.values())
    return ctx.program(md)
