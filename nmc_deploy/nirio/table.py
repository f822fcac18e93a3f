"""The one node table: per graph-IR node type, how it is written as and read from a NIR node.

:data:`CODECS` maps each IR node type to a :class:`NodeCodec`: the NIR node type names it is
read from, a writer (IR node -> NIR node) and a reader (NIR node plus the shapes arriving at
its ports -> IR node). :func:`node_to_nir` and :func:`node_from_nir` dispatch on it (the
writer by the IR type's MRO, the reader by the NIR type name); writing graphs, reading graphs
and the portable format all go through these two functions.

Per-node rules implemented here
-------------------------------
* ``Linear`` becomes ``Affine`` with a zero bias and metadata ``{"nir_type": "Linear"}``;
  it is written back as ``nir.Linear`` while the bias stays zero.
* **Broadcasting.** Elementwise nodes (neurons, Threshold, Scale, Delay, I) whose parameters
  all hold one element (norse writes 0-d arrays) take the shape of their input when it is
  known, with metadata ``nir_param_shape``; otherwise they keep the shape as given. In a
  lenient reading (:mod:`~nmc_deploy.nirio.shapes`) parameters of another layout with the
  incoming number of elements are reshaped to the incoming shape, likewise noted.
* **Open shapes.** Conv1d/Conv2d without ``input_shape``, SumPool2d/AvgPool2d without the
  ``input_chw`` metadata we write, and Flatten without ``input_type`` (or with zeros, as
  sinabs once wrote) take the shape arriving at their input.
* **Batch dimension.** An ``Input`` of shape ``(1, *s)`` (norse 1.1.0 exports
  ``Input([1, n])``) becomes ``Input(s)`` in the readings that strip it (only chosen when the
  graph is consistent with ``s`` and not with ``(1, *s)``); an ``Output`` declared ``(1, *s)``
  that receives ``s`` becomes ``s``. Both keep the file's shape in metadata
  ``nir_declared_shape``.
* Extension nodes carry metadata ``{"extension": "nmc_deploy"}`` in NIR (dropped on reading);
  TokenSelect's gates and previous selector travel as metadata strings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

import nir  # noqa: E402  (nmc_deploy.nirio is the one door for nir)

from ..errors import GraphError
from ..ir import nodes as ir
from .coerce import (format_shape, kind_of, to_array, to_numpy, to_plain, to_scalar, to_shape,
                     to_storable_metadata)
from .extensions import (EXTENSION_NAMESPACE, EXTENSION_NODE_TYPES, NirSpikingSelfAttention,
                         NirTokenSelect)
from .shapes import Incoming, ShapeError, mismatch, size_of

__all__ = ["NodeCodec", "NirRead", "CODECS", "STANDARD_NODE_TYPES", "codec_for",
           "node_to_nir", "node_from_nir", "is_extension", "supported_text"]

STANDARD_NODE_TYPES = ("Input", "Output", "NIRGraph", "Affine", "Linear", "Scale", "Conv1d",
                       "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Delay", "Threshold", "I",
                       "IF", "LI", "LIF", "CubaLI", "CubaLIF")
_BATCH_NOTE = "leading batch dimension 1 removed (norse 1.1.0 writes one)"


@dataclass(frozen=True)
class NirRead:
    """What a reader gets: one NIR node of a flat graph and the shapes arriving at it."""

    name: str  # flat node name ("g/n" inside subgraph g)
    kind: str  # NIR type name
    node: Any  # the nir.NIRNode
    incoming: Mapping[str, Incoming]  # port -> (shape, source names); recurrent edges excluded
    lenient: bool  # a shape of another layout with the same number of elements is accepted
    strip_input: bool  # drop a leading batch dimension 1 from Input shapes
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the node's metadata, plain

    @property
    def inc(self) -> Incoming | None:
        """What arrives at the ``input`` port (None when nothing does)."""
        return self.incoming.get("input")


@dataclass(frozen=True)
class NodeCodec:
    """How one IR node type is written as and read from NIR nodes."""

    ir_type: type  # the graph-IR node class
    nir_types: tuple[str, ...]  # NIR type names read as ir_type
    write: Callable[[Any, dict], Any]  # (IR node, storable metadata) -> nir.NIRNode
    read: Callable[[NirRead], Any]  # NirRead -> IR node

    @property
    def is_extension(self) -> bool:
        """Whether the node is written as one of our NIR extension nodes."""
        return any(t in EXTENSION_NODE_TYPES for t in self.nir_types)


def supported_text() -> str:
    """The NIR node types we read, for messages."""
    return (f"{', '.join(STANDARD_NODE_TYPES)} and nmc-deploy's extensions "
            f"{', '.join(EXTENSION_NODE_TYPES)}")


# ---------------------------------------------------------------------------------------------
# reading helpers

def _pairs(x, name, field_name) -> tuple[int, int]:
    arr = np.ravel(to_numpy(x)).astype(int)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2:
        raise GraphError(f"node '{name}': {field_name} ({arr.tolist()}) needs 1 or 2 values")
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
    arr = np.ravel(to_numpy(padding)).astype(int)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    return tuple(int(v) for v in arr)


def _bias_or_zeros(bias, w: np.ndarray) -> np.ndarray:
    bias = to_numpy(bias)
    return np.zeros(w.shape[0], w.dtype) if bias is None else bias


# ---------------------------------------------------------------------------------------------
# Input, Output

def _write_input(node: ir.Input, md: dict):
    return nir.Input(input_type=to_array(node.shape), metadata=md)


def _read_input(r: NirRead) -> ir.Input:
    node, md = r.node, dict(r.metadata)
    shape = to_shape(node.input_type.get("input") if node.input_type else None)
    if shape is None:
        raise GraphError(f"node '{r.name}' (Input): no shape; the Input node needs one")
    if r.strip_input and len(shape) >= 2 and shape[0] == 1:
        md = {**md, "nir_declared_shape": str(shape), "nir_note": _BATCH_NOTE}
        shape = shape[1:]
    return ir.Input(shape=shape, metadata=md)


def _write_output(node: ir.Output, md: dict):
    return nir.Output(output_type=to_array(node.shape), metadata=md)


def _read_output(r: NirRead) -> ir.Output:
    node, md, inc = r.node, dict(r.metadata), r.inc
    declared = to_shape(node.output_type.get("output") if node.output_type else None)
    if inc is None:
        if declared is None:
            raise ShapeError(f"node '{r.name}' (Output): no shape and no input to infer it "
                             "from")
        return ir.Output(shape=declared, metadata=md)
    got = tuple(inc[0])
    if declared is not None and declared != got:
        if declared == (1,) + got:
            md = {**md, "nir_declared_shape": str(declared), "nir_note": _BATCH_NOTE}
        elif r.lenient and size_of(declared) == size_of(got):
            md = {**md, "nir_declared_shape": str(declared)}
        else:
            raise mismatch(r.name, r.kind, "input", inc, declared)
    return ir.Output(shape=got, metadata=md)


# ---------------------------------------------------------------------------------------------
# elementwise nodes: one NIR type each, the same field names in NIR and in the IR

def _write_elementwise(kind: str, fields: tuple[str, ...], node: ir.Node, md: dict):
    return getattr(nir, kind)(**{f: to_array(getattr(node, f)) for f in fields}, metadata=md)


def _read_elementwise(ir_type: type, fields: tuple[str, ...], r: NirRead) -> ir.Node:
    name, kind, node, inc, md = r.name, r.kind, r.node, r.inc, dict(r.metadata)
    params = {}
    for f in fields:
        value = getattr(node, f, None)
        if value is None and f == "v_reset":
            value = np.zeros_like(to_numpy(node.v_threshold))
        if value is None:
            raise GraphError(f"node '{name}' ({kind}): parameter {f} is missing")
        params[f] = to_numpy(value)
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
        elif r.lenient and size_of(target) == big.size:
            params = {f: a.reshape(target) for f, a in params.items()}
        else:
            raise mismatch(name, kind, "input", inc, shape_p)
        md = {**md, "nir_param_shape": str(tuple(shape_p))}
    return ir_type(**params, metadata=md)


def _elementwise(ir_type: type, kind: str, fields: tuple[str, ...]) -> NodeCodec:
    return NodeCodec(ir_type, (kind,), partial(_write_elementwise, kind, fields),
                     partial(_read_elementwise, ir_type, fields))


# ---------------------------------------------------------------------------------------------
# Affine and Linear

def _write_affine(node: ir.Affine, md: dict):
    nir_type = md.pop("nir_type", None)
    if nir_type == "Linear" and not np.any(node.bias):
        return nir.Linear(weight=to_array(node.weight), metadata=md)
    return nir.Affine(weight=to_array(node.weight), bias=to_array(node.bias), metadata=md)


def _read_affine(r: NirRead) -> ir.Affine:
    md = dict(r.metadata)
    w = to_numpy(r.node.weight)
    if w.ndim != 2:
        raise GraphError(f"node '{r.name}' ({r.kind}): weight with {w.ndim} dims (a batch of "
                         "matrices) is not supported; only (out, in) weights are")
    if r.kind == "Linear":
        bias = np.zeros(w.shape[0], w.dtype)
        md = {**md, "nir_type": "Linear"}
    else:
        bias = _bias_or_zeros(r.node.bias, w)
    return ir.Affine(weight=w, bias=bias, metadata=md)


# ---------------------------------------------------------------------------------------------
# convolutions

def _write_conv2d(node: ir.Conv2d, md: dict):
    return nir.Conv2d(input_shape=tuple(node.input_hw), weight=to_array(node.weight),
                      stride=to_array(node.stride), padding=to_array(node.padding),
                      dilation=to_array(node.dilation), groups=node.groups,
                      bias=to_array(node.bias), metadata=md)


def _open_input_shape(node) -> bool:
    return node.input_shape is None or np.size(to_numpy(node.input_shape)) == 0


def _conv_input(r: NirRead, n: int, weight_layout: str, read_declared: Callable,
                spatial_names: tuple[str, ...]) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """Weight, groups and spatial input size of a Conv1d (``n`` 1) or Conv2d (``n`` 2) node.

    The spatial size is the node's ``input_shape`` (read by ``read_declared``) or, when the
    file leaves it open, the shape arriving at the input.
    """
    w = to_numpy(r.node.weight)
    if w.ndim != n + 2:
        raise GraphError(f"node '{r.name}' ({r.kind}): weight.shape={w.shape}; expected "
                         f"{weight_layout}")
    groups = int(to_scalar(r.node.groups))
    if not _open_input_shape(r.node):
        return w, groups, read_declared(r.node.input_shape)
    inc = r.inc
    if inc is None:
        raise ShapeError(f"node '{r.name}' ({r.kind}): cannot infer its input shape (no "
                         "input_shape and no predecessor with a known shape); set input_shape "
                         "when exporting")
    if len(inc[0]) != n + 1:
        raise mismatch(r.name, r.kind, "input", inc, (w.shape[1] * groups, *spatial_names))
    return w, groups, tuple(inc[0][1:])


def _read_conv2d(r: NirRead) -> ir.Conv2d:
    name, node = r.name, r.node
    w, groups, hw = _conv_input(r, 2, "(C_out, C_in/groups, kH, kW)",
                                lambda x: _pairs(x, name, "input_shape"), ("H", "W"))
    stride = _pairs(node.stride, name, "stride")
    dilation = _pairs(node.dilation, name, "dilation")
    padding = _conv_padding(node.padding, w.shape[2:], stride, dilation, name, r.kind, 2)
    return ir.Conv2d(weight=w, bias=_bias_or_zeros(node.bias, w), input_hw=hw, stride=stride,
                     padding=padding, dilation=dilation, groups=groups, metadata=dict(r.metadata))


def _write_conv1d(node: ir.Conv1d, md: dict):
    return nir.Conv1d(input_shape=node.input_length, weight=to_array(node.weight),
                      stride=node.stride, padding=node.padding, dilation=node.dilation,
                      groups=node.groups, bias=to_array(node.bias), metadata=md)


def _read_conv1d(r: NirRead) -> ir.Conv1d:
    name, node = r.name, r.node
    w, groups, (length,) = _conv_input(r, 1, "(C_out, C_in/groups, K)",
                                       lambda x: (int(to_scalar(x)),), ("N",))
    stride = int(to_scalar(node.stride))
    dilation = int(to_scalar(node.dilation))
    padding = _conv_padding(node.padding, w.shape[2:], (stride,), (dilation,), name, r.kind,
                            1)[0]
    return ir.Conv1d(weight=w, bias=_bias_or_zeros(node.bias, w), input_length=int(length),
                     stride=stride, padding=padding, dilation=dilation, groups=groups,
                     metadata=dict(r.metadata))


# ---------------------------------------------------------------------------------------------
# pooling and Flatten

def _write_pool(kind: str, node, md: dict):
    return getattr(nir, kind)(kernel_size=to_array(node.kernel_size),
                              stride=to_array(node.stride), padding=to_array(node.padding),
                              metadata={**md, "input_chw": to_array(node.input_chw)})


def _read_pool(ir_type: type, r: NirRead) -> ir.Node:
    name, node, inc, md = r.name, r.node, r.inc, dict(r.metadata)
    chw = md.pop("input_chw", None)
    chw = None if chw is None else to_shape(chw)
    if chw is None:
        if inc is None:
            raise ShapeError(f"node '{name}' ({r.kind}): cannot infer its input shape (no "
                             "predecessor with a known shape)")
        if len(inc[0]) != 3:
            raise mismatch(name, r.kind, "input", inc, ("C", "H", "W"))
        chw = tuple(inc[0])
    return ir_type(kernel_size=_pairs(node.kernel_size, name, "kernel_size"),
                   stride=_pairs(node.stride, name, "stride"),
                   padding=_pairs(node.padding, name, "padding"), input_chw=chw, metadata=md)


def _pool(ir_type: type, kind: str) -> NodeCodec:
    return NodeCodec(ir_type, (kind,), partial(_write_pool, kind), partial(_read_pool, ir_type))


def _write_flatten(node: ir.Flatten, md: dict):
    return nir.Flatten(input_type={"input": to_array(node.input_type)}, start_dim=node.start_dim,
                       end_dim=node.end_dim, metadata=md)


def _read_flatten(r: NirRead) -> ir.Flatten:
    name, node, inc, md = r.name, r.node, r.inc, dict(r.metadata)
    declared = to_shape((node.input_type or {}).get("input"))
    if declared is not None and (len(declared) == 0 or 0 in declared):
        declared = None  # sinabs once wrote zeros for "unknown"
    if inc is not None and declared is not None and tuple(inc[0]) != declared \
            and r.lenient and size_of(inc[0]) == size_of(declared):
        md = {**md, "nir_declared_shape": str(declared)}
        declared = tuple(inc[0])
    if declared is None:
        if inc is None:
            raise ShapeError(f"node '{name}' (Flatten): cannot infer its input shape (no "
                             "input_type and no predecessor with a known shape)")
        declared = tuple(inc[0])
    start, end = int(to_scalar(node.start_dim)), int(to_scalar(node.end_dim))
    n = len(declared)
    if not (-n <= start < n and -n <= end < n and start % n <= end % n):
        raise GraphError(f"node '{name}' (Flatten): start_dim {start} and end_dim {end} do "
                         f"not fit its input shape {format_shape(declared)} (dims exclude batch)")
    return ir.Flatten(input_type=declared, start_dim=start, end_dim=end, metadata=md)


# ---------------------------------------------------------------------------------------------
# our extensions

def _write_attention(node: ir.SpikingSelfAttention, md: dict):
    return NirSpikingSelfAttention(
        num_heads=to_array([node.num_heads]), dim=to_array([node.dim]),
        n_tokens=to_array([node.n_tokens]), scale=to_array([node.scale], np.float64),
        metadata={**md, "extension": EXTENSION_NAMESPACE})


def _read_attention(r: NirRead) -> ir.SpikingSelfAttention:
    node, md = r.node, dict(r.metadata)
    md.pop("extension", None)
    return ir.SpikingSelfAttention(num_heads=int(to_scalar(node.num_heads)),
                                   dim=int(to_scalar(node.dim)),
                                   n_tokens=int(to_scalar(node.n_tokens)),
                                   scale=to_scalar(node.scale), metadata=md)


def _write_token_select(node: ir.TokenSelect, md: dict):
    return NirTokenSelect(
        w1=to_array(node.w1), b1=to_array(node.b1), w2=to_array(node.w2), b2=to_array(node.b2),
        dim=to_array([node.dim]), n_tokens=to_array([node.n_tokens]),
        n_keep=to_array([node.n_keep]), time_steps=to_array([node.time_steps]),
        metadata={**md, "extension": EXTENSION_NAMESPACE, "gates": ",".join(node.gates),
                  "previous": node.previous})


def _read_token_select(r: NirRead) -> ir.TokenSelect:
    node, md = r.node, dict(r.metadata)
    md.pop("extension", None)
    gates = str(md.pop("gates", "") or "")
    previous = str(md.pop("previous", "") or "")
    return ir.TokenSelect(w1=to_numpy(node.w1), b1=to_numpy(node.b1), w2=to_numpy(node.w2),
                          b2=to_numpy(node.b2), dim=int(to_scalar(node.dim)),
                          n_tokens=int(to_scalar(node.n_tokens)),
                          n_keep=int(to_scalar(node.n_keep)),
                          time_steps=int(to_scalar(node.time_steps)),
                          gates=tuple(g for g in gates.split(",") if g), previous=previous,
                          metadata=md)


# ---------------------------------------------------------------------------------------------
# the table

def _index(*codecs: NodeCodec) -> dict[type, NodeCodec]:
    return {c.ir_type: c for c in codecs}


#: Every graph-IR node type and how it converts to and from NIR.
CODECS: dict[type, NodeCodec] = _index(
    NodeCodec(ir.Input, ("Input",), _write_input, _read_input),
    NodeCodec(ir.Output, ("Output",), _write_output, _read_output),
    NodeCodec(ir.Affine, ("Affine", "Linear"), _write_affine, _read_affine),
    _elementwise(ir.Scale, "Scale", ("scale",)),
    NodeCodec(ir.Conv1d, ("Conv1d",), _write_conv1d, _read_conv1d),
    NodeCodec(ir.Conv2d, ("Conv2d",), _write_conv2d, _read_conv2d),
    _pool(ir.SumPool2d, "SumPool2d"),
    _pool(ir.AvgPool2d, "AvgPool2d"),
    NodeCodec(ir.Flatten, ("Flatten",), _write_flatten, _read_flatten),
    _elementwise(ir.Delay, "Delay", ("delay",)),
    _elementwise(ir.Threshold, "Threshold", ("threshold",)),
    _elementwise(ir.Integrator, "I", ("r",)),
    _elementwise(ir.IF, "IF", ("r", "v_threshold", "v_reset")),
    _elementwise(ir.LI, "LI", ("tau", "r", "v_leak")),
    _elementwise(ir.LIF, "LIF", ("tau", "r", "v_leak", "v_threshold", "v_reset")),
    _elementwise(ir.CubaLI, "CubaLI", ("tau_syn", "tau_mem", "r", "v_leak", "w_in")),
    _elementwise(ir.CubaLIF, "CubaLIF", ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                         "v_reset", "w_in")),
    NodeCodec(ir.SpikingSelfAttention, ("SpikingSelfAttention",), _write_attention,
              _read_attention),
    NodeCodec(ir.TokenSelect, ("TokenSelect",), _write_token_select, _read_token_select),
)
_BY_NIR_TYPE: dict[str, NodeCodec] = {t: c for c in CODECS.values() for t in c.nir_types}


def codec_for(ir_type: type) -> NodeCodec | None:
    """The codec of ``ir_type`` or of its nearest base class in the table (None if none)."""
    return next((CODECS[cls] for cls in ir_type.__mro__ if cls in CODECS), None)


def is_extension(node: ir.Node) -> bool:
    """Whether ``node`` is written as one of our NIR extension nodes."""
    codec = codec_for(type(node))
    return codec is not None and codec.is_extension


def node_to_nir(node: ir.Node):
    """The NIR node for IR ``node``: a standard one wherever NIR has one, else our extension."""
    md = to_storable_metadata(node.metadata)
    codec = codec_for(type(node))
    if codec is None:
        raise GraphError(f"Cannot write node of type '{type(node).__name__}' to NIR")
    return codec.write(node, md)


def node_from_nir(name: str, node, incoming: dict, lenient: bool,
                  strip_input: bool) -> ir.Node:
    """The IR node for NIR ``node`` given the shapes arriving at each port (or None)."""
    kind = kind_of(node)
    md = to_plain(dict(getattr(node, "metadata", None) or {}))
    codec = _BY_NIR_TYPE.get(kind)
    if codec is None:
        raise GraphError(f"node '{name}': unsupported NIR node type '{kind}'; supported: "
                         f"{supported_text()}")
    return codec.read(NirRead(name, kind, node, incoming, lenient, strip_input, md))
