"""NIR files <-> graph IR. The only module of nmc-deploy that imports ``nir``.

Writing uses standard NIR nodes wherever NIR has one, plus our extension node
``SpikingSelfAttention`` (schema: docs/nir-extensions.md). Edges into the extension node
address its ports as ``"node.q"``, ``"node.k"``, ``"node.v"``, which NIR 1.0.8 stores but does
not type-check, so files are written and read with ``type_check=False``. Importing this
module registers the extension with ``nir`` (idempotent), so ``nir.read`` opens our files.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GraphError, InputFileError
from . import nodes as ir
from .graph import Graph

import nir  # noqa: E402  (the one door for nir)
import nir.ir as _nir_ir

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "register_extensions",
           "NirSpikingSelfAttention", "NirTokenSelect"]

EXTENSION_NAMESPACE = "nmc_deploy"


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


def _arr(x, dtype=None):
    return np.array(x, dtype=dtype)


def _meta(m) -> dict:
    """Metadata that NIR can store (no None values)."""
    return {k: v for k, v in dict(m).items() if v is not None}


def _node_to_nir(node: ir.Node):
    md = _meta(node.metadata)
    if isinstance(node, ir.Input):
        return nir.Input(input_type=_arr(node.shape), metadata=md)
    if isinstance(node, ir.Output):
        return nir.Output(output_type=_arr(node.shape), metadata=md)
    if isinstance(node, ir.Affine):
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
    if isinstance(node, ir.SumPool2d):
        return nir.SumPool2d(kernel_size=_arr(node.kernel_size), stride=_arr(node.stride),
                             padding=_arr(node.padding),
                             metadata={**md, "input_chw": _arr(node.input_chw)})
    if isinstance(node, ir.Threshold):
        return nir.Threshold(threshold=_arr(node.threshold), metadata=md)
    if isinstance(node, ir.Flatten):
        return nir.Flatten(input_type={"input": _arr(node.input_type)}, start_dim=node.start_dim,
                           end_dim=node.end_dim, metadata=md)
    if isinstance(node, ir.LIF):
        return nir.LIF(tau=_arr(node.tau), r=_arr(node.r), v_leak=_arr(node.v_leak),
                       v_threshold=_arr(node.v_threshold), v_reset=_arr(node.v_reset),
                       metadata=md)
    if isinstance(node, ir.Integrator):
        return nir.I(r=_arr(node.r), metadata=md)
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


def to_nir(graph: Graph) -> "nir.NIRGraph":
    """Convert a graph IR to a ``nir.NIRGraph`` (not type-checked: port-addressed edges)."""
    nodes = {name: _node_to_nir(node) for name, node in graph.nodes.items()}
    return nir.NIRGraph(nodes=nodes, edges=[tuple(e) for e in graph.edges],
                        metadata=_meta(graph.metadata), type_check=False)


def write_nir(graph: Graph, path: str | Path) -> Path:
    """Write ``graph`` as a NIR (HDF5) file atomically: a partial file is never left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".nir", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, to_nir(graph))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _scalar(x) -> float:
    return float(np.ravel(np.asarray(x))[0])


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


def _node_from_nir(name: str, node) -> ir.Node:
    md = _plain(dict(getattr(node, "metadata", {}) or {}))
    kind = type(node).__name__
    if kind == "Input":
        return ir.Input(shape=tuple(np.ravel(node.input_type["input"]).astype(int)), metadata=md)
    if kind == "Output":
        return ir.Output(shape=tuple(np.ravel(node.output_type["output"]).astype(int)),
                         metadata=md)
    if kind == "Affine":
        return ir.Affine(weight=node.weight, bias=node.bias, metadata=md)
    if kind == "Linear":
        w = np.asarray(node.weight)
        return ir.Affine(weight=w, bias=np.zeros(w.shape[0], w.dtype), metadata=md)
    if kind == "Conv2d":
        if node.input_shape is None:
            raise GraphError(f"node '{name}': Conv2d without input_shape; set it when exporting")
        if isinstance(node.padding, str):
            raise GraphError(f"node '{name}': Conv2d padding '{node.padding}' is not supported; "
                             "export explicit integer padding")
        w = np.asarray(node.weight)
        bias = np.zeros(w.shape[0]) if node.bias is None else node.bias
        return ir.Conv2d(weight=w, bias=bias, input_hw=node.input_shape, stride=node.stride,
                         padding=node.padding, dilation=node.dilation, groups=int(node.groups),
                         metadata=md)
    if kind == "Conv1d":
        if node.input_shape is None:
            raise GraphError(f"node '{name}': Conv1d without input_shape; set it when exporting")
        w = np.asarray(node.weight)
        bias = np.zeros(w.shape[0]) if node.bias is None else node.bias
        return ir.Conv1d(weight=w, bias=bias, input_length=int(_scalar(node.input_shape)),
                         stride=int(_scalar(node.stride)), padding=int(_scalar(node.padding)),
                         dilation=int(_scalar(node.dilation)), groups=int(node.groups),
                         metadata=md)
    if kind == "Scale":
        return ir.Scale(scale=node.scale, metadata=md)
    if kind == "SumPool2d":
        chw = md.pop("input_chw", None)
        if chw is None:
            raise GraphError(f"node '{name}': SumPool2d without input shape metadata "
                             "'input_chw'; graphs from other tools are supported from issue 4 on")
        return ir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride,
                            padding=node.padding, input_chw=chw, metadata=md)
    if kind == "Threshold":
        return ir.Threshold(threshold=node.threshold, metadata=md)
    if kind == "Flatten":
        return ir.Flatten(input_type=tuple(np.ravel(node.input_type["input"]).astype(int)),
                          start_dim=int(node.start_dim), end_dim=int(node.end_dim), metadata=md)
    if kind == "LIF":
        return ir.LIF(tau=node.tau, r=node.r, v_leak=node.v_leak, v_threshold=node.v_threshold,
                      v_reset=node.v_reset, metadata=md)
    if kind == "I":
        return ir.Integrator(r=node.r, metadata=md)
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
        return ir.TokenSelect(w1=node.w1, b1=node.b1, w2=node.w2, b2=node.b2,
                              dim=int(_scalar(node.dim)), n_tokens=int(_scalar(node.n_tokens)),
                              n_keep=int(_scalar(node.n_keep)),
                              time_steps=int(_scalar(node.time_steps)),
                              gates=tuple(g for g in gates.split(",") if g), previous=previous,
                              metadata=md)
    supported = "Input, Output, Affine, Linear, Conv1d, Conv2d, Scale, SumPool2d, Threshold, " \
                "Flatten, LIF, I, SpikingSelfAttention, TokenSelect"
    raise GraphError(f"node '{name}': unsupported NIR node type '{kind}'; supported: {supported}")


def from_nir(graph) -> Graph:
    """Convert a ``nir.NIRGraph`` to the graph IR."""
    nodes = {name: _node_from_nir(name, node) for name, node in graph.nodes.items()}
    return Graph(nodes=nodes, edges=tuple((str(a), str(b)) for a, b in graph.edges),
                 metadata=_plain(dict(graph.metadata or {})))


def read_nir(path: str | Path) -> Graph:
    """Read a NIR file into the graph IR; every failure is one :class:`InputFileError` line."""
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
    except InputFileError:
        raise
    except Exception as exc:  # h5py raises OSError subclasses with long texts
        raise InputFileError(f"{path}: not a NIR file (cannot open as HDF5: "
                             f"{str(exc).splitlines()[0][:80]}); re-export it with "
                             "`nmc-deploy export`") from exc
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:
        raise InputFileError(f"{path}: corrupt or unsupported NIR file ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:100] if str(exc) else ''}); "
                             "re-export it with `nmc-deploy export`") from exc
    try:
        return from_nir(graph)
    except GraphError as exc:
        raise GraphError(f"{path}: {exc}") from exc
