"""Shape inference while reading a flat NIR graph: visiting order, edge checks, fallbacks.

Reading rules implemented here
------------------------------
* **Shapes are inferred** where NIR leaves them open (Conv1d/Conv2d ``input_shape``,
  SumPool2d/AvgPool2d input, Flatten ``input_type``; each node's reader in
  :mod:`~nmc_deploy.nirio.table` says how): nodes are visited in topological order ignoring
  recurrent edges (:func:`nmc_deploy.ir.graph.back_edges`' rule), a node's input shape is the
  output shape of its non-recurrent predecessors, which must agree; then every edge,
  recurrent ones included, must carry its target's input shape.
* **Readings of a graph** are tried in this order: exact shapes; exact with a leading batch
  dimension 1 stripped from the Input (only when an Input has one); lenient (a shape that
  differs only in layout, i.e. has the same number of elements, e.g. ``(1, C, H, W)`` params
  after a ``(C, H, W)`` conv, is accepted and elementwise parameters are reshaped to the
  incoming shape, metadata ``nir_param_shape`` keeping the file's shape); lenient with the
  batch dimension stripped. The first reading without a :class:`ShapeError` wins; when none
  works the lenient reading's error is reported.
"""
from __future__ import annotations

import heapq
from typing import Callable

import numpy as np

from ..errors import GraphError
from ..ir import nodes as ir
from ..ir.graph import back_edge_indices, split_port
from .coerce import format_shape, kind_of, to_shape

__all__ = ["ShapeError", "Incoming", "size_of", "fits", "mismatch", "order_nodes",
           "infer_nodes", "infer_nodes_with_fallbacks"]

#: The shape arriving at one input port and the names of the nodes that send it.
Incoming = tuple[tuple[int, ...], list[str]]
#: Builds the IR node of one NIR node: (name, NIR node, incoming by port, lenient, strip_input).
NodeBuilder = Callable[[str, object, dict, bool, bool], ir.Node]


class ShapeError(GraphError):
    """Inconsistent or unknown shapes (the reader retries other readings of the graph)."""


def size_of(shape) -> int:
    """Number of elements of ``shape`` (-1 when unknown)."""
    return int(np.prod(shape)) if shape is not None else -1


def fits(got, expected, lenient: bool) -> bool:
    """Whether shape ``got`` can feed ``expected`` (same elements suffice when lenient)."""
    return tuple(got) == tuple(expected) or (lenient and size_of(got) == size_of(expected))


def mismatch(name, kind, port, incoming: Incoming, expected) -> ShapeError:
    """The error for edges into ``name.port`` that carry a shape ``name`` does not take."""
    shape, srcs = incoming
    src = ", ".join(srcs)
    where = f"{name}.{port}" if port != "input" else name
    return ShapeError(f"node '{name}' ({kind}): inconsistent shapes: edge {src} -> {where} "
                      f"carries {format_shape(shape)} but {name} takes {format_shape(expected)}; "
                      "fix the shapes in the exporting tool")


def order_nodes(nodes: dict, edges: list[tuple[str, str]]) -> tuple[list[str], set[int]]:
    """Topological order ignoring recurrent edges, and the indices of the recurrent edges.

    Recurrent edges are found as :func:`nmc_deploy.ir.graph.back_edges` finds them: depth-first
    from the Input node, then from every unreached node in node order, successors in edge order.
    """
    inputs = [n for n, v in nodes.items() if kind_of(v) == "Input"]
    pairs = [(a, split_port(b, nodes)[0]) for a, b in edges]
    back = back_edge_indices(list(nodes), pairs, inputs)
    succ: dict[str, list[tuple[str, int]]] = {n: [] for n in nodes}
    for i, (a, b) in enumerate(pairs):
        succ[a].append((b, i))
    index = {n: k for k, n in enumerate(nodes)}
    indeg = {n: 0 for n in nodes}
    for i, (a, b) in enumerate(edges):
        if i not in back:
            indeg[split_port(b, nodes)[0]] += 1
    ready = [index[n] for n in nodes if indeg[n] == 0]
    heapq.heapify(ready)
    names = list(nodes)
    order = []
    while ready:
        n = names[heapq.heappop(ready)]
        order.append(n)
        for m, i in succ[n]:
            if i in back:
                continue
            indeg[m] -= 1
            if indeg[m] == 0:
                heapq.heappush(ready, index[m])
    return order, back


def _incoming(name: str, into: list[tuple[int, str, str]], back: set[int], nodes: dict,
              built: dict[str, ir.Node]) -> dict[str, Incoming]:
    """The shapes arriving at each port of ``name`` over its non-recurrent edges."""
    incoming: dict[str, Incoming] = {}
    for i, src, port in into:
        if i in back:
            continue
        shape = tuple(built[src].output_shape)
        if port in incoming and incoming[port][0] != shape:
            first = incoming[port]
            where = f"{name}.{port}" if port != "input" else name
            raise ShapeError(
                f"node '{name}' ({kind_of(nodes[name])}): inconsistent shapes: edge "
                f"{first[1][0]} -> {where} carries {format_shape(first[0])} but edge {src} -> "
                f"{where} carries {format_shape(shape)}; NIR sums the edges into a node, so "
                "they must carry one shape")
        incoming.setdefault(port, (shape, []))[1].append(src)
    return incoming


def infer_nodes(nodes: dict, edges: list[tuple[str, str]], build: NodeBuilder, lenient: bool,
                strip_input: bool) -> dict[str, ir.Node]:
    """The IR nodes of a flat NIR graph under one reading, built by ``build`` in order."""
    order, back = order_nodes(nodes, edges)
    into: dict[str, list[tuple[int, str, str]]] = {n: [] for n in nodes}
    for i, (a, b) in enumerate(edges):
        target, port = split_port(b, nodes)
        into[target].append((i, a, port))
    built: dict[str, ir.Node] = {}
    for name in order:
        incoming = _incoming(name, into[name], back, nodes, built)
        node = build(name, nodes[name], incoming, lenient, strip_input)
        for port, inc in incoming.items():
            if port not in node.input_ports:
                raise GraphError(f"edge {inc[1][0]} -> {name}.{port}: node '{name}' has no input "
                                 f"port '{port}' (ports: {', '.join(node.input_ports)})")
            if not fits(inc[0], node.input_shape, lenient):
                raise mismatch(name, kind_of(nodes[name]), port, inc, node.input_shape)
        built[name] = node
    for i in sorted(back):
        src, dst = edges[i]
        target, port = split_port(dst, nodes)
        got, expected = built[src].output_shape, built[target].input_shape
        if not fits(got, expected, lenient):
            raise mismatch(target, kind_of(nodes[target]), port, (got, [src]), expected)
    return built


def _has_batch_input(nodes: dict) -> bool:
    """Whether some Input is declared with a leading dimension 1 (and at least two dims)."""
    for v in nodes.values():
        if kind_of(v) == "Input":
            shape = to_shape(v.input_type.get("input"))
            if len(shape or ()) >= 2 and shape[0] == 1:
                return True
    return False


def infer_nodes_with_fallbacks(nodes: dict, edges: list[tuple[str, str]],
                               build: NodeBuilder) -> dict[str, ir.Node]:
    """The IR nodes of the first reading of the graph that has consistent shapes."""
    can_strip = _has_batch_input(nodes)
    attempts = [(False, False)] + ([(False, True)] if can_strip else []) + [(True, False)] \
        + ([(True, True)] if can_strip else [])
    report = None
    for lenient, strip in attempts:
        try:
            return infer_nodes(nodes, edges, build, lenient, strip)
        except ShapeError as exc:
            if (lenient, strip) == (True, False):
                report = exc
    raise GraphError(str(report)) from None
