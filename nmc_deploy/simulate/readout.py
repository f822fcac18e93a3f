"""The host readout: logits and per-step graph outputs from what a simulator recorded.

Both simulators (the numpy reference and the Lava backend) read out through these
functions, so their logits and ``output_steps`` are computed the same way.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["read_logits", "read_output_steps", "read_out"]


def read_logits(readout, sums: Mapping[str, np.ndarray], T: int, B: int) -> np.ndarray:
    """``(B, num_outputs)`` logits ``scale (sum_src W sums[src] + T bias)``.

    ``sums[src]``: (B, n) the source's output summed over the T steps (spike counts,
    selector sums, LI voltage sums in float units).
    """
    z = np.tile(np.asarray(readout.bias, np.float64) * T, (B, 1))
    for src, w in readout.weights.items():
        z += np.asarray(w @ sums[src].T.astype(np.float64)).T
    return readout.scale * z


def read_output_steps(readout, values: Mapping[str, np.ndarray], T: int, B: int) -> np.ndarray:
    """The graph Output per step, (B, T, num_outputs): ``scale (sum W a[t] + bias)``,
    accumulated over t for a cumulative (Integrator) readout. ``values[src]``: (T, B, n)."""
    y = np.tile(np.asarray(readout.bias, np.float64), (T, B, 1))
    for src, w in readout.weights.items():
        a = values[src].reshape(T * B, -1).T
        y += np.asarray(w @ np.ascontiguousarray(a, np.float64)).T.reshape(T, B, -1)
    y = readout.scale * y
    if readout.cumulative:
        y = np.cumsum(y, axis=0)
    return y.transpose(1, 0, 2)


def read_out(readout, sums: Mapping[str, np.ndarray], steps: Mapping[str, np.ndarray],
             voltages: Mapping[str, np.ndarray], scales: Mapping[str, float], T: int, B: int):
    """``(logits, output_steps)`` of a run.

    ``sums``: (B, n) step sums of spiking and selector sources; ``steps``: their (T, B, n)
    per-step outputs; ``voltages``: (T, B, n) LI voltages, divided by ``scales[name]`` (1
    if absent) into float units, their sums taken here.
    """
    values, read = {}, {}  # only the readout's sources are read from sums
    for name in readout.weights:
        if name in voltages:
            values[name] = voltages[name] / scales.get(name, 1.0)
            read[name] = values[name].sum(axis=0)
        else:
            values[name] = steps[name]
            read[name] = sums[name]
    sums = read
    return read_logits(readout, sums, T, B), read_output_steps(readout, values, T, B)
