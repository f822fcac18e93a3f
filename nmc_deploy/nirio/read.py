"""NIR files and ``nir.NIRGraph`` -> graph IR, with one-line errors for every failure.

``read_nir`` reads any NIR 1.0.8 file made of standard nodes (Input, Output, Affine, Linear,
Scale, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Delay, Threshold, I, IF, LI, LIF,
CubaLI, CubaLIF, nested NIRGraph) and our extensions; ``from_nir`` does the same for a graph
in memory (parameters may be numpy arrays or CPU torch tensors).

Reading rules implemented here
------------------------------
* Node types are checked in the HDF5 file before ``nir`` builds any node, so a node type of
  another tool's extension is reported by name and type (``nir.read`` would fail with a bare
  ``AssertionError``).
* Conv1d/Conv2d nodes stored without ``input_shape`` (or with an empty one) are built with
  ``input_shape=None`` and their shape is inferred from the graph.
* Every failure of ``read_nir`` is one line, prefixed with the path:
  :class:`InputFileError` (not a readable NIR file) or :class:`GraphError` (unsupported or
  inconsistent content).
* Then nested graphs are flattened (:mod:`~nmc_deploy.nirio.flatten`), each node is converted
  by the node table (:mod:`~nmc_deploy.nirio.table`) while shapes are inferred
  (:mod:`~nmc_deploy.nirio.shapes`); graph metadata becomes plain Python.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import nir  # noqa: E402  (nmc_deploy.nirio is the one door for nir)
import nir.ir as _nir_ir

from ..checks import input_file
from ..errors import GraphError, InputFileError
from .values import check_graph_metadata, check_node_values
from ..ir.graph import Graph
from .coerce import kind_of, to_plain_graph_metadata
from .extensions import EXTENSION_NODE_TYPES
from .flatten import SUBGRAPH_SEPARATOR, flatten_nir
from .shapes import infer_nodes_with_fallbacks
from .table import STANDARD_NODE_TYPES, node_from_nir, supported_text

__all__ = ["from_nir", "read_nir"]


def from_nir(graph) -> Graph:
    """Convert a ``nir.NIRGraph`` (possibly nested, possibly recurrent) to the graph IR.

    Raises :class:`GraphError` (one line) for unsupported nodes, dangling edges, subgraphs
    without Input/Output, and shapes that cannot be inferred or disagree.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"graph: expected a nir.NIRGraph, got {kind_of(graph)}")
    nodes, edges, sub_md = flatten_nir(graph)
    for name, node in nodes.items():
        if hasattr(node, "__dict__"):  # a graph in memory: the checks of a file's values
            check_node_values({k: v for k, v in vars(node).items() if v is not None
                               and k not in ("metadata",)}, f"node '{name}'")
        kind = kind_of(node)
        if kind not in STANDARD_NODE_TYPES + EXTENSION_NODE_TYPES:
            raise GraphError(f"node '{name}': unsupported NIR node type '{kind}'; supported: "
                             f"{supported_text()}")
    built = infer_nodes_with_fallbacks(nodes, edges, node_from_nir)
    metadata = to_plain_graph_metadata(dict(graph.metadata or {}))
    if sub_md:
        metadata["nir_subgraph_metadata"] = sub_md
    return Graph(nodes=built, edges=tuple(edges), metadata=metadata)


def _read_group(group) -> dict:
    """An HDF5 group as nested dicts (datasets as numpy values, byte strings decoded)."""
    import h5py

    out = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _read_group(item)
        else:
            value = item[()]
            if isinstance(value, np.ndarray):
                value.setflags(write=False)  # fresh from the file: the IR keeps it uncopied
            out[key] = value.decode() if isinstance(value, bytes) else value
    return out


def _check_types(d: dict, prefix: str) -> None:
    """Name the first node whose type is neither standard NIR nor ours."""
    for name, nd in (d.get("nodes") or {}).items():
        full = prefix + name
        kind = nd.get("type") if isinstance(nd, dict) else None
        if not isinstance(kind, str):
            raise InputFileError(f"node '{full}': no node type in the file; the file is not a "
                                 "valid NIR graph")
        if kind == "NIRGraph":
            _check_types(nd, full + SUBGRAPH_SEPARATOR)
        elif kind not in STANDARD_NODE_TYPES + EXTENSION_NODE_TYPES:
            raise GraphError(f"node '{full}': type '{kind}' is an extension of another tool; "
                             f"only standard NIR nodes ({', '.join(STANDARD_NODE_TYPES)}) and "
                             f"nmc-deploy's extensions ({', '.join(EXTENSION_NODE_TYPES)}) are "
                             "supported")


def _edge_text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _nir_graph_from_dict(d: dict, prefix: str) -> "nir.NIRGraph":
    """The ``nir.NIRGraph`` of a type-checked dict from :func:`_read_group`."""
    nodes = {}
    for name, nd in (d.get("nodes") or {}).items():
        full = prefix + name
        if nd["type"] == "NIRGraph":
            nodes[name] = _nir_graph_from_dict(nd, full + SUBGRAPH_SEPARATOR)
            continue
        nd = dict(nd)
        check_node_values(nd, f"node '{full}'")
        if nd["type"] in ("Conv1d", "Conv2d") and ("input_shape" not in nd or
                                                   np.size(nd["input_shape"]) == 0):
            nd["input_shape"] = None  # left open by other tools; inferred from the graph
        try:
            nodes[name] = _nir_ir.dict2NIRNode(nd)
        except Exception as exc:  # nir asserts/TypeErrors on malformed fields
            text = str(exc).splitlines()[0][:100] if str(exc) else ""
            raise InputFileError(f"node '{full}' ({nd['type']}): cannot be read "
                                 f"({type(exc).__name__}: {text}); the file does not follow "
                                 "NIR 1.0.8") from None
    raw_edges = d.get("edges")
    edges = []
    if raw_edges is not None:
        arr = np.asarray(raw_edges, dtype=object)
        if arr.size:
            edges = [(_edge_text(a), _edge_text(b)) for a, b in arr.reshape(-1, 2)]
    metadata = d.get("metadata") or {}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(metadata), type_check=False)


def _read_file_dict(path: Path) -> dict:
    """The ``node`` group of the HDF5 file at ``path`` as dicts, or :class:`InputFileError`."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if "node" not in fh:
                raise InputFileError(f"{path}: an HDF5 file but not a NIR graph (no 'node' group)")
            return _read_group(fh["node"])
    except InputFileError:
        raise
    except Exception as exc:  # h5py raises OSError subclasses with long texts
        raise InputFileError(f"{path}: not a NIR file (cannot open as HDF5: "
                             f"{str(exc).splitlines()[0][:80]}); re-export it with "
                             "`nmc-deploy export`") from None


def read_nir(path: str | Path) -> Graph:
    """Read a NIR file into the graph IR; every failure is one line (no traceback).

    :class:`InputFileError` when the file is missing or not a readable NIR file,
    :class:`GraphError` when its content is unsupported or inconsistent (node types of
    other tools' extensions, inconsistent shapes, dangling edges, subgraphs without
    Input/Output); both start with the path.
    """
    path = Path(path)
    input_file(path, "give the .nir file written by `nmc-deploy export`", what="NIR file")
    data = _read_file_dict(path)
    try:
        if data.get("type") != "NIRGraph":
            raise InputFileError(f"the top node is a {data.get('type')!r}, not a NIRGraph")
        _check_types(data, "")
        check_graph_metadata(data.get("metadata") or {})
        graph = _nir_graph_from_dict(data, "")
        return from_nir(graph)
    except InputFileError as exc:
        raise InputFileError(f"{path}: {exc}") from None
    except GraphError as exc:
        raise GraphError(f"{path}: {exc}") from None
    except Exception as exc:  # anything else nir/numpy raise on a malformed file
        text = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise InputFileError(f"{path}: corrupt or unsupported NIR file ({type(exc).__name__}: "
                             f"{text}); re-export it with the tool that wrote it") from None
