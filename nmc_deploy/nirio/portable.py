"""The portable export: standard NIR only, our extension ops described by a manifest.

A portable export is a directory with ``graph.nir`` (standard NIR nodes only),
``manifest.json`` (per extension op: its type, scalar fields, the keys of its array fields
and its boundary nodes) and ``extensions.npz`` (the array fields). Tools that know only
standard NIR can run the graph around the extension ops; :func:`read_portable` joins the
three files back into one graph IR.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

import nir  # noqa: E402  (nmc_deploy.nirio is the one door for nir)

from ..checks import input_file, newer_version, read_json
from ..errors import GraphError, InputFileError
from ..fileio import atomic_path, json_default
from ..ir import nodes as ir
from ..ir.graph import Graph, split_port
from .coerce import to_plain, to_storable_metadata
from .read import from_nir
from .table import CODECS, is_extension, node_to_nir
from .write import write_nir_graph

__all__ = ["PORTABLE_GRAPH", "PORTABLE_MANIFEST", "PORTABLE_ARRAYS", "PORTABLE_FORMAT",
           "PORTABLE_VERSION", "to_portable", "write_portable", "read_portable"]

PORTABLE_GRAPH = "graph.nir"
PORTABLE_MANIFEST = "manifest.json"
PORTABLE_ARRAYS = "extensions.npz"
PORTABLE_FORMAT = "nmc-deploy-portable"
PORTABLE_VERSION = 1
_MANIFEST_INDENT = 1


def _describe_op(name: str, node, arrays: dict) -> dict:
    """The manifest entry of extension node ``name``; its array fields go into ``arrays``."""
    inputs = {port: f"{name}:{port}" for port in node.input_ports}
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
    return {"name": name, "type": type(node).__name__, "inputs": inputs,
            "output": f"{name}:output", "fields": fields, "arrays": keys,
            "metadata": to_plain(dict(node.metadata))}


def to_portable(graph: Graph) -> tuple["nir.NIRGraph", dict, dict]:
    """Split ``graph`` into a standard-only ``nir.NIRGraph``, a manifest and arrays (pure).

    Every extension node ``X`` is cut out: each of its input ports ``p`` becomes an
    ``Output`` node ``X:p`` (what X would read), its output becomes an ``Input`` node
    ``X:output`` (what X would produce). The manifest lists, per extension op, its type, its
    scalar fields, the keys of its array fields in the arrays dict, and those boundary nodes;
    a reader executes the standard graph up to the ``X:p`` outputs, applies X (semantics in
    docs/nir-extensions.md) and feeds the result to ``X:output``.
    """
    ext = [n for n, v in graph.nodes.items() if is_extension(v)]
    nodes = {n: node_to_nir(v) for n, v in graph.nodes.items() if n not in ext}
    ops, arrays = [], {}
    for name in ext:
        node = graph.nodes[name]
        for port in node.input_ports:
            nodes[f"{name}:{port}"] = nir.Output(output_type=np.array(node.input_shape))
        nodes[f"{name}:output"] = nir.Input(input_type=np.array(node.output_shape))
        ops.append(_describe_op(name, node, arrays))
    edges = []
    for src, dst in graph.edges:
        target, port = split_port(dst, graph.nodes)
        edges.append((f"{src}:output" if src in ext else src,
                      f"{target}:{port}" if target in ext else dst))
    manifest = {"format": PORTABLE_FORMAT, "version": PORTABLE_VERSION, "graph": PORTABLE_GRAPH,
                "arrays": PORTABLE_ARRAYS, "input": graph.input_name, "output": graph.output_name,
                "semantics": "docs/nir-extensions.md of nmc-deploy", "extension_ops": ops}
    md = {**to_storable_metadata(graph.metadata), "nmc_deploy_portable": PORTABLE_MANIFEST}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=md, type_check=False), manifest, arrays


def write_portable(graph: Graph, directory: str | Path) -> Path:
    """Write ``directory/`` with graph.nir (standard NIR only), manifest.json and
    extensions.npz; the three files are renamed into place only after all three are written,
    so a failure leaves no partial output."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputFileError(f"{directory}: exists and is not a directory; choose another -o")
    nir_graph, manifest, arrays = to_portable(graph)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(directory / PORTABLE_GRAPH, suffix=".nir") as graph_tmp, \
                atomic_path(directory / PORTABLE_MANIFEST) as manifest_tmp, \
                atomic_path(directory / PORTABLE_ARRAYS) as arrays_tmp:
            write_nir_graph(nir_graph, graph_tmp)
            manifest_tmp.write_text(json.dumps(manifest, indent=_MANIFEST_INDENT,
                                               default=json_default))
            with open(arrays_tmp, "xb") as f:  # a file: np.savez would append ".npz" to a name
                np.savez_compressed(f, **arrays)
    except BaseException:
        if created and not any(directory.iterdir()):
            directory.rmdir()
        raise
    return directory


def read_portable(directory: str | Path) -> Graph:
    """Join a portable export back into one graph IR (extension nodes restored)."""
    directory = Path(directory)
    mpath = directory / PORTABLE_MANIFEST
    if not mpath.exists() and not mpath.is_symlink():
        raise InputFileError(f"{directory}: no {PORTABLE_MANIFEST}; give the directory written "
                             "by `nmc-deploy export --portable`")
    try:
        return _join_portable(directory, mpath)
    except (InputFileError, GraphError):
        raise
    except Exception as exc:
        raise InputFileError(f"{directory}: corrupt portable export ({type(exc).__name__}: "
                             f"{str(exc)[:80]}); export it again") from None


def _extension_types() -> dict[str, type]:
    """The IR node types written as extension ops, by the type name the manifest records."""
    return {c.ir_type.__name__: c.ir_type for c in CODECS.values() if c.is_extension}


def _extension_node(directory: Path, op: dict, arrays) -> ir.Node:
    """The IR node of one manifest entry (its scalar fields and its arrays)."""
    name, kind = op["name"], op["type"]
    values = {**op["fields"], **{f: arrays[k] for f, k in op["arrays"].items()}}
    md = op.get("metadata", {})
    ir_type = _extension_types().get(kind)
    if ir_type is None:
        raise GraphError(f"{directory}: extension op '{name}' has unknown type '{kind}'")
    kwargs = {f.name: values[f.name] for f in dataclasses.fields(ir_type)
              if f.name != "metadata" and (f.name in values or _required(f))}
    return ir_type(**kwargs, metadata=md)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _read_nir_graph(path: Path):
    """The ``nir.NIRGraph`` of a portable export's graph.nir, its values checked as
    :func:`~.read.read_nir` checks them (regular file, finite numbers, shapes, timing)."""
    from .read import _check_types, _nir_graph_from_dict, _read_file_dict
    from .values import check_graph_metadata

    input_file(path, "export it again", what="NIR file")
    data = _read_file_dict(path)
    _check_types(data, "")
    check_graph_metadata(data.get("metadata") or {})
    try:
        return _nir_graph_from_dict(data, "")
    except InputFileError as exc:
        raise InputFileError(f"{path}: {exc}") from None


def _join_portable(directory: Path, mpath: Path) -> Graph:
    manifest = read_json(mpath, "export it again", what="portable manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != PORTABLE_FORMAT:
        raise ValueError("wrong format tag")
    newer_version(str(mpath), manifest.get("version"), PORTABLE_VERSION)
    g = _read_nir_graph(directory / PORTABLE_GRAPH)
    arrays = np.load(input_file(directory / PORTABLE_ARRAYS, "export it again"),
                     allow_pickle=False)
    nodes, edges = dict(g.nodes), [tuple(map(str, e)) for e in g.edges]
    rename_src, rename_dst = {}, {}
    for op in manifest["extension_ops"]:
        name = op["name"]
        node = node_to_nir(_extension_node(directory, op, arrays))
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
