"""NIRData files: input sequences read from them, recorded activity written to them."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

import nir  # noqa: E402  (nmc_deploy.nirio is the one door for nir)

from ..checks import input_file, number
from ..errors import InputFileError
from ..fileio import atomic_path
from .flatten import SUBGRAPH_SEPARATOR
from .values import MAX_TIME_STEPS

__all__ = ["read_nirdata_input", "read_nirdata_labels", "write_nirdata", "LABELS_NODE"]

# NIRData has no field for labels: ours are a node of this name whose first observable
# holds one integer per sample (TimeGriddedData of shape (B,), (B, 1) or (B, 1, 1)).
LABELS_NODE = "labels"

_TIME_EPS = 1e-9  # event times within this many steps of a grid point belong to it
_DT_RTOL = 1e-9  # relative tolerance between the data's dt and the program's


def _binned_events(path: Path, obs, kind: str, dt: float) -> np.ndarray:
    """Events of an ``EventData``/``ValuedEventData`` binned on the ``dt`` grid (B, T, n)."""
    idx = np.atleast_2d(np.asarray(obs.idx))
    times = np.atleast_2d(np.asarray(obs.time, np.float64))
    values = (np.atleast_2d(np.asarray(obs.value)) if kind == "ValuedEventData"
              else np.ones(idx.shape, np.int64))
    n_neurons = int(number(obs.n_neurons, str(path), "n_neurons", lo=1, integer=True,
                           error=InputFileError, hint="give the number of input neurons"))
    t_max = number(float(obs.t_max), str(path), "t_max", lo=0, lo_open=True,
                   hi=MAX_TIME_STEPS * dt, error=InputFileError,
                   hint=f"give the duration in seconds, at most {MAX_TIME_STEPS:,} steps")
    if np.any(np.isnan(times)):
        raise InputFileError(f"{path}: event times hold NaN; give times in seconds (padding "
                             "is idx -1, time inf)")
    steps = int(np.ceil(t_max / dt - _TIME_EPS))
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
        t = np.minimum((times[b][keep] / dt + _TIME_EPS).astype(np.int64), steps - 1)
        np.add.at(out[b], (t, idx[b][keep].astype(np.int64)), values[b][keep])
    return out


def _read_nodes(path: Path) -> dict:
    input_file(path, "give a .npy array or a file written by nir.write_data",
               what="NIRData file")
    try:
        data = nir.read_data(str(path))
    except Exception as exc:
        raise InputFileError(f"{path}: not a NIRData file ({type(exc).__name__}); give a .npy "
                             "array or a file written by nir.write_data") from None
    return dict(data.nodes)


def read_nirdata_labels(path: str | Path, required: bool = True) -> np.ndarray | None:
    """The labels stored in a NIRData file: node :data:`LABELS_NODE` ("labels"), its first
    observable's data (a ``TimeGriddedData`` holding one value per sample) as a 1-D array.
    Without that node: None, or with ``required`` an :class:`InputFileError`."""
    path = Path(path)
    nodes = _read_nodes(path)
    if LABELS_NODE not in nodes:
        if not required:
            return None
        raise InputFileError(f"{path}: no '{LABELS_NODE}' node (nodes: "
                             f"{', '.join(sorted(nodes)) or 'none'}); store the labels as "
                             f"TimeGriddedData of a node '{LABELS_NODE}' or give a .npy array")
    observables = dict(getattr(nodes[LABELS_NODE], "observables", {}) or {})
    if not observables:
        raise InputFileError(f"{path}: node '{LABELS_NODE}' holds no observables")
    obs = next(iter(observables.values()))
    data = getattr(obs, "data", None)
    if data is None:
        raise InputFileError(f"{path}: the labels are {type(obs).__name__}, not "
                             "TimeGriddedData; store one integer per sample")
    arr = np.asarray(data)
    return arr.reshape(len(arr)) if arr.ndim and arr.size == len(arr) else arr


def read_nirdata_input(path: str | Path, input_name: str, dt: float) -> np.ndarray:
    """The input sequence ``(B, T, n)`` stored in a NIRData file for node ``input_name``.

    The node's first observable is used: ``TimeGriddedData`` (``data`` (B, T, n); its ``dt``
    must equal the program's) or ``EventData``/``ValuedEventData`` (events binned on the
    program's dt grid; ``idx``/``time``/``value`` are (B, n_events) arrays). A file with a
    single node (besides :data:`LABELS_NODE`) is accepted whatever its name.
    """
    nodes = _read_nodes(path)
    others = {k: v for k, v in nodes.items() if k != LABELS_NODE}
    if input_name in nodes:
        node = nodes[input_name]
    elif len(others) == 1:
        node = next(iter(others.values()))
    else:
        raise InputFileError(f"{path}: no data for the graph input '{input_name}' (nodes: "
                             f"{', '.join(sorted(nodes))}); name the node like the Input")
    observables = dict(getattr(node, "observables", {}) or {})
    if not observables:
        raise InputFileError(f"{path}: node '{input_name}' holds no observables")
    obs = next(iter(observables.values()))
    kind = type(obs).__name__
    if kind == "TimeGriddedData":
        if not np.isclose(float(obs.dt), dt, rtol=_DT_RTOL, atol=0.0):
            raise InputFileError(f"{path}: data dt ({float(obs.dt):g} s) differs from the "
                                 f"program's dt ({dt:g} s); resample the data")
        arr = np.asarray(obs.data)
        return arr[None] if arr.ndim == 2 else arr
    if kind in ("EventData", "ValuedEventData"):
        return _binned_events(path, obs, kind, dt)
    raise InputFileError(f"{path}: observable type '{kind}' is not supported")


def _trace_tree(traces: dict[str, dict[str, np.ndarray]], dt: float) -> dict:
    """``traces`` keyed by flat name as nested dicts of ``nir.NIRNodeData`` ("g/n" -> g: n)."""
    tree: dict = {}
    for name, obs in traces.items():
        *groups, leaf = name.split(SUBGRAPH_SEPARATOR)
        level = tree
        for g in groups:
            level = level.setdefault(g, {})
        level[leaf] = nir.NIRNodeData(observables={
            k: nir.TimeGriddedData(data=np.asarray(v), dt=float(dt)) for k, v in obs.items()})
    return tree


def _write_level(group, level: dict) -> None:
    """nir's NIRGraphData layout of one level of the tree into HDF5 ``group``."""
    group.attrs["__type__"] = "NIRGraphData"
    nodes_group = group.create_group("nodes")
    for key, value in level.items():
        g = nodes_group.create_group(key)
        if isinstance(value, dict):
            _write_level(g, value)
            continue
        g.attrs["__type__"] = "NIRNodeData"
        obs_group = g.create_group("observables")
        for obs_name, obs in value.observables.items():
            og = obs_group.create_group(obs_name)
            og.attrs["__type__"] = "TimeGriddedData"
            og.create_dataset("data", data=obs.data, compression="gzip")
            og.attrs["dt"] = obs.dt


def write_nirdata(path: str | Path, traces: dict[str, dict[str, np.ndarray]], dt: float) -> Path:
    """Write recorded activity as NIRData: ``traces[node][observable]`` = (B, T, n) arrays
    (observables "spikes" or "v"), each a ``TimeGriddedData`` with ``dt``; atomically. Nodes
    of flattened subgraphs (``g/n``) are stored under a nested ``NIRGraphData`` ``g``, as
    NIRData keys data to the graph's own nesting."""
    import h5py

    path = Path(path)
    tree = _trace_tree(traces, dt)
    # nir 1.0.8's write_data recurses forever on nested NIRGraphData (its inner writer
    # iterates the outer graph); write nir's layout ourselves (read back by nir.read_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=".h5") as tmp:
            with h5py.File(buf := io.BytesIO(), "w") as f:  # in memory (write_nir_graph)
                _write_level(f, tree)
            tmp.write_bytes(buf.getbuffer())
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write the recording ({exc.strerror or exc}); "
                             "choose another --record path") from None
    return path
