"""A graph of named IR nodes joined by edges; fan-in into a node sums its inputs.

An edge is ``(source, target)`` where target may name a port as ``"node.port"`` (used by
multi-input extension nodes such as SpikingSelfAttention). Graphs are immutable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import GraphError
from .nodes import Input, Node, Output

__all__ = ["Graph", "topo_order", "split_port"]


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


def topo_order(graph: Graph) -> list[str]:
    """Node names with every source before its targets (Kahn); raises on cycles."""
    indeg = {n: 0 for n in graph.nodes}
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        node, _ = split_port(dst, graph.nodes)
        indeg[node] += 1
        succ[src].append(node)
    ready = [n for n in graph.nodes if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(graph.nodes):
        cyclic = sorted(set(graph.nodes) - set(order))
        raise GraphError(f"graph: cycle through {', '.join(cyclic[:5])}; recurrent graphs are "
                         "not supported by this compiler yet")
    return order
