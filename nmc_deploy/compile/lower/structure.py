"""Graph-level facts the lowering needs before it walks the nodes (pure functions).

Low-rank factor pairs, the recurrent cycles and their one-step placeholders, and which
neuron node each token selector gates. Nothing here modifies the graph.
"""
from __future__ import annotations

from ...errors import LoweringError
from ...ir import (IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten,
                   Graph, Scale, SumPool2d, Threshold, TokenSelect)
from ...ir.graph import split_port

__all__ = ["LOW_RANK_ROLE", "NEURON_NODES", "low_rank_down_nodes", "check_cycles", "cycle_neurons",
           "recurrence_placeholders", "token_gates"]

LOW_RANK_ROLE = "low-rank factor"  # node metadata "role" the exporter gives both factors
NEURON_NODES = (LIF, IF, CubaLIF, LI, CubaLI, Threshold)  # each becomes one population
_CYCLE_OK = (Affine, Conv1d, Conv2d, Scale, SumPool2d, AvgPool2d, Flatten, Delay)


def low_rank_down_nodes(graph: Graph) -> list[str]:
    """Names of the first factor of each low-rank pair: a linear node with role
    "low-rank factor" whose every successor is a linear node with that role too."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        succ[src].append(split_port(dst, graph.nodes)[0])

    def factor(name):
        node = graph.nodes[name]
        return (isinstance(node, (Conv1d, Affine)) and
                dict(node.metadata).get("role") == LOW_RANK_ROLE)

    return [n for n in graph.nodes
            if factor(n) and succ[n] and all(factor(m) for m in succ[n])]


def _reach(start: str, nbrs: dict) -> set:
    seen, todo = {start}, [start]
    while todo:
        for m in nbrs[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _cycle_text(src: str, dst: str, body: set, succ: dict) -> str:
    """``"dst -> ... -> src -> dst"``: the shortest path from ``dst`` to ``src`` in ``body``."""
    path, prev, todo = [], {dst: None}, [dst]
    while todo and src not in prev:
        n = todo.pop(0)
        for m in succ[n]:
            if m in body and m not in prev:
                prev[m] = n
                todo.append(m)
    n = src
    while n is not None:
        path.append(n)
        n = prev.get(n)
    return " -> ".join(path[::-1] + [dst])


def check_cycles(graph: Graph, back: list, relay_nodes: set) -> None:
    """Each recurrent cycle holds exactly one neuron population plus linear nodes/Delays."""
    succ, pred = _forward_links(graph, back)
    for src, dst_end in back:
        dst = split_port(dst_end, graph.nodes)[0]
        body = _reach(dst, succ) & _reach(src, pred)
        cycle = _cycle_text(src, dst, body, succ)
        neurons = [n for n in graph.nodes
                   if n in body and isinstance(graph.nodes[n], NEURON_NODES)]
        others = [n for n in graph.nodes if n in body and n not in neurons and
                  (not isinstance(graph.nodes[n], _CYCLE_OK) or n in relay_nodes)]
        if others:
            n = others[0]
            what = "low-rank relay" if n in relay_nodes else f"{type(graph.nodes[n]).__name__} node"
            raise LoweringError(f"recurrent cycle {cycle}: contains {what} '{n}'; a cycle may "
                                "only hold one neuron population plus linear nodes and Delays")
        if len(neurons) != 1:
            if not neurons:
                raise LoweringError(f"recurrent cycle {cycle}: has no neuron (a loop of linear "
                                    "nodes); it cannot be deployed")
            raise LoweringError(f"recurrent cycle {cycle}: passes through {len(neurons)} neuron "
                                f"populations ({', '.join(neurons)}); only a population's "
                                "self-recurrence through linear nodes keeps NIR's one-step "
                                "delay in the pipelined schedule")


def _forward_links(graph: Graph, back: list) -> tuple[dict, dict]:
    back_set = set(back)
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    pred: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for edge in graph.edges:
        if edge in back_set:
            continue
        node = split_port(edge[1], graph.nodes)[0]
        succ[edge[0]].append(node)
        pred[node].append(edge[0])
    return succ, pred


def cycle_neurons(graph: Graph, back: list) -> set[str]:
    """The neuron nodes on a recurrent cycle (closed by one of the back edges ``back``)."""
    succ, pred = _forward_links(graph, back)
    found: set[str] = set()
    for src, dst_end in back:
        dst = split_port(dst_end, graph.nodes)[0]
        body = _reach(dst, succ) & _reach(src, pred)
        found |= {n for n in body if isinstance(graph.nodes[n], NEURON_NODES)}
    return found


def recurrence_placeholders(graph: Graph, back: list) -> tuple[dict, dict]:
    """``(back_of, back_into)`` of the recurrent edges ``back``: placeholder source name ->
    the back edge's source node, and (source, target node) -> placeholder."""
    back_of: dict[str, str] = {}
    back_into: dict[tuple[str, str], str] = {}
    for src, dst_end in back:
        dst = split_port(dst_end, graph.nodes)[0]
        ph = f"<{src} -> {dst_end}>"
        back_of[ph] = src
        back_into[(src, dst)] = ph
    return back_of, back_into


def token_gates(graph: Graph) -> dict[str, str]:
    """Gated neuron node -> its token selector, with the gated nodes' layout checked."""
    gate_of: dict[str, str] = {}
    for sel_name, sel in graph.nodes.items():
        if isinstance(sel, TokenSelect):
            for g in sel.gates:
                if g not in graph.nodes:
                    raise LoweringError(f"{sel_name}: gated node '{g}' is not in the graph")
                shape = tuple(graph.nodes[g].output_shape)
                if len(shape) != 2 or shape[1] != sel.n_tokens:
                    raise LoweringError(f"{sel_name}: gated node '{g}' has shape {shape}; "
                                        f"gated nodes need the (C, {sel.n_tokens}) token layout")
                gate_of[g] = sel_name
    return gate_of
