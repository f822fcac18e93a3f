"""The reference simulator: numpy, whole batch at once, in Lava's fixed point or in float64.

It simulates each sample in *sample time*: a population at pipeline depth d emits, at Lava
step ``1 + d + t`` of a sample window, what the reference computes for sample step t. The
compiler's delays make every input of a population belong to the same sample step, and
every population is reset at the start of its window, so a Lava run of many samples equals
this per-sample computation exactly (docs/architecture.md, "Time"). Per population, the
synaptic input of all T steps is computed at once (:mod:`~nmc_deploy.simulate.drive`:
shared-weight groups as batched integer-exact matrix products with samples x steps x tokens
as the batch, other groups as one sparse product each), then the neurons run step by step,
vectorised over batch and neurons. A relay population (kind "relay") has no
state: its output is its integer synaptic input shifted right by ``payload_shift``, a graded
payload that its targets read like the pixel input (``W @ p``); the float simulator passes
the real value through.

One loop serves both precisions (:mod:`~nmc_deploy.simulate.precision`):
:func:`simulate_reference` runs a compiled ``Program`` with Lava's arithmetic and counts the
operations the report needs (``stats``); :func:`simulate_float` runs the ``FloatProgram``
(the lowered graph, no quantization, no pipeline) in float64.

Inputs: integer images ``(B, *input_shape)``, repeated for the program's T steps, or a
sequence ``(B, T, *input_shape)`` (spikes 0/1 or integer currents; floats allowed in the
float simulator) whose T replaces the program's. A group with ``lag`` reads its source's
step ``t - lag`` (0 before); a population's own recurrent groups make it run step by step
with its spikes of ``t - lag`` fed back. Non-spiking "li" populations record their voltage
(``SimulationResult.voltages``), and the graph Output is reported per step
(``SimulationResult.output_steps``).
"""
from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping

import numpy as np

from ..loihi.attention import attention_counts
from ..program import LI, RELAY, FloatProgram, Program
from .inputs import as_input_sequence, check_input_steps
from .precision import FIXED, FLOAT
from .readout import read_out
from .result import SimulationResult, accuracy, merge_results
from .sources import SourceStreams

__all__ = ["SimulationResult", "simulate_reference", "simulate_float", "attention_counts",
           "accuracy", "as_input_sequence"]


def simulate_reference(program: Program, inputs: np.ndarray, *, record: bool = True,
                       batch_size: int = 256, token_selection: bool = True,
                       membranes: bool = False) -> SimulationResult:
    """Run ``program`` in fixed point; see module docstring.

    ``inputs``: integer images ``(B, *input_shape)``, repeated for ``program.time_steps``
    steps, or an integer sequence ``(B, T, *input_shape)`` (spikes or currents; T from the
    array). ``token_selection=False`` runs the token selectors' inputs and outputs but keeps
    every token (the counterfactual whose synaptic ops the report compares against).
    ``membranes``: also keep every spiking population's voltage (``SimulationResult.membranes``,
    float32 in float units: 4 bytes per neuron, step and sample).
    """
    return _simulate(program, inputs, FIXED, batch_size, record=record,
                     selection=token_selection, membranes=membranes)


def simulate_float(fp: FloatProgram, inputs: np.ndarray, *, batch_size: int = 256,
                   membranes: bool = False) -> SimulationResult:
    """Float64 simulation of the lowered graph (no quantization, no pipeline).

    ``inputs``: images ``(B, *input_shape)`` repeated for ``fp.time_steps`` steps, or a
    sequence ``(B, T, *input_shape)``; float values are allowed. ``membranes`` as for
    :func:`simulate_reference`.
    """
    return _simulate(fp, inputs, FLOAT, batch_size, membranes=membranes)


# A batch holds at most this many bytes of one population's (T, B, size) drive: large models
# run in smaller batches (every sample is simulated on its own, so batching changes nothing
# but speed and memory).
DRIVE_BYTES = 256 * 2 ** 20


def _batch_rows(program, T: int, batch_size: int) -> int:
    """``batch_size`` capped so that the largest population's drive fits ``DRIVE_BYTES``."""
    largest = max([p.size for p in program.populations] + [1])
    return max(1, min(batch_size, DRIVE_BYTES // (8 * T * largest)))


def _simulate(program, inputs, precision, batch_size: int, *, record: bool = True,
              selection: bool = True, membranes: bool = False) -> SimulationResult:
    """Run ``program`` in ``precision`` batch by batch and merge the results."""
    seq = precision.input_sequence(program, inputs)
    check_input_steps(program, seq)
    plan = precision.plan(program)
    step = _batch_rows(program, seq.shape[1], batch_size)
    parts = [_simulate_batch(program, plan, seq[i:i + step], precision, record, selection,
                             membranes)
             for i in range(0, len(seq), step)]
    return parts[0] if len(parts) == 1 else merge_results(parts)


class _Activity:
    """The operation counts of a fixed-point run (its ``stats``): synaptic ops and synapses
    per layer, neuron updates and output messages per population."""

    def __init__(self, src: SourceStreams):
        self.src = src
        self.layers: dict[str, dict] = {}
        self.populations: list[dict] = []
        self.u_wraps = 0
        self.v_saturations = 0

    def count_group(self, g, fanout: np.ndarray | None, active: np.ndarray) -> None:
        """Group ``g`` delivered its source's messages, ``active`` per source neuron (rows in
        which it is nonzero): its synapses and synaptic ops (``fanout``: nonzero weights per
        source neuron, :func:`~nmc_deploy.program.shared_weights.source_fanout`)."""
        entry = self.layers.setdefault(g.layer, {
            "name": g.layer, "kind": g.kind, "synops": 0, "synapses": 0,
            "population": g.target})
        entry["synapses"] += int(g.weights.nnz)
        if g.kind == "attention":
            entry["synops"] += self.src.op_stats[g.source]
        else:
            entry["synops"] += int(fanout @ active)

    def count_relay(self, pop, a_in: np.ndarray, out: np.ndarray) -> None:
        n = pop.size
        self.populations.append({"name": pop.name, "kind": RELAY, "neurons": n,
                                 "spikes": int(np.count_nonzero(out)),  # payload messages
                                 "neuron_updates": out.size,
                                 "active_updates": int(np.count_nonzero(a_in))})

    def count_population(self, pop, out: np.ndarray, neurons) -> None:
        T = out.shape[0]
        gate = neurons.gate
        updates = out.size if gate is None else int(gate.sum()) * T
        self.populations.append({"name": pop.name, "neurons": pop.size,
                                 "spikes": int(np.count_nonzero(out)),
                                 "neuron_updates": updates,
                                 "active_updates": neurons.active,
                                 "u_wraps": neurons.u_wraps,
                                 "v_saturations": neurons.v_saturations})
        self.u_wraps += neurons.u_wraps
        self.v_saturations += neurons.v_saturations

    def stats(self, program, T: int, B: int, backend: str) -> dict:
        stats = {"backend": backend, "samples": B, "time_steps": T,
                 "pipeline_depth": program.pipeline_depth, "layers": list(self.layers.values()),
                 "populations": self.populations, "u_wraps": self.u_wraps,
                 "v_saturations": self.v_saturations}
        if program.token_selects:
            stats["token_selectors"] = [self.src.sel_stats[t.name] for t in program.token_selects]
        return stats


def _run_population(neurons, drive: np.ndarray, own, precision, record_voltage: bool):
    """Step ``neurons`` through the (T, B, n) or (T, B, C, P) ``drive`` plus their own spikes of ``t - lag``
    through the recurrent groups ``own``; returns ``(spikes, voltages or None)``."""
    T, B = drive.shape[:2]
    volts = np.zeros((T, B, int(np.prod(drive.shape[2:]))), precision.dtype) \
        if record_voltage else None
    if not own and hasattr(neurons, "run"):
        return neurons.run(drive, volts), volts
    drive = drive.reshape(T, B, -1)
    out = np.zeros(drive.shape, neurons.out_dtype)
    for t in range(drive.shape[0]):
        a = drive[t]
        for g in own:  # own spikes of step t - lag, through one synapse stage
            if t >= g.lag:
                a = a + precision.synaptic_input(g, out[t - g.lag].T.astype(precision.dtype)).T
        s, v = neurons.step(a)
        out[t] = s
        if volts is not None:
            volts[t] = v
    return out, volts


def _step_sum(spikes: np.ndarray) -> np.ndarray:
    """(B, n) int64 spike counts over the T steps of (T, B, n) bool ``spikes`` (summed as
    bytes while T < 256) or of integer counts (multi-spike populations)."""
    if spikes.shape[0] >= 256 or spikes.dtype != bool:
        return spikes.sum(axis=0).astype(np.int64)
    acc = spikes[0].view(np.uint8).copy()
    for s in spikes[1:]:
        acc += s.view(np.uint8)
    return acc.astype(np.int64)


class StepCounts(Mapping):
    """Per population, its (B, n) int64 spike counts over the T steps of the (T, B, n)
    ``spikes``, each computed on first access and kept (the readout reads a few; the
    others, up to 8 bytes per neuron and sample, only when asked for)."""

    def __init__(self, spikes: dict[str, np.ndarray]):
        self._spikes = spikes
        self._counts: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._counts:
            self._counts[name] = _step_sum(self._spikes[name])
        return self._counts[name]

    def __iter__(self):
        return iter(self._spikes)

    def __len__(self) -> int:
        return len(self._spikes)


def _simulate_batch(program, plan: dict, x: np.ndarray, precision, record: bool,
                    selection: bool, membranes: bool = False) -> SimulationResult:
    B, T = x.shape[0], x.shape[1]  # x: (B, T, n_in)
    src = SourceStreams(program, x, precision, selection)
    activity = _Activity(src) if precision.counts_activity else None
    voltages: dict[str, np.ndarray] = {}
    kept: dict[str, np.ndarray] = {}  # spiking populations' membranes (membranes=True)
    for pop in program.populations:
        p = plan[pop.name]
        drive, bound = precision.drive(pop, p, src, activity)
        if pop.kind == RELAY:  # graded payload, no state
            drive = drive.reshape(T, B, pop.size).astype(precision.dtype, copy=False)
            out = src.relay(pop, drive)
            if activity is not None:
                activity.count_relay(pop, drive, out)
            continue
        neurons = precision.neurons(pop, src.gate(pop), B, drive.dtype, bound)
        out, volts = _run_population(neurons, drive, p.own, precision,
                                     pop.kind == LI or membranes)
        if pop.kind == LI:
            voltages[pop.name] = volts
        else:
            src.spikes[pop.name] = out
            if volts is not None:
                kept[pop.name] = (volts / precision.voltage_scale(pop)).astype(np.float32)
        if activity is not None:
            for g in p.own:
                activity.count_group(g, p.fanouts.get(g.name), src.active(g.source, g.lag))
            activity.count_population(pop, out, neurons)
    counts = StepCounts(src.spikes)
    sel_counts = src.selector_counts()
    scales = {p.name: precision.voltage_scale(p) for p in program.populations if p.kind == LI}
    steps = {name: src.steps(name) for name in program.readout.weights if name not in voltages}
    logits, output_steps = read_out(program.readout, ChainMap(sel_counts, counts), steps, voltages,
                                    scales, T, B)
    stats = {"backend": precision.backend} if activity is None else activity.stats(program, T, B, precision.backend)
    return SimulationResult(src.spikes if record else {}, counts, logits, stats,
                            token_masks=dict(src.masks), selector_counts=sel_counts,
                            payloads=src.payloads if record else {}, voltages=voltages,
                            voltage_scales=scales, output_steps=output_steps, membranes=kept)
