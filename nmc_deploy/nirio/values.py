"""The values of a NIR file, checked before a node is built: real, finite numbers, no
zero-size or impossible shapes, and graph timing (dt, time steps, input levels) in range.

A NaN weight would quantize to a zero synapse and a NaN ``dt`` to ``dv = INT64_MIN``; both
are refused here with one line naming the node and the field.
"""
from __future__ import annotations

import numpy as np

from ..checks import finite, number
from ..errors import InputFileError

__all__ = ["check_node_values", "check_graph_metadata", "MAX_NEURONS", "MAX_TIME_STEPS"]

#: Most entries of one shape (program.npz stores int32 CSR indices).
MAX_NEURONS = 2 ** 31 - 1
#: Most time steps per sample a file may ask for (a simulation holds B x T x n arrays).
MAX_TIME_STEPS = 1_000_000
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # models are trained in float32
_HINT = "the file is corrupt or its model diverged; re-export it"


def check_node_values(nd: dict, where: str) -> None:
    """Refuse a node (an HDF5 dict) holding non-real or non-finite numbers, empty parameter
    arrays or shapes with entries below 1."""
    for key, value in nd.items():
        if key == "type" or isinstance(value, (str, dict)):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind in "SUO" and key not in ("shape", "input_shape", "output_shape"):
            raise InputFileError(f"{where}: {key} holds {arr.dtype} values, not numbers; "
                                 f"{_HINT}")
        finite(arr, where, key, _HINT)
        if key.endswith("shape") or key in ("input_type", "output_type"):
            if arr.size and (arr.min() < 1 or np.prod(arr.astype(np.float64)) > MAX_NEURONS):
                raise InputFileError(f"{where}: {key} {tuple(arr.ravel().tolist())} is not a "
                                     f"shape of 1 to {MAX_NEURONS:,} entries; {_HINT}")
            continue
        if arr.dtype.kind == "f" and arr.size == 0:
            raise InputFileError(f"{where}: {key} is empty (a zero-size layer); give every "
                                 "layer at least one neuron")
        if arr.dtype.kind == "f" and arr.size and np.abs(arr).max() > _FLOAT32_MAX:
            raise InputFileError(f"{where}: {key} ({np.abs(arr).max():g}) exceeds the float32 "
                                 f"range ({_FLOAT32_MAX:g}); {_HINT}")
        if key in ("v_threshold", "threshold") and arr.size and arr.min() <= 0:
            raise InputFileError(f"{where}: {key} ({arr.min():g}) is not positive; a spiking "
                                 "neuron needs a threshold above 0")
        if key.startswith("tau") and arr.size and arr.min() <= 0:
            raise InputFileError(f"{where}: {key} ({arr.min():g}) is not positive; time "
                                 "constants are in seconds, > 0")


def check_graph_metadata(md: dict) -> None:
    """``dt`` > 0 and finite, ``time_steps`` and ``input_levels`` positive integers."""
    hint = "fix the graph metadata or give --dt"
    if "dt" in md:
        dt = md["dt"]
        if isinstance(dt, (bytes, str)):
            raise InputFileError(f"metadata: dt ({dt!r}) is not a number; {hint}")
        number(np.asarray(dt).reshape(-1)[0] if np.size(dt) == 1 else dt, "metadata", "dt",
               lo=0, lo_open=True, hint=hint, error=InputFileError)
    for key, hi in (("time_steps", MAX_TIME_STEPS), ("input_levels", 2 ** 16)):
        if key in md:
            v = md[key]
            v = np.asarray(v).reshape(-1)[0] if np.size(v) == 1 and not isinstance(v, bytes) \
                else v
            number(v, "metadata", key, lo=1, hi=hi, integer=True,
                   hint="fix the graph metadata", error=InputFileError)
