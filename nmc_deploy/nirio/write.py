"""Graph IR -> ``nir.NIRGraph`` and NIR files (nesting ``g/n`` names back into subgraphs).

Writing rules
-------------
* Every node is converted by the node table (:func:`~nmc_deploy.nirio.table.node_to_nir`):
  standard NIR nodes wherever NIR has one, plus our extension nodes ``SpikingSelfAttention``
  and ``TokenSelect`` (schema: docs/nir-extensions.md).
* Graphs are built with ``type_check=False`` (edges into extension ports such as
  ``"attn.q"`` are not type-checkable in NIR 1.0.8). Metadata values that are None are
  dropped (NIR cannot store them).
* Files are gzip compressed, or not at all when a 0-d array is present (HDF5 cannot compress
  scalars), and written atomically.
* Names with "/" are nested back into ``NIRGraph`` subgraphs (with ``input``/``output``
  nodes) when that reproduces the same flat edges, so ``write_nir(read_nir(f))`` keeps the
  file's structure; graph metadata ``nir_subgraph_metadata[g]`` becomes subgraph ``g``'s
  metadata.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

import nir  # noqa: E402  (nmc_deploy.nirio is the one door for nir)

from ..errors import GraphError
from ..fileio import atomic_path
from ..ir.graph import Graph, split_port
from .coerce import to_array, to_plain, to_storable_metadata
from .flatten import SUBGRAPH_SEPARATOR, flatten_nir
from .table import node_to_nir

__all__ = ["to_nir", "write_nir", "has_scalar_array", "write_nir_graph"]


def _unique(name: str, taken) -> str:
    out, i = name, 0
    while out in taken:
        i += 1
        out = f"{name}_{i}"
    return out


def _unit(name: str) -> str:
    """The name at this nesting level: a plain node, or the group ``g`` of ``g/...``."""
    head, sep, _ = name.partition(SUBGRAPH_SEPARATOR)
    return head if sep else name


def _split_level(nodes: dict, edges: list[tuple[str, str]]):
    """Split one level into its plain nodes, its groups and the edges at and inside groups.

    Returns ``(level_nodes, groups, inner_edges, into, out_of, level_edges)``: ``into[g]``
    lists the targets inside ``g`` fed from outside, ``out_of[g]`` the sources inside ``g``
    read outside, in order of first use.
    """
    level_nodes: dict[str, Any] = {}
    groups: dict[str, dict] = {}
    for name, node in nodes.items():
        u = _unit(name)
        if u == name:
            level_nodes[name] = node
        else:
            groups.setdefault(u, {})[name[len(u) + 1:]] = node
    inner_edges: dict[str, list] = {g: [] for g in groups}
    into: dict[str, list[str]] = {g: [] for g in groups}
    out_of: dict[str, list[str]] = {g: [] for g in groups}
    level_edges: list[tuple[str, str]] = []
    for src, dst in edges:
        dst_node, port = split_port(dst, nodes)
        us, ud = _unit(src), _unit(dst_node)
        if us == ud and us in groups:
            inner_edges[us].append((src[len(us) + 1:], dst[len(us) + 1:]))
            continue
        a, b = src, dst
        if us in groups:
            inner = src[len(us) + 1:]
            if inner not in out_of[us]:
                out_of[us].append(inner)
            a = us
        if ud in groups:
            inner = dst[len(ud) + 1:]
            if inner not in into[ud]:
                into[ud].append(inner)
            b = ud
        if (a, b) not in level_edges:
            level_edges.append((a, b))
    return level_nodes, groups, inner_edges, into, out_of, level_edges


def _nest(graph: Graph, nodes: dict, edges: list[tuple[str, str]], prefix: str,
          sub_md: dict) -> "nir.NIRGraph":
    """Group ``g/...`` names into NIRGraph subgraphs (recursively) with input/output nodes."""
    level_nodes, groups, inner_edges, into, out_of, level_edges = _split_level(nodes, edges)
    for g, members in groups.items():
        full = prefix + g
        sub_edges = list(inner_edges[g])
        sub_nodes = dict(members)
        if into[g]:
            first, _ = split_port(into[g][0], members)
            shape = graph.nodes[f"{full}{SUBGRAPH_SEPARATOR}{first}"].input_shape
            in_name = _unique("input", sub_nodes)
            sub_nodes[in_name] = nir.Input(input_type=to_array(shape))
            sub_edges = [(in_name, t) for t in into[g]] + sub_edges
        if out_of[g]:
            shape = graph.nodes[f"{full}{SUBGRAPH_SEPARATOR}{out_of[g][0]}"].output_shape
            out_name = _unique("output", sub_nodes)
            sub_nodes[out_name] = nir.Output(output_type=to_array(shape))
            sub_edges = sub_edges + [(s, out_name) for s in out_of[g]]
        level_nodes[g] = _nest(graph, sub_nodes, sub_edges, full + SUBGRAPH_SEPARATOR, sub_md)
    md = sub_md.get(prefix[:-1], {}) if prefix else {}
    return nir.NIRGraph(nodes=level_nodes, edges=level_edges, metadata=to_storable_metadata(md),
                        type_check=False)


def to_nir(graph: Graph) -> "nir.NIRGraph":
    """Convert a graph IR to a ``nir.NIRGraph`` (not type-checked: port-addressed edges).

    Node names ``g/n`` (from flattened subgraphs) are nested back into subgraph ``g``; a
    :class:`GraphError` says so when the edges around ``g`` cannot be written as a subgraph.
    """
    nodes = {name: node_to_nir(node) for name, node in graph.nodes.items()}
    edges = [tuple(e) for e in graph.edges]
    metadata = to_storable_metadata(graph.metadata)
    sub_md = to_plain(metadata.pop("nir_subgraph_metadata", {}) or {})
    if not any(SUBGRAPH_SEPARATOR in n for n in nodes):
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
    nested = _nest(graph, nodes, edges, "", sub_md)
    nested.metadata = metadata
    flat_nodes, flat_edges, _ = flatten_nir(nested)
    if set(flat_nodes) != set(nodes) or sorted(flat_edges) != sorted(edges):
        group = next(n for n in nodes if SUBGRAPH_SEPARATOR in n).split(SUBGRAPH_SEPARATOR)[0]
        raise GraphError(f"graph: node names with '{SUBGRAPH_SEPARATOR}' (e.g. in '{group}') "
                         "stand for a nested NIR subgraph, but the edges around it cannot be "
                         "written as one; rename those nodes")
    return nested


def has_scalar_array(node) -> bool:
    """Whether ``node`` (a NIR node or graph, at any depth) holds a 0-d array."""
    if isinstance(node, nir.NIRGraph):
        return any(has_scalar_array(n) for n in node.nodes.values())
    return any(isinstance(v, np.ndarray) and v.ndim == 0 for v in vars(node).values())


def write_nir_graph(nir_graph: "nir.NIRGraph", path: Path) -> None:
    """``nir.write`` ``nir_graph`` to ``path`` (gzip unless it holds a 0-d array); not atomic.
    The HDF5 image is built in memory and written by Python: HDF5 itself, when a write to
    disk fails (disk full, file-size limit), printed thousands of lines and crashed."""
    compression = None if has_scalar_array(nir_graph) else "gzip"
    buf = io.BytesIO()
    nir.write(buf, nir_graph, compression=compression)
    Path(path).write_bytes(buf.getbuffer())


def write_nir(graph: Graph, path: str | Path) -> Path:
    """Write ``graph`` as a NIR (HDF5) file atomically: a partial file is never left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir_graph = to_nir(graph)
    with atomic_path(path, suffix=".nir") as tmp:
        write_nir_graph(nir_graph, tmp)
    return path
