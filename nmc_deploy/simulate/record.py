"""``simulate --record``: every population's per-step output of a run as a NIRData file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["run_traces", "write_record"]


def run_traces(run) -> dict[str, dict[str, np.ndarray]]:
    """Per population ``{"spikes": (B, T, n)}`` and, for voltage outputs (LI), ``{"v": ...}``
    in float units (fixed-point voltages divided by the population's scale)."""
    traces = {k: {"spikes": np.asarray(v).transpose(1, 0, 2)} for k, v in run.spikes.items()}
    scales = getattr(run, "voltage_scales", None) or {}
    for k, v in run.voltages.items():  # fixed-point units -> float units
        traces.setdefault(k, {})["v"] = (np.asarray(v, np.float64)
                                         / scales.get(k, 1.0)).transpose(1, 0, 2)
    return traces


def write_record(path: Path, run, dt: float) -> int:
    """Write :func:`run_traces` of ``run`` to ``path`` as NIRData; returns the population count."""
    from ..nirio import write_nirdata

    traces = run_traces(run)
    write_nirdata(path, traces, dt)
    return len(traces)
