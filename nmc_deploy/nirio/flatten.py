"""Flattening of nested NIR graphs into one level of ``g/n`` names (and its naming rule).

Reading rule implemented here
-----------------------------
**Nested graphs are flattened.** Inner node ``n`` of subgraph node ``g`` becomes ``g/n``
("/" never collides with the ``"node.port"`` edge syntax); the subgraph's own Input and
Output nodes disappear: an edge into ``g`` goes to every successor of g's Input, an edge out
of ``g`` leaves from every predecessor of g's Output (``"g.name"`` picks one of several
Inputs/Outputs). Non-empty subgraph metadata goes to graph metadata
``nir_subgraph_metadata[g]``. Recurrent edges (cycles) are kept as ordinary edges. An edge
that occurs twice after flattening is an error (NIR would add the signal twice).
"""
from __future__ import annotations

from typing import Any

import nir  # noqa: E402  (nmc_deploy.nirio is the one door for nir)

from ..errors import GraphError
from .coerce import to_plain_graph_metadata

__all__ = ["SUBGRAPH_SEPARATOR", "flatten_nir"]

SUBGRAPH_SEPARATOR = "/"

_PASS = object()  # marks a subgraph's Input/Output node until edges are rewired through it


def _io_names(g, cls) -> list[str]:
    return [n for n, v in g.nodes.items() if isinstance(v, cls)]


def _resolve(endpoint: str, g, prefix: str, as_source: bool, edge_text: str) -> str:
    """Flat name of an edge endpoint of graph ``g`` (nodes of ``g`` are named prefix+name)."""
    endpoint = str(endpoint)
    if endpoint in g.nodes:
        name, port = endpoint, None
    else:
        head, _, port = endpoint.rpartition(".")
        if not head or head not in g.nodes:
            raise GraphError(f"edge {edge_text}: node '{prefix}{endpoint}' does not exist; every "
                             "edge must join two nodes of its graph")
        name = head
    node = g.nodes[name]
    if isinstance(node, nir.NIRGraph):
        ios = _io_names(node, nir.Output if as_source else nir.Input)
        what = "Output" if as_source else "Input"
        if port is not None:
            if port not in ios:
                raise GraphError(f"edge {edge_text}: subgraph '{prefix}{name}' has no {what} "
                                 f"node '{port}' ({what}s: {', '.join(ios) or 'none'})")
            inner = port
        elif len(ios) == 1:
            inner = ios[0]
        else:
            raise GraphError(f"edge {edge_text}: subgraph '{prefix}{name}' has {len(ios)} "
                             f"{what} nodes ({', '.join(ios)}); address one as "
                             f"'{name}.<{what.lower()} name>'")
        return f"{prefix}{name}{SUBGRAPH_SEPARATOR}{inner}"
    if as_source:
        if port not in (None, "output"):
            raise GraphError(f"edge {edge_text}: node '{prefix}{name}' has no output port "
                             f"'{port}'")
        return prefix + name
    return prefix + name + (f".{port}" if port is not None else "")


def _collect(g, prefix: str, top: bool, nodes: dict, edges: list, sub_md: dict) -> None:
    """Add the nodes and edges of ``g`` (and of its subgraphs) with flat names."""
    for name, node in g.nodes.items():
        full = prefix + str(name)
        if node is None:
            raise GraphError(f"node '{full}': is None, not a NIR node (norse 1.1.0 writes modules "
                             "it cannot export, e.g. Flatten, as None); export the graph again "
                             "with a standard node in its place")
        if isinstance(node, nir.NIRGraph):
            for cls, what in ((nir.Input, "Input"), (nir.Output, "Output")):
                if not _io_names(node, cls):
                    raise GraphError(f"node '{full}': subgraph without {what} node; a nested "
                                     f"NIRGraph needs Input and Output nodes to connect it")
            if node.metadata:
                sub_md[full] = to_plain_graph_metadata(dict(node.metadata))
            _collect(node, full + SUBGRAPH_SEPARATOR, False, nodes, edges, sub_md)
        elif not top and isinstance(node, (nir.Input, nir.Output)):
            nodes[full] = _PASS
        else:
            nodes[full] = node
    for a, b in g.edges:
        text = f"{prefix}{a} -> {prefix}{b}"
        edges.append((_resolve(a, g, prefix, True, text), _resolve(b, g, prefix, False, text)))


def flatten_nir(g) -> tuple[dict, list[tuple[str, str]], dict]:
    """(nodes, edges, subgraph metadata) of ``nir.NIRGraph`` ``g`` with nested graphs flattened.

    ``g`` is not modified.
    """
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    sub_md: dict[str, dict] = {}
    _collect(g, "", True, nodes, edges, sub_md)
    for p in [n for n, v in nodes.items() if v is _PASS]:
        preds = [a for a, b in edges if b == p and a != p]
        succs = [b for a, b in edges if a == p and b != p]
        edges = [(a, b) for a, b in edges if a != p and b != p]
        edges += [(x, y) for x in preds for y in succs]
        del nodes[p]
    seen = set()
    for e in edges:
        if e in seen:
            raise GraphError(f"edge {e[0]} -> {e[1]}: occurs twice (after flattening nested "
                             "subgraphs); NIR would add the signal twice, which this reader "
                             "does not support")
        seen.add(e)
    return nodes, edges, sub_md
