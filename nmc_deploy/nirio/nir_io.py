"""NIR files <-> graph IR. The only module of nmc-deploy that imports ``nir``.

Public API
----------
``read_nir(path) -> Graph``
    Read any NIR 1.0.8 file made of standard nodes (Input, Output, Affine, Linear, Scale,
    Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Delay, Threshold, I, IF, LI, LIF, CubaLI,
    CubaLIF, nested NIRGraph) and our extensions. Every failure is one line:
    :class:`InputFileError` (not a readable NIR file) or :class:`GraphError` (unsupported or
    inconsistent content), prefixed with the path.
``from_nir(nir_graph) -> Graph``
    The same conversion for a ``nir.NIRGraph`` in memory (parameters may be numpy arrays or
    CPU torch tensors).
``write_nir(graph, path) -> Path`` and ``to_nir(graph) -> nir.NIRGraph``
    Standard NIR nodes wherever NIR has one, plus our extension nodes ``SpikingSelfAttention``
    and ``TokenSelect`` (schema: docs/nir-extensions.md).
``register_extensions()``
    Called on import: makes ``nir.read`` accept our extension types (idempotent).

Reading: what the graph IR makes of a NIR graph
-----------------------------------------------
* **Nested graphs are flattened.** Inner node ``n`` of subgraph node ``g`` becomes ``g/n``
  ("/" never collides with the ``"node.port"`` edge syntax); the subgraph's own Input and
  Output nodes disappear: an edge into ``g`` goes to every successor of g's Input, an edge out
  of ``g`` leaves from every predecessor of g's Output (``"g.name"`` picks one of several
  Inputs/Outputs). Non-empty subgraph metadata goes to graph metadata
  ``nir_subgraph_metadata[g]``. Recurrent edges (cycles) are kept as ordinary edges.
* ``Linear`` becomes ``Affine`` with a zero bias and metadata ``{"nir_type": "Linear"}``;
  it is written back as ``nir.Linear`` while the bias stays zero.
* **Shapes are inferred** where NIR leaves them open (Conv1d/Conv2d ``input_shape``,
  SumPool2d/AvgPool2d input, Flatten ``input_type``): nodes are visited in topological order
  ignoring recurrent edges (:func:`nmc_deploy.ir.graph.back_edges`' rule), a node's input
  shape is the output shape of its non-recurrent predecessors, which must agree; then every
  edge, recurrent ones included, must carry its target's input shape. A shape that differs
  only in layout (same number of elements, e.g. ``(1, C, H, W)`` params after a
  ``(C, H, W)`` conv) is accepted only when no exact reading of the graph exists, and
  elementwise parameters are then reshaped to the incoming shape (metadata
  ``nir_param_shape`` keeps the file's shape).
* **Broadcasting.** Elementwise nodes (neurons, Threshold, Scale, Delay, I) whose parameters
  all hold one element (norse writes 0-d arrays) take the shape of their input when it is
  known, with metadata ``nir_param_shape``; otherwise they keep the shape as given.
* **Batch dimension.** An ``Input`` of shape ``(1, *s)`` (norse 1.1.0 exports
  ``Input([1, n])``) becomes ``Input(s)`` only when the graph is consistent with ``s`` and not
  with ``(1, *s)``; an ``Output`` declared ``(1, *s)`` that receives ``s`` becomes ``s``. Both
  keep the file's shape in metadata ``nir_declared_shape``.
* Node types are checked in the HDF5 file before ``nir`` builds any node, so a node type of
  another tool's extension is reported by name and type (``nir.read`` would fail with a bare
  ``AssertionError``).

Writing
-------
Files are written with ``type_check=False`` graphs (edges into extension ports such as
``"attn.q"`` are not type-checkable in NIR 1.0.8) and gzip compression, or none when a 0-d
array is present (HDF5 cannot compress scalars). Names with "/" are nested back into
``NIRGraph`` subgraphs (with ``input``/``output`` nodes) when that reproduces the same flat
edges, so ``write_nir(read_nir(f))`` keeps the file's structure.
"""
from __future__ import annotations

import dataclasses
import heapq
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError, InputFileError
from ..ir import nodes as ir
from ..ir.graph import Graph, back_edge_indices, split_port

import nir  # noqa: E402  (the one door for nir)
import nir.ir as _nir_ir

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "register_extensions",
           "NirSpikingSelfAttention", "NirTokenSelect", "STANDARD_NODE_TYPES",
           "EXTENSION_NODE_TYPES"]

EXTENSION_NAMESPACE = "nmc_deploy"
SUBGRAPH_SEPARATOR = "/"

STANDARD_NODE_TYPES = ("Input", "Output", "NIRGraph", "Affine", "Linear", "Scale", "Conv1d",
                       "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Delay", "Threshold", "I",
                       "IF", "LI", "LIF", "CubaLI", "CubaLIF")
EXTENSION_NODE_TYPES = ("SpikingSelfAttention", "TokenSelect")


@dataclass(eq=False)
class NirSpikingSelfAttention(nir.NIRNode):
    """nmc-deploy extension: y_h = scale * (Q_h K_h^T) V_h per head, per time step.

    Ports q, k, v (binary spikes, shape (dim, n_tokens)) and output (dim, n_tokens).
    Scalars are stored as 1-element arrays (NIR cannot gzip 0-d datasets).
    """

    num_heads: np.ndarray
    dim: np.ndarray
    n_tokens: np.ndarray
    scale: np.ndarray

    def __post_init__(self):
        shape = np.array([int(np.ravel(self.dim)[0]), int(np.ravel(self.n_tokens)[0])])
        self.input_type = {"q": shape, "k": shape, "v": shape}
        self.output_type = {"output": shape}


# The serialised type name is the class name; keep it stable: files depend on it.
NirSpikingSelfAttention.__name__ = "SpikingSelfAttention"
NirSpikingSelfAttention.__qualname__ = "SpikingSelfAttention"


@dataclass(eq=False)
class NirTokenSelect(nir.NIRNode):
    """nmc-deploy extension: SparseSpikformer token selector (docs/nir-extensions.md).

    Port input and output (dim, n_tokens). Predictor arrays w1, b1, w2, b2; scalars as
    1-element arrays; the gated node names and the previous selector are metadata strings
    ("gates": comma-separated, "previous").
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    dim: np.ndarray
    n_tokens: np.ndarray
    n_keep: np.ndarray
    time_steps: np.ndarray

    def __post_init__(self):
        shape = np.array([int(np.ravel(self.dim)[0]), int(np.ravel(self.n_tokens)[0])])
        self.input_type = {"input": shape}
        self.output_type = {"output": shape}


NirTokenSelect.__name__ = "TokenSelect"
NirTokenSelect.__qualname__ = "TokenSelect"

_EXTENSIONS = {"SpikingSelfAttention": NirSpikingSelfAttention, "TokenSelect": NirTokenSelect}


def register_extensions() -> None:
    """Make ``nir.read`` accept our extension node types (idempotent)."""
    all_ir = _nir_ir.__dict__["__all_ir"]
    for name, cls in _EXTENSIONS.items():
        if name not in all_ir:
            all_ir.append(name)
        setattr(_nir_ir, name, cls)


register_extensions()


# ---------------------------------------------------------------------------------------------
# small helpers

def _arr(x, dtype=None):
    return np.array(x, dtype=dtype)


def _np(x) -> np.ndarray | None:
    """A numpy array from a numpy array, number, list or CPU torch tensor (no torch import)."""
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _scalar(x) -> float:
    return float(np.ravel(_np(x))[0])


def _shape(x) -> tuple[int, ...] | None:
    """A shape tuple from a NIR type entry (array/list/None)."""
    if x is None:
        return None
    return tuple(int(v) for v in np.ravel(_np(x)))


def _meta(m) -> dict:
    """Metadata that NIR can store (no None values, at any depth)."""
    out = {}
    for k, v in dict(m or {}).items():
        if v is None:
            continue
        out[k] = _meta(v) if isinstance(v, dict) else v
    return out


def _plain(value):
    """NIR metadata comes back as numpy scalars/bytes; make it plain Python."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _plain_graph_metadata(value):
    """Graph-level metadata as plain Python down to lists (it ends up in program.json)."""
    value = _plain(value)
    if isinstance(value, dict):
        return {k: _plain_graph_metadata(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _fmt(shape) -> str:
    return str(tuple(int(s) for s in shape)) if shape is not None else "unknown"


def _kind(node) -> str:
    return type(node).__name__


def _supported_text() -> str:
    return (f"{', '.join(STANDARD_NODE_TYPES)} and nmc-deploy's extensions "
            f"{', '.join(EXTENSION_NODE_TYPES)}")


class _ShapeError(GraphError):
    """Inconsistent or unknown shapes (the reader retries other readings of the graph)."""


# ---------------------------------------------------------------------------------------------
# writing

def _node_to_nir(node: ir.Node):
    md = _meta(node.metadata)
    if isinstance(node, ir.Input):
        return nir.Input(input_type=_arr(node.shape), metadata=md)
    if isinstance(node, ir.Output):
        return nir.Output(output_type=_arr(node.shape), metadata=md)
    if isinstance(node, ir.Affine):
        nir_type = md.pop("nir_type", None)
        if nir_type == "Linear" and not np.any(node.bias):
            return nir.Linear(weight=_arr(node.weight), metadata=md)
        return nir.Affine(weight=_arr(node.weight), bias=_arr(node.bias), metadata=md)
    if isinstance(node, ir.Conv2d):
        return nir.Conv2d(input_shape=tuple(node.input_hw), weight=_arr(node.weight),
                          stride=_arr(node.stride), padding=_arr(node.padding),
                          dilation=_arr(node.dilation), groups=node.groups,
                          bias=_arr(node.bias), metadata=md)
    if isinstance(node, ir.Conv1d):
        return nir.Conv1d(input_shape=node.input_length, weight=_arr(node.weight),
                          stride=node.stride, padding=node.padding, dilation=node.dilation,
                          groups=node.groups, bias=_arr(node.bias), metadata=md)
    if isinstance(node, ir.Scale):
        return nir.Scale(scale=_arr(node.scale), metadata=md)
    if isinstance(node, (ir.SumPool2d, ir.AvgPool2d)):
        cls = nir.SumPool2d if isinstance(node, ir.SumPool2d) else nir.AvgPool2d
        return cls(kernel_size=_arr(node.kernel_size), stride=_arr(node.stride),
                   padding=_arr(node.padding), metadata={**md, "input_chw": _arr(node.input_chw)})
    if isinstance(node, ir.Threshold):
        return nir.Threshold(threshold=_arr(node.threshold), metadata=md)
    if isinstance(node, ir.Flatten):
        return nir.Flatten(input_type={"input": _arr(node.input_type)}, start_dim=node.start_dim,
                           end_dim=node.end_dim, metadata=md)
    if isinstance(node, ir.Delay):
        return nir.Delay(delay=_arr(node.delay), metadata=md)
    if isinstance(node, ir.Integrator):
        return nir.I(r=_arr(node.r), metadata=md)
    if isinstance(node, ir.IF):
        return nir.IF(r=_arr(node.r), v_threshold=_arr(node.v_threshold),
                      v_reset=_arr(node.v_reset), metadata=md)
    if isinstance(node, ir.LI):
        return nir.LI(tau=_arr(node.tau), r=_arr(node.r), v_leak=_arr(node.v_leak), metadata=md)
    if isinstance(node, ir.LIF):
        return nir.LIF(tau=_arr(node.tau), r=_arr(node.r), v_leak=_arr(node.v_leak),
                       v_threshold=_arr(node.v_threshold), v_reset=_arr(node.v_reset),
                       metadata=md)
    if isinstance(node, ir.CubaLI):
        return nir.CubaLI(tau_syn=_arr(node.tau_syn), tau_mem=_arr(node.tau_mem),
                          r=_arr(node.r), v_leak=_arr(node.v_leak), w_in=_arr(node.w_in),
                          metadata=md)
    if isinstance(node, ir.CubaLIF):
        return nir.CubaLIF(tau_syn=_arr(node.tau_syn), tau_mem=_arr(node.tau_mem),
                           r=_arr(node.r), v_leak=_arr(node.v_leak),
                           v_threshold=_arr(node.v_threshold), v_reset=_arr(node.v_reset),
                           w_in=_arr(node.w_in), metadata=md)
    if isinstance(node, ir.SpikingSelfAttention):
        return NirSpikingSelfAttention(
            num_heads=_arr([node.num_heads]), dim=_arr([node.dim]),
            n_tokens=_arr([node.n_tokens]), scale=_arr([node.scale], np.float64),
            metadata={**md, "extension": EXTENSION_NAMESPACE})
    if isinstance(node, ir.TokenSelect):
        return NirTokenSelect(
            w1=_arr(node.w1), b1=_arr(node.b1), w2=_arr(node.w2), b2=_arr(node.b2),
            dim=_arr([node.dim]), n_tokens=_arr([node.n_tokens]), n_keep=_arr([node.n_keep]),
            time_steps=_arr([node.time_steps]),
            metadata={**md, "extension": EXTENSION_NAMESPACE, "gates": ",".join(node.gates),
                      "previous": node.previous})
    raise GraphError(f"Cannot write node of type '{type(node).__name__}' to NIR")


def _unique(name: str, taken) -> str:
    out, i = name, 0
    while out in taken:
        i += 1
        out = f"{name}_{i}"
    return out


def _nest(graph: Graph, nodes: dict, edges: list[tuple[str, str]], prefix: str,
          sub_md: dict) -> "nir.NIRGraph":
    """Group ``g/...`` names into NIRGraph subgraphs (recursively) with input/output nodes."""
    def unit(name):  # the name at this level: a plain node or a group
        head, sep, _ = name.partition(SUBGRAPH_SEPARATOR)
        return head if sep else name

    level_nodes: dict[str, Any] = {}
    groups: dict[str, dict] = {}
    for name, node in nodes.items():
        u = unit(name)
        if u == name:
            level_nodes[name] = node
        else:
            groups.setdefault(u, {})[name[len(u) + 1:]] = node
    inner_edges: dict[str, list] = {g: [] for g in groups}
    into: dict[str, list[str]] = {g: [] for g in groups}  # targets inside g fed from outside
    out_of: dict[str, list[str]] = {g: [] for g in groups}  # sources inside g read outside
    level_edges: list[tuple[str, str]] = []
    for src, dst in edges:
        dst_node, port = split_port(dst, nodes)
        us, ud = unit(src), unit(dst_node)
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
    for g, members in groups.items():
        full = prefix + g
        sub_edges = list(inner_edges[g])
        sub_nodes = dict(members)
        if into[g]:
            first, _ = split_port(into[g][0], members)
            shape = graph.nodes[f"{full}{SUBGRAPH_SEPARATOR}{first}"].input_shape
            in_name = _unique("input", sub_nodes)
            sub_nodes[in_name] = nir.Input(input_type=_arr(shape))
            sub_edges = [(in_name, t) for t in into[g]] + sub_edges
        if out_of[g]:
            shape = graph.nodes[f"{full}{SUBGRAPH_SEPARATOR}{out_of[g][0]}"].output_shape
            out_name = _unique("output", sub_nodes)
            sub_nodes[out_name] = nir.Output(output_type=_arr(shape))
            sub_edges = sub_edges + [(s, out_name) for s in out_of[g]]
        level_nodes[g] = _nest(graph, sub_nodes, sub_edges, full + SUBGRAPH_SEPARATOR, sub_md)
    md = sub_md.get(prefix[:-1], {}) if prefix else {}
    return nir.NIRGraph(nodes=level_nodes, edges=level_edges, metadata=_meta(md),
                        type_check=False)


def to_nir(graph: Graph) -> "nir.NIRGraph":
    """Convert a graph IR to a ``nir.NIRGraph`` (not type-checked: port-addressed edges).

    Node names ``g/n`` (from flattened subgraphs) are nested back into subgraph ``g``; a
    :class:`GraphError` says so when the edges around ``g`` cannot be written as a subgraph.
    """
    nodes = {name: _node_to_nir(node) for name, node in graph.nodes.items()}
    edges = [tuple(e) for e in graph.edges]
    metadata = _meta(graph.metadata)
    sub_md = _plain(metadata.pop("nir_subgraph_metadata", {}) or {})
    if not any(SUBGRAPH_SEPARATOR in n for n in nodes):
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
    nested = _nest(graph, nodes, edges, "", sub_md)
    nested.metadata = metadata
    flat_nodes, flat_edges, _ = _flatten_nir(nested)
    if set(flat_nodes) != set(nodes) or sorted(flat_edges) != sorted(edges):
        group = next(n for n in nodes if SUBGRAPH_SEPARATOR in n).split(SUBGRAPH_SEPARATOR)[0]
        raise GraphError(f"graph: node names with '{SUBGRAPH_SEPARATOR}' (e.g. in '{group}') "
                         "stand for a nested NIR subgraph, but the edges around it cannot be "
                         "written as one; rename those nodes")
    return nested


def _has_scalar_array(node) -> bool:
    if isinstance(node, nir.NIRGraph):
        return any(_has_scalar_array(n) for n in node.nodes.values())
    return any(isinstance(v, np.ndarray) and v.ndim == 0 for v in vars(node).values())


def write_nir(graph: Graph, path: str | Path) -> Path:
    """Write ``graph`` as a NIR (HDF5) file atomically: a partial file is never left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir_graph = to_nir(graph)
    compression = None if _has_scalar_array(nir_graph) else "gzip"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".nir", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, nir_graph, compression=compression)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------------------------------------
# flattening nested graphs

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
                sub_md[full] = _plain_graph_metadata(dict(node.metadata))
            _collect(node, full + SUBGRAPH_SEPARATOR, False, nodes, edges, sub_md)
        elif not top and isinstance(node, (nir.Input, nir.Output)):
            nodes[full] = _PASS
        else:
            nodes[full] = node
    for a, b in g.edges:
        text = f"{prefix}{a} -> {prefix}{b}"
        edges.append((_resolve(a, g, prefix, True, text), _resolve(b, g, prefix, False, text)))


def _flatten_nir(g) -> tuple[dict, list[tuple[str, str]], dict]:
    """(nodes, edges, subgraph metadata) of ``g`` with nested graphs flattened."""
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


# ---------------------------------------------------------------------------------------------
# shape inference and IR nodes

_ELEMENTWISE = {
    "Scale": (ir.Scale, ("scale",)),
    "Threshold": (ir.Threshold, ("threshold",)),
    "Delay": (ir.Delay, ("delay",)),
    "I": (ir.Integrator, ("r",)),
    "IF": (ir.IF, ("r", "v_threshold", "v_reset")),
    "LI": (ir.LI, ("tau", "r", "v_leak")),
    "LIF": (ir.LIF, ("tau", "r", "v_leak", "v_threshold", "v_reset")),
    "CubaLI": (ir.CubaLI, ("tau_syn", "tau_mem", "r", "v_leak", "w_in")),
    "CubaLIF": (ir.CubaLIF, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset",
                             "w_in")),
}


def _size(shape) -> int:
    return int(np.prod(shape)) if shape is not None else -1


def _fits(got, expected, lenient: bool) -> bool:
    return tuple(got) == tuple(expected) or (lenient and _size(got) == _size(expected))


def _mismatch(name, kind, port, incoming, expected) -> _ShapeError:
    shape, srcs = incoming
    src = ", ".join(srcs)
    where = f"{name}.{port}" if port != "input" else name
    return _ShapeError(f"node '{name}' ({kind}): inconsistent shapes: edge {src} -> {where} "
                       f"carries {_fmt(shape)} but {name} takes {_fmt(expected)}; fix the "
                       "shapes in the exporting tool")


def _pairs(x, name, field) -> tuple[int, int]:
    arr = np.ravel(_np(x)).astype(int)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2:
        raise GraphError(f"node '{name}': {field} ({arr.tolist()}) needs 1 or 2 values")
    return int(arr[0]), int(arr[1])


def _conv_padding(padding, kernel, stride, dilation, name, kind, n):
    """Integer padding per spatial dim from NIR's int/array/'same'/'valid'."""
    if isinstance(padding, (bytes, str)):
        padding = padding.decode() if isinstance(padding, bytes) else padding
        if padding == "valid":
            return (0,) * n
        if padding == "same":
            out = []
            for k, s, d in zip(kernel, stride, dilation):
                total = d * (k - 1)
                if s != 1 or total % 2:
                    raise GraphError(f"node '{name}' ({kind}): padding 'same' with kernel {k}, "
                                     f"stride {s}, dilation {d} pads asymmetrically, which is "
                                     "not supported; export explicit integer padding")
                out.append(total // 2)
            return tuple(out)
        raise GraphError(f"node '{name}' ({kind}): padding '{padding}' is not supported")
    arr = np.ravel(_np(padding)).astype(int)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    return tuple(int(v) for v in arr)


def _elementwise(name, kind, node, inc, lenient, md) -> ir.Node:
    cls, fields = _ELEMENTWISE[kind]
    params = {}
    for f in fields:
        value = getattr(node, f, None)
        if value is None and f == "v_reset":
            value = np.zeros_like(_np(node.v_threshold))
        if value is None:
            raise GraphError(f"node '{name}' ({kind}): parameter {f} is missing")
        params[f] = _np(value)
    sizes = {f: a.size for f, a in params.items()}
    big = max(params.values(), key=lambda a: a.size)
    shape_p = big.shape
    for f, a in params.items():
        if a.shape != shape_p:
            if a.size != 1:
                raise GraphError(f"node '{name}' ({kind}): parameter shapes differ ("
                                 + ", ".join(f"{k} {v.shape}" for k, v in params.items())
                                 + "); NIR needs one shape for all")
            params[f] = np.broadcast_to(a.reshape(()), shape_p).copy()
    flexible = all(s == 1 for s in sizes.values())
    if inc is not None and tuple(inc[0]) != tuple(shape_p):
        target = tuple(inc[0])
        if flexible:
            params = {f: np.broadcast_to(a.reshape(()), target).copy()
                      for f, a in params.items()}
        elif lenient and _size(target) == big.size:
            params = {f: a.reshape(target) for f, a in params.items()}
        else:
            raise _mismatch(name, kind, "input", inc, shape_p)
        md = {**md, "nir_param_shape": str(tuple(shape_p))}
    return cls(**params, metadata=md)


def _build_node(name: str, node, incoming: dict, lenient: bool, strip_input: bool) -> ir.Node:
    """The IR node for NIR ``node`` given the shapes arriving at each port (or None)."""
    kind = _kind(node)
    md = _plain(dict(getattr(node, "metadata", None) or {}))
    inc = incoming.get("input")
    if kind == "Input":
        shape = _shape(node.input_type.get("input") if node.input_type else None)
        if shape is None:
            raise GraphError(f"node '{name}' (Input): no shape; the Input node needs one")
        if strip_input and len(shape) >= 2 and shape[0] == 1:
            md = {**md, "nir_declared_shape": str(shape),
                  "nir_note": "leading batch dimension 1 removed (norse 1.1.0 writes one)"}
            shape = shape[1:]
        return ir.Input(shape=shape, metadata=md)
    if kind == "Output":
        declared = _shape(node.output_type.get("output") if node.output_type else None)
        if inc is None:
            if declared is None:
                raise _ShapeError(f"node '{name}' (Output): no shape and no input to infer it "
                                  "from")
            return ir.Output(shape=declared, metadata=md)
        got = tuple(inc[0])
        if declared is not None and declared != got:
            if declared == (1,) + got:
                md = {**md, "nir_declared_shape": str(declared),
                      "nir_note": "leading batch dimension 1 removed (norse 1.1.0 writes one)"}
            elif lenient and _size(declared) == _size(got):
                md = {**md, "nir_declared_shape": str(declared)}
            else:
                raise _mismatch(name, kind, "input", inc, declared)
        return ir.Output(shape=got, metadata=md)
    if kind in _ELEMENTWISE:
        return _elementwise(name, kind, node, inc, lenient, md)
    if kind in ("Affine", "Linear"):
        w = _np(node.weight)
        if w.ndim != 2:
            raise GraphError(f"node '{name}' ({kind}): weight with {w.ndim} dims (a batch of "
                             "matrices) is not supported; only (out, in) weights are")
        if kind == "Linear":
            bias = np.zeros(w.shape[0], w.dtype)
            md = {**md, "nir_type": "Linear"}
        else:
            bias = _np(node.bias)
            bias = np.zeros(w.shape[0], w.dtype) if bias is None else bias
        return ir.Affine(weight=w, bias=bias, metadata=md)
    if kind == "Conv2d":
        w = _np(node.weight)
        if w.ndim != 4:
            raise GraphError(f"node '{name}' (Conv2d): weight.shape={w.shape}; expected "
                             "(C_out, C_in/groups, kH, kW)")
        groups = int(_scalar(node.groups))
        hw = None if node.input_shape is None or np.size(_np(node.input_shape)) == 0 \
            else _pairs(node.input_shape, name, "input_shape")
        if hw is None:
            if inc is None:
                raise _ShapeError(f"node '{name}' (Conv2d): cannot infer its input shape (no "
                                  "input_shape and no predecessor with a known shape); set "
                                  "input_shape when exporting")
            if len(inc[0]) != 3:
                raise _mismatch(name, kind, "input", inc, (w.shape[1] * groups, "H", "W"))
            hw = tuple(inc[0][1:])
        stride = _pairs(node.stride, name, "stride")
        dilation = _pairs(node.dilation, name, "dilation")
        padding = _conv_padding(node.padding, w.shape[2:], stride, dilation, name, kind, 2)
        bias = _np(node.bias)
        return ir.Conv2d(weight=w, bias=np.zeros(w.shape[0], w.dtype) if bias is None else bias,
                         input_hw=hw, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, metadata=md)
    if kind == "Conv1d":
        w = _np(node.weight)
        if w.ndim != 3:
            raise GraphError(f"node '{name}' (Conv1d): weight.shape={w.shape}; expected "
                             "(C_out, C_in/groups, K)")
        groups = int(_scalar(node.groups))
        length = None if node.input_shape is None or np.size(_np(node.input_shape)) == 0 \
            else int(_scalar(node.input_shape))
        if length is None:
            if inc is None:
                raise _ShapeError(f"node '{name}' (Conv1d): cannot infer its input shape (no "
                                  "input_shape and no predecessor with a known shape); set "
                                  "input_shape when exporting")
            if len(inc[0]) != 2:
                raise _mismatch(name, kind, "input", inc, (w.shape[1] * groups, "N"))
            length = int(inc[0][1])
        stride = int(_scalar(node.stride))
        dilation = int(_scalar(node.dilation))
        padding = _conv_padding(node.padding, w.shape[2:], (stride,), (dilation,), name, kind,
                                1)[0]
        bias = _np(node.bias)
        return ir.Conv1d(weight=w, bias=np.zeros(w.shape[0], w.dtype) if bias is None else bias,
                         input_length=length, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, metadata=md)
    if kind in ("SumPool2d", "AvgPool2d"):
        chw = md.pop("input_chw", None)
        chw = None if chw is None else _shape(chw)
        if chw is None:
            if inc is None:
                raise _ShapeError(f"node '{name}' ({kind}): cannot infer its input shape (no "
                                  "predecessor with a known shape)")
            if len(inc[0]) != 3:
                raise _mismatch(name, kind, "input", inc, ("C", "H", "W"))
            chw = tuple(inc[0])
        cls = ir.SumPool2d if kind == "SumPool2d" else ir.AvgPool2d
        return cls(kernel_size=_pairs(node.kernel_size, name, "kernel_size"),
                   stride=_pairs(node.stride, name, "stride"),
                   padding=_pairs(node.padding, name, "padding"), input_chw=chw, metadata=md)
    if kind == "Flatten":
        declared = _shape((node.input_type or {}).get("input"))
        if declared is not None and (len(declared) == 0 or 0 in declared):
            declared = None  # sinabs once wrote zeros for "unknown"
        if inc is not None and declared is not None and tuple(inc[0]) != declared \
                and lenient and _size(inc[0]) == _size(declared):
            md = {**md, "nir_declared_shape": str(declared)}
            declared = tuple(inc[0])
        if declared is None:
            if inc is None:
                raise _ShapeError(f"node '{name}' (Flatten): cannot infer its input shape (no "
                                  "input_type and no predecessor with a known shape)")
            declared = tuple(inc[0])
        start, end = int(_scalar(node.start_dim)), int(_scalar(node.end_dim))
        n = len(declared)
        if not (-n <= start < n and -n <= end < n and start % n <= end % n):
            raise GraphError(f"node '{name}' (Flatten): start_dim {start} and end_dim {end} do "
                             f"not fit its input shape {_fmt(declared)} (dims exclude batch)")
        return ir.Flatten(input_type=declared, start_dim=start, end_dim=end, metadata=md)
    if kind == "SpikingSelfAttention":
        md.pop("extension", None)
        return ir.SpikingSelfAttention(num_heads=int(_scalar(node.num_heads)),
                                       dim=int(_scalar(node.dim)),
                                       n_tokens=int(_scalar(node.n_tokens)),
                                       scale=_scalar(node.scale), metadata=md)
    if kind == "TokenSelect":
        md.pop("extension", None)
        gates = str(md.pop("gates", "") or "")
        previous = str(md.pop("previous", "") or "")
        return ir.TokenSelect(w1=_np(node.w1), b1=_np(node.b1), w2=_np(node.w2),
                              b2=_np(node.b2), dim=int(_scalar(node.dim)),
                              n_tokens=int(_scalar(node.n_tokens)),
                              n_keep=int(_scalar(node.n_keep)),
                              time_steps=int(_scalar(node.time_steps)),
                              gates=tuple(g for g in gates.split(",") if g), previous=previous,
                              metadata=md)
    raise GraphError(f"node '{name}': unsupported NIR node type '{kind}'; supported: "
                     f"{_supported_text()}")


def _order(nodes: dict, edges: list[tuple[str, str]]) -> tuple[list[str], set[int]]:
    """Topological order ignoring recurrent edges, and the indices of the recurrent edges.

    Recurrent edges are found as :func:`nmc_deploy.ir.graph.back_edges` finds them: depth-first
    from the Input node, then from every unreached node in node order, successors in edge order.
    """
    inputs = [n for n, v in nodes.items() if _kind(v) == "Input"]
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


def _build_all(nodes: dict, edges: list[tuple[str, str]], lenient: bool,
               strip_input: bool) -> dict[str, ir.Node]:
    order, back = _order(nodes, edges)
    into: dict[str, list[tuple[int, str, str]]] = {n: [] for n in nodes}
    for i, (a, b) in enumerate(edges):
        target, port = split_port(b, nodes)
        into[target].append((i, a, port))
    built: dict[str, ir.Node] = {}
    for name in order:
        incoming: dict[str, tuple[tuple[int, ...], list[str]]] = {}
        for i, src, port in into[name]:
            if i in back:
                continue
            shape = tuple(built[src].output_shape)
            if port in incoming and incoming[port][0] != shape:
                first = incoming[port]
                where = f"{name}.{port}" if port != "input" else name
                raise _ShapeError(
                    f"node '{name}' ({_kind(nodes[name])}): inconsistent shapes: edge "
                    f"{first[1][0]} -> {where} carries {_fmt(first[0])} but edge {src} -> "
                    f"{where} carries {_fmt(shape)}; NIR sums the edges into a node, so they "
                    "must carry one shape")
            incoming.setdefault(port, (shape, []))[1].append(src)
        node = _build_node(name, nodes[name], incoming, lenient, strip_input)
        for port, inc in incoming.items():
            if port not in node.input_ports:
                raise GraphError(f"edge {inc[1][0]} -> {name}.{port}: node '{name}' has no input "
                                 f"port '{port}' (ports: {', '.join(node.input_ports)})")
            if not _fits(inc[0], node.input_shape, lenient):
                raise _mismatch(name, _kind(nodes[name]), port, inc, node.input_shape)
        built[name] = node
    for i in sorted(back):
        src, dst = edges[i]
        target, port = split_port(dst, nodes)
        got, expected = built[src].output_shape, built[target].input_shape
        if not _fits(got, expected, lenient):
            raise _mismatch(target, _kind(nodes[target]), port, (got, [src]), expected)
    return built


def from_nir(graph) -> Graph:
    """Convert a ``nir.NIRGraph`` (possibly nested, possibly recurrent) to the graph IR.

    Raises :class:`GraphError` (one line) for unsupported nodes, dangling edges, subgraphs
    without Input/Output, and shapes that cannot be inferred or disagree.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"graph: expected a nir.NIRGraph, got {_kind(graph)}")
    nodes, edges, sub_md = _flatten_nir(graph)
    for name, node in nodes.items():
        kind = _kind(node)
        if kind not in STANDARD_NODE_TYPES + EXTENSION_NODE_TYPES:
            raise GraphError(f"node '{name}': unsupported NIR node type '{kind}'; supported: "
                             f"{_supported_text()}")
    inputs = [n for n, v in nodes.items() if _kind(v) == "Input"]
    can_strip = any(len(_shape(nodes[n].input_type.get("input")) or ()) >= 2
                    and _shape(nodes[n].input_type.get("input"))[0] == 1 for n in inputs)
    attempts = [(False, False)] + ([(False, True)] if can_strip else []) + [(True, False)] \
        + ([(True, True)] if can_strip else [])
    built = None
    report = None
    for lenient, strip in attempts:
        try:
            built = _build_all(nodes, edges, lenient, strip)
            break
        except _ShapeError as exc:
            if (lenient, strip) == (True, False):
                report = exc
    if built is None:
        raise GraphError(str(report)) from None
    metadata = _plain_graph_metadata(dict(graph.metadata or {}))
    if sub_md:
        metadata["nir_subgraph_metadata"] = sub_md
    return Graph(nodes=built, edges=tuple(edges), metadata=metadata)


# ---------------------------------------------------------------------------------------------
# reading files

def _read_group(group) -> dict:
    """An HDF5 group as nested dicts (datasets as numpy values, byte strings decoded)."""
    import h5py

    out = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _read_group(item)
        else:
            value = item[()]
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
    nodes = {}
    for name, nd in (d.get("nodes") or {}).items():
        full = prefix + name
        if nd["type"] == "NIRGraph":
            nodes[name] = _nir_graph_from_dict(nd, full + SUBGRAPH_SEPARATOR)
            continue
        nd = dict(nd)
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


def read_nir(path: str | Path) -> Graph:
    """Read a NIR file into the graph IR; every failure is one line (no traceback).

    :class:`InputFileError` when the file is missing or not a readable NIR file,
    :class:`GraphError` when its content is unsupported or inconsistent (node types of
    other tools' extensions, inconsistent shapes, dangling edges, subgraphs without
    Input/Output); both start with the path.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file; give the .nir file written by "
                             "`nmc-deploy export`")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give a .nir file")
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if "node" not in fh:
                raise InputFileError(f"{path}: an HDF5 file but not a NIR graph (no 'node' group)")
            data = _read_group(fh["node"])
    except InputFileError:
        raise
    except Exception as exc:  # h5py raises OSError subclasses with long texts
        raise InputFileError(f"{path}: not a NIR file (cannot open as HDF5: "
                             f"{str(exc).splitlines()[0][:80]}); re-export it with "
                             "`nmc-deploy export`") from None
    try:
        if data.get("type") != "NIRGraph":
            raise InputFileError(f"the top node is a {data.get('type')!r}, not a NIRGraph")
        _check_types(data, "")
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


# ---------------------------------------------------------------------------------------------
# portable export: standard NIR only, extension ops described by a manifest

PORTABLE_GRAPH = "graph.nir"
PORTABLE_MANIFEST = "manifest.json"
PORTABLE_ARRAYS = "extensions.npz"
PORTABLE_FORMAT = "nmc-deploy-portable"
_EXTENSION_CLASSES = {"SpikingSelfAttention": NirSpikingSelfAttention,
                      "TokenSelect": NirTokenSelect}


def _is_extension(node) -> bool:
    return isinstance(node, (ir.SpikingSelfAttention, ir.TokenSelect))


def to_portable(graph: Graph) -> tuple["nir.NIRGraph", dict, dict]:
    """Split ``graph`` into a standard-only ``nir.NIRGraph``, a manifest and arrays (pure).

    Every extension node ``X`` is cut out: each of its input ports ``p`` becomes an
    ``Output`` node ``X:p`` (what X would read), its output becomes an ``Input`` node
    ``X:output`` (what X would produce). The manifest lists, per extension op, its type, its
    scalar fields, the keys of its array fields in the arrays dict, and those boundary nodes;
    a reader executes the standard graph up to the ``X:p`` outputs, applies X (semantics in
    docs/nir-extensions.md) and feeds the result to ``X:output``.
    """
    ext = [n for n, v in graph.nodes.items() if _is_extension(v)]
    nodes = {n: _node_to_nir(v) for n, v in graph.nodes.items() if n not in ext}
    ops, arrays = [], {}
    for name in ext:
        node = graph.nodes[name]
        inputs = {}
        for port in node.input_ports:
            inputs[port] = f"{name}:{port}"
            nodes[inputs[port]] = nir.Output(output_type=np.array(node.input_shape))
        nodes[f"{name}:output"] = nir.Input(input_type=np.array(node.output_shape))
        fields, keys = {}, {}
        for f in dataclasses.fields(node):
            if f.name == "metadata":
                continue
            value = getattr(node, f.name)
            if isinstance(value, np.ndarray):
                keys[f.name] = f"{name}/{f.name}"
                arrays[keys[f.name]] = value
            else:
                fields[f.name] = list(value) if isinstance(value, tuple) else value
        ops.append({"name": name, "type": type(node).__name__, "inputs": inputs,
                    "output": f"{name}:output", "fields": fields, "arrays": keys,
                    "metadata": _plain(dict(node.metadata))})
    edges = []
    for src, dst in graph.edges:
        target, port = split_port(dst, graph.nodes)
        edges.append((f"{src}:output" if src in ext else src,
                      f"{target}:{port}" if target in ext else dst))
    manifest = {"format": PORTABLE_FORMAT, "version": 1, "graph": PORTABLE_GRAPH,
                "arrays": PORTABLE_ARRAYS, "input": graph.input_name, "output": graph.output_name,
                "semantics": "docs/nir-extensions.md of nmc-deploy", "extension_ops": ops}
    md = {**_meta(graph.metadata), "nmc_deploy_portable": PORTABLE_MANIFEST}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=md, type_check=False), manifest, arrays


def write_portable(graph: Graph, directory: str | Path) -> Path:
    """Write ``directory/`` with graph.nir (standard NIR only), manifest.json and
    extensions.npz; built in a temporary directory and renamed, so no partial output."""
    import json
    import shutil

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputFileError(f"{directory}: exists and is not a directory; choose another -o")
    nir_graph, manifest, arrays = to_portable(graph)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        compression = None if _has_scalar_array(nir_graph) else "gzip"
        nir.write(tmp / PORTABLE_GRAPH, nir_graph, compression=compression)
        (tmp / PORTABLE_MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_plain))
        np.savez_compressed(tmp / PORTABLE_ARRAYS, **arrays)
        directory.mkdir(exist_ok=True)
        for name in (PORTABLE_GRAPH, PORTABLE_MANIFEST, PORTABLE_ARRAYS):
            os.replace(tmp / name, directory / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _json_plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def read_portable(directory: str | Path) -> Graph:
    """Join a portable export back into one graph IR (extension nodes restored)."""
    import json

    directory = Path(directory)
    mpath = directory / PORTABLE_MANIFEST
    if not mpath.exists():
        raise InputFileError(f"{directory}: no {PORTABLE_MANIFEST}; give the directory written "
                             "by `nmc-deploy export --portable`")
    try:
        return _join_portable(directory, mpath, json)
    except (InputFileError, GraphError):
        raise
    except Exception as exc:
        raise InputFileError(f"{directory}: corrupt portable export ({type(exc).__name__}: "
                             f"{str(exc)[:80]}); export it again") from None


def _join_portable(directory: Path, mpath: Path, json) -> Graph:
    manifest = json.loads(mpath.read_text())
    if manifest.get("format") != PORTABLE_FORMAT:
        raise ValueError("wrong format tag")
    g = nir.read(str(directory / PORTABLE_GRAPH))
    arrays = np.load(directory / PORTABLE_ARRAYS)
    nodes, edges = dict(g.nodes), [tuple(map(str, e)) for e in g.edges]
    rename_src, rename_dst = {}, {}
    for op in manifest["extension_ops"]:
        name, kind = op["name"], op["type"]
        values = {**op["fields"], **{f: arrays[k] for f, k in op["arrays"].items()}}
        md = {**op.get("metadata", {}), "extension": EXTENSION_NAMESPACE}
        if kind == "SpikingSelfAttention":
            node = NirSpikingSelfAttention(
                num_heads=_arr([values["num_heads"]]), dim=_arr([values["dim"]]),
                n_tokens=_arr([values["n_tokens"]]), scale=_arr([values["scale"]], np.float64),
                metadata=md)
        elif kind == "TokenSelect":
            node = NirTokenSelect(
                w1=values["w1"], b1=values["b1"], w2=values["w2"], b2=values["b2"],
                dim=_arr([values["dim"]]), n_tokens=_arr([values["n_tokens"]]),
                n_keep=_arr([values["n_keep"]]), time_steps=_arr([values["time_steps"]]),
                metadata={**md, "gates": ",".join(values.get("gates", [])),
                          "previous": values.get("previous", "")})
        else:
            raise GraphError(f"{directory}: extension op '{name}' has unknown type '{kind}'")
        for port, boundary in op["inputs"].items():
            nodes.pop(boundary, None)
            rename_dst[boundary] = f"{name}.{port}" if len(op["inputs"]) > 1 else name
        nodes.pop(op["output"], None)
        rename_src[op["output"]] = name
        nodes[name] = node
    edges = [(rename_src.get(s, s), rename_dst.get(d, d)) for s, d in edges]
    joined = nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(g.metadata or {}),
                          type_check=False)
    graph = from_nir(joined)
    md = dict(graph.metadata)
    md.pop("nmc_deploy_portable", None)
    return dataclasses.replace(graph, metadata=md)


# ---------------------------------------------------------------------------------------------
# NIRData: inputs and recorded activity

def read_nirdata_input(path: str | Path, input_name: str, dt: float) -> np.ndarray:
    """The input sequence ``(B, T, n)`` stored in a NIRData file for node ``input_name``.

    The node's first observable is used: ``TimeGriddedData`` (``data`` (B, T, n); its ``dt``
    must equal the program's) or ``EventData``/``ValuedEventData`` (events binned on the
    program's dt grid; ``idx``/``time``/``value`` are (B, n_events) arrays). A file with a
    single node is accepted whatever its name.
    """
    path = Path(path)
    try:
        data = nir.read_data(str(path))
    except Exception as exc:
        raise InputFileError(f"{path}: not a NIRData file ({type(exc).__name__}); give a .npy "
                             "array or a file written by nir.write_data") from None
    nodes = dict(data.nodes)
    if input_name in nodes:
        node = nodes[input_name]
    elif len(nodes) == 1:
        node = next(iter(nodes.values()))
    else:
        raise InputFileError(f"{path}: no data for the graph input '{input_name}' (nodes: "
                             f"{', '.join(sorted(nodes))}); name the node like the Input")
    observables = dict(getattr(node, "observables", {}) or {})
    if not observables:
        raise InputFileError(f"{path}: node '{input_name}' holds no observables")
    obs = next(iter(observables.values()))
    kind = type(obs).__name__
    if kind == "TimeGriddedData":
        if not np.isclose(float(obs.dt), dt, rtol=1e-9, atol=0.0):
            raise InputFileError(f"{path}: data dt ({float(obs.dt):g} s) differs from the "
                                 f"program's dt ({dt:g} s); resample the data")
        arr = np.asarray(obs.data)
        return arr[None] if arr.ndim == 2 else arr
    if kind in ("EventData", "ValuedEventData"):
        idx = np.atleast_2d(np.asarray(obs.idx))
        times = np.atleast_2d(np.asarray(obs.time, np.float64))
        values = (np.atleast_2d(np.asarray(obs.value)) if kind == "ValuedEventData"
                  else np.ones(idx.shape, np.int64))
        n_neurons, t_max = int(obs.n_neurons), float(obs.t_max)
        steps = int(np.ceil(t_max / dt - 1e-9))
        # nir pads samples with fewer events with idx = -1 and time = inf
        real = (idx >= 0) & np.isfinite(times)
        bad = real & ((times < 0) | (times >= t_max) | (idx >= n_neurons))
        if np.any(bad):
            b, e = np.argwhere(bad)[0]
            raise InputFileError(f"{path}: event {e} of sample {b} (neuron {int(idx[b, e])}, "
                                 f"time {times[b, e]:g} s) is outside 0..{n_neurons - 1} x "
                                 f"[0, t_max {t_max:g} s)")
        out = np.zeros((idx.shape[0], steps, n_neurons), values.dtype)
        for b in range(idx.shape[0]):
            keep = real[b]
            t = np.minimum((times[b][keep] / dt + 1e-9).astype(np.int64), steps - 1)
            np.add.at(out[b], (t, idx[b][keep].astype(np.int64)), values[b][keep])
        return out
    raise InputFileError(f"{path}: observable type '{kind}' is not supported")


def write_nirdata(path: str | Path, traces: dict[str, dict[str, np.ndarray]], dt: float) -> Path:
    """Write recorded activity as NIRData: ``traces[node][observable]`` = (B, T, n) arrays
    (observables "spikes" or "v"), each a ``TimeGriddedData`` with ``dt``; atomically. Nodes
    of flattened subgraphs (``g/n``) are stored under a nested ``NIRGraphData`` ``g``, as
    NIRData keys data to the graph's own nesting."""
    path = Path(path)
    tree: dict = {}
    for name, obs in traces.items():  # "g/n" (flattened subgraph node) -> nested graph data
        *groups, leaf = name.split(SUBGRAPH_SEPARATOR)
        level = tree
        for g in groups:
            level = level.setdefault(g, {})
        level[leaf] = nir.NIRNodeData(observables={
            k: nir.TimeGriddedData(data=np.asarray(v), dt=float(dt)) for k, v in obs.items()})

    # nir 1.0.8's write_data recurses forever on nested NIRGraphData (its inner writer
    # iterates the outer graph); write nir's layout ourselves (read back by nir.read_data)
    import h5py

    def write_level(group, level):
        group.attrs["__type__"] = "NIRGraphData"
        nodes_group = group.create_group("nodes")
        for key, value in level.items():
            g = nodes_group.create_group(key)
            if isinstance(value, dict):
                write_level(g, value)
                continue
            g.attrs["__type__"] = "NIRNodeData"
            obs_group = g.create_group("observables")
            for obs_name, obs in value.observables.items():
                og = obs_group.create_group(obs_name)
                og.attrs["__type__"] = "TimeGriddedData"
                og.create_dataset("data", data=obs.data, compression="gzip")
                og.attrs["dt"] = obs.dt

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write_level(f, tree)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write the recording ({exc.strerror or exc}); "
                             "choose another --record path") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
