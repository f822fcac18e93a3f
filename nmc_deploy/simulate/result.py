"""What a simulation returns (``SimulationResult``), its accuracy, and merging batch results."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SimulationResult", "accuracy", "merge_results"]

# stats lists merged by entry name; the entries' fields not in _FIXED_FIELDS are summed
_MERGED_LISTS = ("layers", "populations", "token_selectors")
_FIXED_FIELDS = ("name", "kind", "population", "neurons", "synapses")
_SUMMED_STATS = ("samples", "u_wraps", "v_saturations")


@dataclass
class SimulationResult:
    spikes: dict[str, np.ndarray]  # population -> (T, B, size) bool (empty if not recorded)
    # population -> (B, size) int64 spike counts over the T steps (a mapping: the reference
    # computes each on first access, simulate.reference.StepCounts)
    counts: Mapping[str, np.ndarray]
    logits: np.ndarray  # (B, outputs)
    stats: dict = field(default_factory=dict)
    token_masks: dict[str, np.ndarray] = field(default_factory=dict)  # selector -> (B, N) bool
    selector_counts: dict[str, np.ndarray] = field(default_factory=dict)  # -> (B, dim*N)
    # relay population -> (T, B, size) graded payloads: int64 (fixed point) or float64
    # (float simulator); empty if not recorded. Relays have no entry in spikes/counts.
    payloads: dict[str, np.ndarray] = field(default_factory=dict)
    # "li" population (LI, CubaLI) -> (T, B, size) voltages: int64 in the population's fixed
    # point units (float units: divide by voltage_scales[name]) or float64 (float simulator)
    voltages: dict[str, np.ndarray] = field(default_factory=dict)
    voltage_scales: dict[str, float] = field(default_factory=dict)  # v units per float unit
    # spiking population -> (T, B, size) float32 membrane voltage after the step's reset, in
    # float units; only when asked for (``membranes=True``), else empty
    membranes: dict[str, np.ndarray] = field(default_factory=dict)
    # the graph Output per step, (B, T, num_outputs) float64 (see Readout); None if not run
    output_steps: np.ndarray | None = None

    def outputs(self) -> dict[str, np.ndarray]:
        """Every population's recorded output: spikes, relay payloads, LI voltages."""
        return {**self.spikes, **self.payloads, **self.voltages}

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)


def accuracy(result: SimulationResult, labels: np.ndarray) -> float:
    return float(np.mean(result.predictions == np.asarray(labels)))


def _merge_stats(parts: list[SimulationResult]) -> dict:
    """The first part's stats with per-entry counters and the totals summed over parts
    (key order kept: the stats end up in JSON files)."""
    first = parts[0]
    stats = dict(first.stats)
    for key in _MERGED_LISTS:
        merged = {e["name"]: dict(e) for e in first.stats.get(key, [])}
        for p in parts[1:]:
            for e in p.stats.get(key, []):
                m = merged[e["name"]]
                for f, val in e.items():
                    if f not in _FIXED_FIELDS:
                        m[f] += val
        if key in first.stats:
            stats[key] = list(merged.values())
    for f in _SUMMED_STATS:
        if f in first.stats:
            stats[f] = int(sum(p.stats[f] for p in parts))
    return stats


def merge_results(parts: list[SimulationResult]) -> SimulationResult:
    """One result from the results of consecutive batches (samples concatenated in order).

    Per-step arrays (T, B, n) join along B, per-sample arrays along their first axis; stats
    as :func:`_merge_stats`; ``voltage_scales`` from the first part.
    """
    first = parts[0]

    def join(attr: str, axis: int) -> dict[str, np.ndarray]:
        return {k: np.concatenate([getattr(p, attr)[k] for p in parts], axis=axis)
                for k in getattr(first, attr)}

    return SimulationResult(
        join("spikes", 1), join("counts", 0), np.concatenate([p.logits for p in parts], axis=0),
        _merge_stats(parts), token_masks=join("token_masks", 0),
        selector_counts=join("selector_counts", 0), payloads=join("payloads", 1),
        voltages=join("voltages", 1), voltage_scales=dict(first.voltage_scales),
        membranes=join("membranes", 1),
        output_steps=np.concatenate([p.output_steps for p in parts], axis=0))
