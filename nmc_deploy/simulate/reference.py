"""The reference simulator: numpy, whole batch at once, Lava's fixed-point semantics.

It simulates each sample in *sample time*: a population at pipeline depth d emits, at Lava
step ``1 + d + t`` of a sample window, what the reference computes for sample step t. The
compiler's delays make every input of a population belong to the same sample step, and
every population is reset at the start of its window, so a Lava run of many samples equals
this per-sample computation exactly (docs/architecture.md, "Time"). Per population, the
synaptic input of all T steps is computed with one sparse product, then the LIF runs
step by step, vectorised over batch and neurons. A relay population (kind "relay") has no
state: its output is its integer synaptic input shifted right by ``payload_shift``, a graded
payload that its targets read like the pixel input (``W @ p``); the float simulator passes
the real value through.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..compile.program import INPUT, RELAY, FloatProgram, Program
from .kernels import attention_counts, lif_fixed_step, synaptic_input

__all__ = ["SimulationResult", "simulate_reference", "simulate_float", "attention_counts",
           "accuracy"]


@dataclass
class SimulationResult:
    spikes: dict[str, np.ndarray]  # population -> (T, B, size) bool (empty if not recorded)
    counts: dict[str, np.ndarray]  # population -> (B, size) spike counts over the T steps
    logits: np.ndarray  # (B, outputs)
    stats: dict = field(default_factory=dict)
    # relay population -> (T, B, size) graded payloads: int64 (fixed point) or float64
    # (float simulator); empty if not recorded. Relays have no entry in spikes/counts.
    payloads: dict[str, np.ndarray] = field(default_factory=dict)

    def outputs(self) -> dict[str, np.ndarray]:
        """Every population's recorded output: spikes and relay payloads."""
        return {**self.spikes, **self.payloads}

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)


def accuracy(result: SimulationResult, labels: np.ndarray) -> float:
    return float(np.mean(result.predictions == np.asarray(labels)))


def _inputs_of(program, images):
    b = images.shape[0]
    return np.asarray(images, np.int64).reshape(b, -1)


def _payloads(src, x, spikes, ops, op_out, op_stats, T, dtype) -> np.ndarray:
    """(n_src, T*B) payloads of a group source for all steps (columns t-major): the input
    pixels repeated over T, an attention op's counts (computed once, cached in ``op_out``,
    its accumulate count in ``op_stats``), or a population's spikes."""
    B = x.shape[0]
    if src == INPUT:
        return np.tile(x.T, (1, T)).astype(dtype, copy=False)
    if src in ops:
        if src not in op_out:
            op = ops[src]
            flat = lambda name: spikes[name].reshape(T * B, -1)  # noqa: E731
            C, n_ops = attention_counts(flat(op.q), flat(op.k), flat(op.v), op.num_heads,
                                        op.dim, op.n_tokens)
            op_out[src] = C.T.astype(dtype)
            op_stats[src] = int(n_ops.sum())
        return op_out[src]
    return spikes[src].reshape(T * B, -1).T.astype(dtype)


def simulate_reference(program: Program, images: np.ndarray, *, record: bool = True,
                       batch_size: int = 128) -> SimulationResult:
    """Run ``program`` on integer ``images`` (B, C, H, W) in fixed point; see module docstring."""
    images = np.asarray(images)
    parts = [_simulate_fixed(program, images[i:i + batch_size], record)
             for i in range(0, len(images), batch_size)]
    return _merge(parts)


def _merge(parts: list[SimulationResult]) -> SimulationResult:
    first = parts[0]
    spikes = {k: np.concatenate([p.spikes[k] for p in parts], axis=1) for k in first.spikes}
    payloads = {k: np.concatenate([p.payloads[k] for p in parts], axis=1)
                for k in first.payloads}
    counts = {k: np.concatenate([p.counts[k] for p in parts], axis=0) for k in first.counts}
    logits = np.concatenate([p.logits for p in parts], axis=0)
    stats = {k: v for k, v in first.stats.items()}
    for key in ("layers", "populations"):
        merged = {e["name"]: dict(e) for e in first.stats[key]}
        for p in parts[1:]:
            for e in p.stats[key]:
                m = merged[e["name"]]
                for f, val in e.items():
                    if f not in ("name", "kind", "population", "neurons", "synapses"):
                        m[f] += val
        stats[key] = list(merged.values())
    stats["samples"] = int(sum(p.stats["samples"] for p in parts))
    for f in ("u_wraps", "v_saturations"):
        stats[f] = int(sum(p.stats[f] for p in parts))
    return SimulationResult(spikes, counts, logits, stats, payloads)


def _simulate_fixed(program: Program, images: np.ndarray, record: bool) -> SimulationResult:
    T = program.time_steps
    B = images.shape[0]
    x = _inputs_of(program, images)  # (B, n_in) pixel integers
    spikes: dict[str, np.ndarray] = {}  # pop -> (T, B, n) bool; relay -> int64 payloads
    op_out: dict[str, np.ndarray] = {}
    op_stats: dict[str, int] = {}
    ops = {op.name: op for op in program.attention}
    relays = [p.name for p in program.populations if p.kind == RELAY]
    by_target: dict[str, list] = {}
    for g in program.groups:
        by_target.setdefault(g.target, []).append(g)
    layer_ops: dict[str, dict] = {}
    pop_stats = []
    u_wraps = 0
    v_sats = 0

    def source_matrix(src: str) -> np.ndarray:
        return _payloads(src, x, spikes, ops, op_out, op_stats, T, np.int64)

    for pop in program.populations:
        n = pop.size
        a_total = np.zeros((n, T * B), np.int64)
        for g in by_target[pop.name]:
            s = source_matrix(g.source)
            a_total += synaptic_input(g.weights, s, g.weight_exp)
            entry = layer_ops.setdefault(g.layer, {
                "name": g.layer, "kind": g.kind, "synops": 0, "synapses": 0,
                "population": g.target})
            entry["synapses"] += int(g.weights.nnz)
            if g.kind == "attention":
                entry["synops"] += op_stats[g.source]
            else:
                fanout = np.diff(g.weights.tocsc().indptr)  # nonzero weights per source neuron
                entry["synops"] += int(fanout @ (s != 0).sum(axis=1))
        a_in = a_total.T.reshape(T, B, n)
        if pop.kind == RELAY:  # graded payload, no state: p = a_in >> payload_shift
            out = a_in >> pop.payload_shift
            spikes[pop.name] = out
            pop_stats.append({"name": pop.name, "kind": RELAY, "neurons": n,
                              "spikes": int(np.count_nonzero(out)),  # payload messages
                              "neuron_updates": n * T * B,
                              "active_updates": int(np.count_nonzero(a_in))})
            continue
        u = np.zeros((B, n), np.int64)
        v = np.zeros((B, n), np.int64)
        bias_eff = np.asarray(pop.bias_mant, np.int64) << pop.bias_exp
        out = np.zeros((T, B, n), bool)
        active = 0
        for t in range(T):
            active += int(np.count_nonzero((a_in[t] != 0) | (v != 0)))
            u, v, s, wrapped = lif_fixed_step(u, v, a_in[t], du=pop.du, dv=pop.dv, vth=pop.vth,
                                              bias_eff=bias_eff)
            u_wraps += int(wrapped.sum())
            v_sats += int(np.count_nonzero(np.abs(v) == (2 ** 23 - 1)))
            out[t] = s
        spikes[pop.name] = out
        pop_stats.append({"name": pop.name, "neurons": n, "spikes": int(out.sum()),
                          "neuron_updates": n * T * B, "active_updates": active})
    payloads = {name: spikes.pop(name) for name in relays}
    counts = {name: s.sum(axis=0).astype(np.int64) for name, s in spikes.items()}
    logits = _readout(program.readout, counts, T, B)
    stats = {"backend": "reference", "samples": B, "time_steps": T,
             "pipeline_depth": program.pipeline_depth, "layers": list(layer_ops.values()),
             "populations": pop_stats, "u_wraps": u_wraps, "v_saturations": v_sats}
    return SimulationResult(spikes if record else {}, counts, logits, stats,
                            payloads if record else {})


def _readout(readout, counts, T, B) -> np.ndarray:
    z = np.tile(np.asarray(readout.bias, np.float64) * T, (B, 1))
    for src, w in readout.weights.items():
        z += np.asarray(w @ counts[src].T.astype(np.float64)).T
    return readout.scale * z


def simulate_float(fp: FloatProgram, images: np.ndarray, *, batch_size: int = 256) -> SimulationResult:
    """Float64 simulation of the lowered graph (no quantization, no pipeline)."""
    images = np.asarray(images)
    res = []
    for i in range(0, len(images), batch_size):
        res.append(_simulate_float(fp, images[i:i + batch_size]))
    return SimulationResult(
        {k: np.concatenate([r.spikes[k] for r in res], axis=1) for k in res[0].spikes},
        {k: np.concatenate([r.counts[k] for r in res], axis=0) for k in res[0].counts},
        np.concatenate([r.logits for r in res], axis=0), {"backend": "float"},
        {k: np.concatenate([r.payloads[k] for r in res], axis=1) for k in res[0].payloads})


def _simulate_float(fp: FloatProgram, images) -> SimulationResult:
    T = fp.time_steps
    B = images.shape[0]
    x = np.asarray(images, np.float64).reshape(B, -1)
    spikes: dict[str, np.ndarray] = {}
    op_out: dict[str, np.ndarray] = {}
    ops = {op.name: op for op in fp.attention}
    by_target: dict[str, list] = {}
    for g in fp.groups:
        by_target.setdefault(g.target, []).append(g)
    for pop in fp.populations:
        n = pop.size
        drive = np.zeros((n, T * B))
        for g in by_target[pop.name]:
            s = _payloads(g.source, x, spikes, ops, op_out, {}, T, np.float64)
            drive += np.asarray(g.weight @ s)
        drive = drive.T.reshape(T, B, n)
        if pop.kind == RELAY:  # the real factor output, passed on as a graded value
            spikes[pop.name] = drive
            continue
        v = np.zeros((B, n))
        out = np.zeros((T, B, n), bool)
        for t in range(T):
            v = pop.alpha * v + drive[t] + pop.bias
            s = v >= pop.v_threshold if pop.threshold_ge else v > pop.v_threshold
            v = np.where(s, 0.0, v)
            out[t] = s
        spikes[pop.name] = out
    payloads = {p.name: spikes.pop(p.name) for p in fp.populations if p.kind == RELAY}
    counts = {k: s.sum(axis=0) for k, s in spikes.items()}
    return SimulationResult(spikes, counts, _readout(fp.readout, counts, T, B), {}, payloads)
