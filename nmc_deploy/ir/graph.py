"""A graph of named IR nodes joined by edges; fan-in into a node sums its inputs.

An edge is ``(source, target)`` where target may name a port as ``"node.port"`` (used by
multi-input extension nodes such as SpikingSelfAttention). Graphs are immutable. Cycles are
allowed: an edge that closes one (:func:`back_edges`) carries a one-step delay (NIR).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import GraphError
from .nodes import Input, Node, Output

__all__ = ["Graph", "topo_order", "back_edges", "back_edge_indices", "split_port"]


def split_port(endpoint: str, nodes: Mapping[str, Node]) -> tuple[str, str]:
    """``"attn.q"`` -> ``("attn", "q")`` when ``attn`` is a node; otherwise ``(endpoint, "input")``."""
    if endpoint in nodes:
        return endpoint, "input"
    head, _, port = endpoint.rpartition(".")
    if head in nodes:
        return head, port
    return endpoint, "input"


@dataclass(frozen=True)
class Graph:
    """Named nodes plus edges; ``metadata`` carries dt, time steps, conventions, provenance."""

    nodes: Mapping[str, Node]
    edges: tuple[tuple[str, str], ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "nodes", dict(self.nodes))
        object.__setattr__(self, "edges", tuple((str(a), str(b)) for a, b in self.edges))
        object.__setattr__(self, "metadata", dict(self.metadata))
        self.validate()

    def validate(self) -> None:
        """Check edge endpoints and ports, duplicates, one Input and one Output."""
        seen = set()
        for src, dst in self.edges:
            if (src, dst) in seen:
                raise GraphError(f"edge {src} -> {dst}: duplicate edge")
            seen.add((src, dst))
            if src not in self.nodes:
                raise GraphError(f"edge {src} -> {dst}: source node '{src}' does not exist")
            name, port = split_port(dst, self.nodes)
            if name not in self.nodes:
                raise GraphError(f"edge {src} -> {dst}: target node '{name}' does not exist")
            if port not in self.nodes[name].input_ports:
                raise GraphError(f"edge {src} -> {dst}: node '{name}' has no input port '{port}' "
                                 f"(ports: {', '.join(self.nodes[name].input_ports)})")
        for kind in (Input, Output):
            found = [n for n, node in self.nodes.items() if isinstance(node, kind)]
            if len(found) != 1:
                raise GraphError(f"graph: needs exactly one {kind.__name__} node, found "
                                 f"{len(found)} ({', '.join(found) or 'none'})")

    @property
    def input_name(self) -> str:
        return next(n for n, node in self.nodes.items() if isinstance(node, Input))

    @property
    def output_name(self) -> str:
        return next(n for n, node in self.nodes.items() if isinstance(node, Output))

    def predecessors(self, name: str) -> list[tuple[str, str]]:
        """``[(source, port)]`` of the edges into node ``name``, in edge order."""
        out = []
        for src, dst in self.edges:
            node, port = split_port(dst, self.nodes)
            if node == name:
                out.append((src, port))
        return out


def back_edges(graph: Graph) -> list[tuple[str, str]]:
    """Edges that close a cycle (recurrent edges), in the order they are found.

    A depth-first search from the Input node (then from every node not yet reached, in node
    order), following each node's outgoing edges in edge order, marks every edge into a node
    still on the search path. Removing these edges leaves an acyclic graph. NIR/nirtorch
    semantics: such an edge carries a one-step delay (the target reads the source's output
    of step ``t - 1``, 0 at ``t = 0``). Acyclic graphs have none.
    """
    pairs = [(a, split_port(b, graph.nodes)[0]) for a, b in graph.edges]
    back = back_edge_indices(list(graph.nodes), pairs, [graph.input_name])
    return [e for i, e in enumerate(graph.edges) if i in back]


def back_edge_indices(names, pairs, roots) -> set[int]:
    """Indices of the edges ``pairs[i] = (source, target node)`` that close a cycle.

    Depth-first search from ``roots``, then from every unreached name in order, successors
    in edge order; an edge into a node still on the search path is a back edge. Shared by
    :func:`back_edges` and the NIR reader's shape inference, so both agree.
    """
    succ: dict[str, list[tuple[str, int]]] = {n: [] for n in names}
    for i, (a, b) in enumerate(pairs):
        succ[a].append((b, i))
    state: dict[str, int] = {}  # 1: on the search path, 2: finished
    back: set[int] = set()
    for root in list(roots) + list(names):
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                continue
            target, i = nxt
            if state.get(target) == 1:
                back.add(i)
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(succ[target])))
    return back


def topo_order(graph: Graph) -> list[str]:
    """Node names with every source before its targets (Kahn), ignoring the recurrent edges
    of :func:`back_edges`; for an acyclic graph this is the plain topological order."""
    back = set(back_edges(graph))
    indeg = {n: 0 for n in graph.nodes}
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for edge in graph.edges:
        if edge in back:
            continue
        node, _ = split_port(edge[1], graph.nodes)
        indeg[node] += 1
        succ[edge[0]].append(node)
    ready = [n for n in graph.nodes if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(graph.nodes):  # cannot happen: back edges break every cycle
        cyclic = sorted(set(graph.nodes) - set(order))
        raise GraphError(f"graph: could not order the nodes {', '.join(cyclic[:5])}")
    return order
