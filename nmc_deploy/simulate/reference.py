"""The reference simulator: numpy, whole batch at once, in Lava's fixed point or in float64.

It simulates each sample in *sample time*: a population at pipeline depth d emits, at Lava
step ``1 + d + t`` of a sample window, what the reference computes for sample step t. The
compiler's delays make every input of a population belong to the same sample step, and
every population is reset at the start of its window, so a Lava run of many samples equals
this per-sample computation exactly (docs/architecture.md, "Time"). Per population, the
synaptic input of all T steps is computed with one sparse product, then the neurons run
step by step, vectorised over batch and neurons. A relay population (kind "relay") has no
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

import numpy as np

from ..loihi.attention import attention_counts
from ..program import LI, RELAY, FloatProgram, Program, SourceKind
from ..program.shared_weights import source_fanout
from .inputs import as_input_sequence, check_input_steps
from .precision import FIXED, FLOAT
from .readout import read_out
from .result import SimulationResult, accuracy, merge_results
from .sources import SourceStreams

__all__ = ["SimulationResult", "simulate_reference", "simulate_float", "attention_counts",
           "accuracy", "as_input_sequence"]


def simulate_reference(program: Program, inputs: np.ndarray, *, record: bool = True,
                       batch_size: int = 128, token_selection: bool = True) -> SimulationResult:
    """Run ``program`` in fixed point; see module docstring.

    ``inputs``: integer images ``(B, *input_shape)``, repeated for ``program.time_steps``
    steps, or an integer sequence ``(B, T, *input_shape)`` (spikes or currents; T from the
    array). ``token_selection=False`` runs the token selectors' inputs and outputs but keeps
    every token (the counterfactual whose synaptic ops the report compares against).
    """
    return _simulate(program, inputs, FIXED, batch_size, record=record,
                     selection=token_selection)


def simulate_float(fp: FloatProgram, inputs: np.ndarray, *,
                   batch_size: int = 256) -> SimulationResult:
    """Float64 simulation of the lowered graph (no quantization, no pipeline).

    ``inputs``: images ``(B, *input_shape)`` repeated for ``fp.time_steps`` steps, or a
    sequence ``(B, T, *input_shape)``; float values are allowed.
    """
    return _simulate(fp, inputs, FLOAT, batch_size)


def _simulate(program, inputs, precision, batch_size: int, *, record: bool = True,
              selection: bool = True) -> SimulationResult:
    """Run ``program`` in ``precision`` batch by batch and merge the results."""
    seq = precision.input_sequence(program, inputs)
    check_input_steps(program, seq)
    parts = [_simulate_batch(program, seq[i:i + batch_size], precision, record, selection)
             for i in range(0, len(seq), batch_size)]
    return merge_results(parts)


class _Activity:
    """The operation counts of a fixed-point run (its ``stats``): synaptic ops and synapses
    per layer, neuron updates and output messages per population."""

    def __init__(self, src: SourceStreams):
        self.src = src
        self.layers: dict[str, dict] = {}
        self.populations: list[dict] = []
        self.u_wraps = 0
        self.v_saturations = 0

    def count_group(self, g, s: np.ndarray) -> None:
        """Group ``g`` delivered source columns ``s``: its synapses and synaptic ops."""
        entry = self.layers.setdefault(g.layer, {
            "name": g.layer, "kind": g.kind, "synops": 0, "synapses": 0,
            "population": g.target})
        entry["synapses"] += int(g.weights.nnz)
        if g.kind == "attention":
            entry["synops"] += self.src.op_stats[g.source]
        else:
            fanout = source_fanout(g.weights)  # nonzero weights per source neuron
            entry["synops"] += int(fanout @ (s != 0).sum(axis=1))

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
                                 "spikes": int(out.sum()), "neuron_updates": updates,
                                 "active_updates": neurons.active})
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


def _synaptic_drive(pop, groups, src: SourceStreams, precision, activity) -> np.ndarray:
    """(T, B, size) summed input of ``pop``'s groups from other sources (all steps at once)."""
    total = np.zeros((pop.size, src.T * src.B), precision.dtype)
    for g in groups:
        if g.source == pop.name:
            continue
        s = src(g.source, g.lag)
        if src.kinds[g.source] is SourceKind.ATTENTION:  # key blocks: one shift per unit
            for part in src.attention_parts(g.source, g.lag):
                total += precision.synaptic_input(g, part)
        else:
            total += precision.synaptic_input(g, s)
        if activity is not None:
            activity.count_group(g, s)
    return total.T.reshape(src.T, src.B, pop.size)


def _run_population(neurons, drive: np.ndarray, own, precision, record_voltage: bool):
    """Step ``neurons`` through the (T, B, n) ``drive`` plus their own spikes of ``t - lag``
    through the recurrent groups ``own``; returns ``(spikes, voltages or None)``."""
    out = np.zeros(drive.shape, bool)
    volts = np.zeros(drive.shape, precision.dtype) if record_voltage else None
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


def _simulate_batch(program, x: np.ndarray, precision, record: bool,
                    selection: bool) -> SimulationResult:
    B, T = x.shape[0], x.shape[1]  # x: (B, T, n_in)
    src = SourceStreams(program, x, precision, selection)
    activity = _Activity(src) if precision.counts_activity else None
    voltages: dict[str, np.ndarray] = {}
    by_target: dict[str, list] = {}
    for g in program.groups:
        by_target.setdefault(g.target, []).append(g)
    for pop in program.populations:
        groups = by_target[pop.name]
        drive = _synaptic_drive(pop, groups, src, precision, activity)
        if pop.kind == RELAY:  # graded payload, no state
            out = src.relay(pop, drive)
            if activity is not None:
                activity.count_relay(pop, drive, out)
            continue
        own = [g for g in groups if g.source == pop.name]  # recurrent
        neurons = precision.neurons(pop, src.gate(pop), B)
        out, volts = _run_population(neurons, drive, own, precision, pop.kind == LI)
        if volts is not None:
            voltages[pop.name] = volts
        else:
            src.spikes[pop.name] = out
        if activity is not None:
            for g in own:
                activity.count_group(g, src(g.source, g.lag))
            activity.count_population(pop, out, neurons)
    counts = {name: s.sum(axis=0).astype(np.int64) for name, s in src.spikes.items()}
    sel_counts = src.selector_counts()
    scales = {p.name: precision.voltage_scale(p) for p in program.populations if p.kind == LI}
    steps = {name: src.steps(name) for name in program.readout.weights if name not in voltages}
    logits, output_steps = read_out(program.readout, {**counts, **sel_counts}, steps, voltages,
                                    scales, T, B)
    stats = {"backend": precision.backend} if activity is None else activity.stats(program, T, B, precision.backend)
    return SimulationResult(src.spikes if record else {}, counts, logits, stats,
                            token_masks=dict(src.masks), selector_counts=sel_counts,
                            payloads=src.payloads if record else {}, voltages=voltages,
                            voltage_scales=scales, output_steps=output_steps)
