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

Inputs: integer images ``(B, *input_shape)``, repeated for the program's T steps, or a
sequence ``(B, T, *input_shape)`` (spikes 0/1 or integer currents; floats allowed in the
float simulator) whose T replaces the program's. A group with ``lag`` reads its source's
step ``t - lag`` (0 before); a population's own recurrent groups make it run step by step
with its spikes of ``t - lag`` fed back. Non-spiking "li" populations record their voltage
(``SimulationResult.voltages``), and the graph Output is reported per step
(``SimulationResult.output_steps``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..program import CONST, INPUT, LI, RELAY, FloatProgram, Program
from ..errors import SimulationError
from ..loihi.kernels import (attention_counts, lif_fixed_step, synaptic_input, token_scores_fixed,
                      token_scores_float, top_k_mask)

__all__ = ["SimulationResult", "simulate_reference", "simulate_float", "attention_counts",
           "accuracy", "as_input_sequence"]


@dataclass
class SimulationResult:
    spikes: dict[str, np.ndarray]  # population -> (T, B, size) bool (empty if not recorded)
    counts: dict[str, np.ndarray]  # population -> (B, size) spike counts over the T steps
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


def as_input_sequence(program, inputs, *, integer: bool = True) -> np.ndarray:
    """``inputs`` as a (B, T, n_in) array: a sequence ``(B, T, *input_shape)`` as given,
    images ``(B, *input_shape)`` (or anything with ``n_in`` values per sample) repeated for
    the program's ``time_steps``. ``integer``: values must be whole numbers (int64 result);
    otherwise float64."""
    x = np.asarray(inputs)
    shape = tuple(int(v) for v in program.input_shape)
    n_in = int(np.prod(shape))
    if x.ndim == len(shape) + 2 and tuple(x.shape[2:]) == shape:
        seq = x.reshape(x.shape[0], x.shape[1], n_in)
    elif x.ndim >= 1 and x.shape[0] and x.size == x.shape[0] * n_in:
        seq = np.repeat(x.reshape(x.shape[0], 1, n_in), int(program.time_steps), axis=1)
    else:
        raise SimulationError(f"inputs: shape {x.shape} is neither (B, T, *{shape}) nor "
                              f"(B, *{shape}); give a sequence or images of the input shape")
    if seq.shape[1] < 1:
        raise SimulationError("inputs: the sequence has no time steps")
    if not integer:
        return seq.astype(np.float64)
    if seq.dtype.kind == "f" and not np.all(seq == np.round(seq)):
        raise SimulationError("inputs: the fixed-point program needs integer inputs (spikes "
                              "0/1 or integer currents); got fractional values")
    return seq.astype(np.int64)


def _lagged(x: np.ndarray, lag: int, B: int) -> np.ndarray:
    """Columns t-major (n, T*B) shifted by ``lag`` steps (zeros for t < lag)."""
    if not lag:
        return x
    out = np.zeros_like(x)
    if lag * B < x.shape[1]:
        out[:, lag * B:] = x[:, :x.shape[1] - lag * B]
    return out


class _Sources:
    """Payloads of group sources for all steps of a batch, as (n_src, T*B) columns t-major.

    The input sequence; CONST (ones); a population's spikes; a relay's graded payloads
    (stored by :meth:`relay`); an attention op's counts (computed once, its accumulate count
    in ``op_stats``); a token selector's gated stream (computed once: its keep mask goes to
    ``masks``, its work to ``sel_stats``). ``fixed`` selects the integer or the float token
    selector and relay.
    """

    def __init__(self, program, x, T, dtype, fixed: bool, selection: bool = True):
        # x: (B, T, n_in) input sequence
        self.program, self.x, self.T, self.dtype, self.fixed = program, x, T, dtype, fixed
        self.selection = selection
        self.spikes: dict[str, np.ndarray] = {}  # pop -> (T, B, n) bool
        self.payloads: dict[str, np.ndarray] = {}  # relay -> (T, B, n) int64 / float64
        self.ops = {op.name: op for op in program.attention}
        self.sels = {t.name: t for t in program.token_selects}
        self.out: dict[str, np.ndarray] = {}
        self.op_stats: dict[str, int] = {}
        self.masks: dict[str, np.ndarray] = {}  # selector -> (B, N) bool
        self.sel_stats: dict[str, dict] = {}

    def __call__(self, src: str, lag: int = 0) -> np.ndarray:
        return _lagged(self._base(src), lag, self.x.shape[0]) if lag else self._base(src)

    def _base(self, src: str) -> np.ndarray:
        T, B = self.T, self.x.shape[0]
        if src == INPUT:
            return self.x.transpose(2, 1, 0).reshape(-1, T * B).astype(self.dtype, copy=False)
        if src == CONST:
            return np.ones((1, T * B), self.dtype)
        if src in self.ops:
            if src not in self.out:
                op = self.ops[src]
                flat = lambda name: self.spikes[name].reshape(T * B, -1)  # noqa: E731
                C, n_ops = attention_counts(flat(op.q), flat(op.k), flat(op.v), op.num_heads,
                                            op.dim, op.n_tokens)
                self.out[src] = C.T.astype(self.dtype)
                self.op_stats[src] = int(n_ops.sum())
            return self.out[src]
        if src in self.sels:
            if src not in self.out:
                self.out[src] = self._select(self.sels[src])
            return self.out[src]
        if src in self.payloads:
            return self.payloads[src].reshape(T * B, -1).T.astype(self.dtype, copy=False)
        return self.spikes[src].reshape(T * B, -1).T.astype(self.dtype)

    def relay(self, pop, a_in: np.ndarray) -> np.ndarray:
        """Store and return the (T, B, n) payloads of relay ``pop`` for its synaptic input
        ``a_in``: ``a_in >> payload_shift`` in fixed point (no state); the real value in
        float."""
        out = a_in >> pop.payload_shift if self.fixed else a_in
        self.payloads[pop.name] = out
        return out

    def _select(self, sel) -> np.ndarray:
        T, B = self.T, self.x.shape[0]
        n = sel.dim * sel.n_tokens
        total = np.zeros((n, T * B), self.dtype)
        for g in sel.inputs:
            w = g.weights if self.fixed else g.weight
            total += np.asarray(w @ self(g.source), self.dtype)
        counts = total.reshape(n, T, B).sum(axis=1).T  # (B, dim*N)
        feats = counts.reshape(B, sel.dim, sel.n_tokens).transpose(0, 2, 1)  # (B, N, dim)
        prev = self.masks[sel.previous] if sel.previous else np.ones((B, sel.n_tokens), bool)
        if self.fixed:
            scores = token_scores_fixed(feats, w1=sel.w1, b1=sel.b1, h_shift=sel.h_shift,
                                        lut=sel.lut, lut_min=sel.lut_min, w_score=sel.w_score,
                                        b_score=sel.b_score)
        else:
            scores = token_scores_float(feats / T, sel.w1, sel.b1, sel.w2, sel.b2)
        mask = top_k_mask(scores, sel.n_keep, prev) if self.selection else prev
        self.masks[sel.name] = mask
        hidden = int(np.asarray(sel.w1).shape[0])
        evaluated = int(prev.sum())
        self.sel_stats[sel.name] = {
            "name": sel.name, "evaluated_tokens": evaluated, "kept_tokens": int(mask.sum()),
            "predictor_macs": evaluated * hidden * (sel.dim + 1), "lut_lookups": evaluated * hidden,
            "buffered_values": n * T * B}
        gate = np.tile(mask, (1, sel.dim)).T  # (dim*N, B): neuron c*N + n -> token n
        return (total.reshape(n, T, B) * gate[:, None, :]).reshape(n, T * B)

    def gate(self, pop) -> np.ndarray | None:
        """(B, size) bool of the neurons a token selector leaves on (None: not gated)."""
        if not pop.gate:
            return None
        if pop.gate not in self.masks:
            self(pop.gate)
        n_tok = self.sels[pop.gate].n_tokens
        return self.masks[pop.gate][:, np.arange(pop.size) % n_tok]

    def selector_counts(self) -> dict[str, np.ndarray]:
        """Per selector, its output summed over the T steps, (B, dim*N)."""
        T, B = self.T, self.x.shape[0]
        return {name: self(name).reshape(-1, T, B).sum(axis=1).T for name in self.sels}


def simulate_reference(program: Program, inputs: np.ndarray, *, record: bool = True,
                       batch_size: int = 128, token_selection: bool = True) -> SimulationResult:
    """Run ``program`` in fixed point; see module docstring.

    ``inputs``: integer images ``(B, *input_shape)``, repeated for ``program.time_steps``
    steps, or an integer sequence ``(B, T, *input_shape)`` (spikes or currents; T from the
    array). ``token_selection=False`` runs the token selectors' inputs and outputs but keeps
    every token (the counterfactual whose synaptic ops the report compares against).
    """
    seq = as_input_sequence(program, inputs)
    _check_sequence(program, seq)
    parts = [_simulate_fixed(program, seq[i:i + batch_size], record, token_selection)
             for i in range(0, len(seq), batch_size)]
    return _merge(parts)


def _check_sequence(program, seq) -> None:
    if program.token_selects and seq.shape[1] != program.time_steps:
        raise SimulationError(f"inputs: {seq.shape[1]} time steps, but the token selectors "
                              f"were compiled for {program.time_steps}")


def _merge(parts: list[SimulationResult]) -> SimulationResult:
    first = parts[0]
    spikes = {k: np.concatenate([p.spikes[k] for p in parts], axis=1) for k in first.spikes}
    payloads = {k: np.concatenate([p.payloads[k] for p in parts], axis=1)
                for k in first.payloads}
    counts = {k: np.concatenate([p.counts[k] for p in parts], axis=0) for k in first.counts}
    logits = np.concatenate([p.logits for p in parts], axis=0)
    masks = {k: np.concatenate([p.token_masks[k] for p in parts], axis=0)
             for k in first.token_masks}
    sel_counts = {k: np.concatenate([p.selector_counts[k] for p in parts], axis=0)
                  for k in first.selector_counts}
    stats = {k: v for k, v in first.stats.items()}
    for key in ("layers", "populations", "token_selectors"):
        merged = {e["name"]: dict(e) for e in first.stats.get(key, [])}
        for p in parts[1:]:
            for e in p.stats.get(key, []):
                m = merged[e["name"]]
                for f, val in e.items():
                    if f not in ("name", "kind", "population", "neurons", "synapses"):
                        m[f] += val
        if key in first.stats:
            stats[key] = list(merged.values())
    stats["samples"] = int(sum(p.stats["samples"] for p in parts))
    for f in ("u_wraps", "v_saturations"):
        stats[f] = int(sum(p.stats[f] for p in parts))
    return SimulationResult(spikes, counts, logits, stats, token_masks=masks,
                            selector_counts=sel_counts, payloads=payloads,
                            voltages={k: np.concatenate([p.voltages[k] for p in parts], axis=1)
                                      for k in first.voltages},
                            voltage_scales=dict(first.voltage_scales),
                            output_steps=np.concatenate([p.output_steps for p in parts], axis=0))


def _simulate_fixed(program: Program, x: np.ndarray, record: bool,
                    token_selection: bool = True) -> SimulationResult:
    B, T = x.shape[0], x.shape[1]  # x: (B, T, n_in) int64
    src = _Sources(program, x, T, np.int64, fixed=True, selection=token_selection)
    spikes = src.spikes  # pop -> (T, B, n) bool; relay payloads in src.payloads
    voltages: dict[str, np.ndarray] = {}
    by_target: dict[str, list] = {}
    for g in program.groups:
        by_target.setdefault(g.target, []).append(g)
    layer_ops: dict[str, dict] = {}
    pop_stats = []
    u_wraps = 0
    v_sats = 0

    def count(g, s):
        entry = layer_ops.setdefault(g.layer, {
            "name": g.layer, "kind": g.kind, "synops": 0, "synapses": 0,
            "population": g.target})
        entry["synapses"] += int(g.weights.nnz)
        if g.kind == "attention":
            entry["synops"] += src.op_stats[g.source]
        else:
            fanout = np.diff(g.weights.tocsc().indptr)  # nonzero weights per source neuron
            entry["synops"] += int(fanout @ (s != 0).sum(axis=1))

    for pop in program.populations:
        n = pop.size
        own = [g for g in by_target[pop.name] if g.source == pop.name]  # recurrent
        a_total = np.zeros((n, T * B), np.int64)
        for g in by_target[pop.name]:
            if g.source == pop.name:
                continue
            s = src(g.source, g.lag)
            a_total += synaptic_input(g.weights, s, g.weight_exp)
            count(g, s)
        a_in = a_total.T.reshape(T, B, n)
        if pop.kind == RELAY:  # graded payload, no state: p = a_in >> payload_shift
            out = src.relay(pop, a_in)
            pop_stats.append({"name": pop.name, "kind": RELAY, "neurons": n,
                              "spikes": int(np.count_nonzero(out)),  # payload messages
                              "neuron_updates": n * T * B,
                              "active_updates": int(np.count_nonzero(a_in))})
            continue
        gate = src.gate(pop)  # (B, n) bool or None
        u = np.zeros((B, n), np.int64)
        v = np.zeros((B, n), np.int64)
        bias_eff = np.asarray(pop.bias_mant, np.int64) << pop.bias_exp
        du = np.asarray(pop.du, np.int64) if isinstance(pop.du, np.ndarray) else pop.du
        has_current = bool(np.any(np.asarray(pop.du) != 4095))
        vth = pop.vth if pop.kind != LI else None
        out = np.zeros((T, B, n), bool)
        volts = np.zeros((T, B, n), np.int64) if pop.kind == LI else None
        active = 0
        for t in range(T):
            a = a_in[t]
            for g in own:  # own spikes of step t - lag, through one Sparse stage
                if t >= g.lag:
                    a = a + synaptic_input(g.weights, out[t - g.lag].T.astype(np.int64),
                                           g.weight_exp).T
            busy = (a != 0) | (v != 0)
            if has_current:
                busy |= u != 0
            active += int(np.count_nonzero(busy if gate is None else busy & gate))
            u, v, s, wrapped = lif_fixed_step(u, v, a, du=du, dv=pop.dv, vth=vth,
                                              bias_eff=bias_eff,
                                              reset_subtract=pop.reset_subtract)
            if gate is not None:  # neurons of dropped tokens stay at rest
                s, u, v, wrapped = s & gate, u * gate, v * gate, wrapped & gate
            u_wraps += int(wrapped.sum())
            v_sats += int(np.count_nonzero(np.abs(v) == (2 ** 23 - 1)))
            out[t] = s
            if volts is not None:
                volts[t] = v
        if volts is not None:
            voltages[pop.name] = volts
        else:
            spikes[pop.name] = out
        for g in own:
            count(g, src(g.source, g.lag))
        updates = n * T * B if gate is None else int(gate.sum()) * T
        pop_stats.append({"name": pop.name, "neurons": n, "spikes": int(out.sum()),
                          "neuron_updates": updates, "active_updates": active})
    counts = {name: s.sum(axis=0).astype(np.int64) for name, s in spikes.items()}
    sel_counts = src.selector_counts()
    scales = {p.name: float(p.scale) for p in program.populations if p.kind == LI}
    logits, steps = _read_out(program.readout, src, {**counts, **sel_counts}, voltages, scales,
                              T, B)
    stats = {"backend": "reference", "samples": B, "time_steps": T,
             "pipeline_depth": program.pipeline_depth, "layers": list(layer_ops.values()),
             "populations": pop_stats, "u_wraps": u_wraps, "v_saturations": v_sats}
    if program.token_selects:
        stats["token_selectors"] = [src.sel_stats[t.name] for t in program.token_selects]
    return SimulationResult(spikes if record else {}, counts, logits, stats,
                            token_masks=dict(src.masks), selector_counts=sel_counts,
                            payloads=src.payloads if record else {}, voltages=voltages,
                            voltage_scales=scales, output_steps=steps)


def _readout(readout, counts, T, B) -> np.ndarray:
    z = np.tile(np.asarray(readout.bias, np.float64) * T, (B, 1))
    for src, w in readout.weights.items():
        z += np.asarray(w @ counts[src].T.astype(np.float64)).T
    return readout.scale * z


def _readout_steps(readout, values: dict, T: int, B: int) -> np.ndarray:
    """The graph Output per step, (B, T, num_outputs): ``scale (sum W a[t] + bias)``,
    accumulated over t for a cumulative (Integrator) readout. ``values[src]``: (T, B, n)."""
    y = np.tile(np.asarray(readout.bias, np.float64), (T, B, 1))
    for src, w in readout.weights.items():
        a = np.asarray(values[src], np.float64).reshape(T * B, -1)
        y += np.asarray(w @ a.T).T.reshape(T, B, -1)
    y = readout.scale * y
    if readout.cumulative:
        y = np.cumsum(y, axis=0)
    return y.transpose(1, 0, 2)


def _read_out(readout, src, counts, voltages, scales, T, B):
    """``(logits, output_steps)`` of a run: logits from counts (spike and selector sums, LI
    voltage sums in float units), per-step outputs from the per-step sources."""
    values = {}
    counts = dict(counts)
    for name in readout.weights:
        if name in voltages:
            values[name] = voltages[name] / scales.get(name, 1.0)
            counts[name] = values[name].sum(axis=0)
        else:
            values[name] = src(name).reshape(-1, T, B).transpose(1, 2, 0)
    return _readout(readout, counts, T, B), _readout_steps(readout, values, T, B)


def simulate_float(fp: FloatProgram, inputs: np.ndarray, *,
                   batch_size: int = 256) -> SimulationResult:
    """Float64 simulation of the lowered graph (no quantization, no pipeline).

    ``inputs``: images ``(B, *input_shape)`` repeated for ``fp.time_steps`` steps, or a
    sequence ``(B, T, *input_shape)``; float values are allowed.
    """
    seq = as_input_sequence(fp, inputs, integer=False)
    _check_sequence(fp, seq)
    res = []
    for i in range(0, len(seq), batch_size):
        res.append(_simulate_float(fp, seq[i:i + batch_size]))
    return SimulationResult(
        {k: np.concatenate([r.spikes[k] for r in res], axis=1) for k in res[0].spikes},
        {k: np.concatenate([r.counts[k] for r in res], axis=0) for k in res[0].counts},
        np.concatenate([r.logits for r in res], axis=0), {"backend": "float"},
        token_masks={k: np.concatenate([r.token_masks[k] for r in res], axis=0)
                     for k in res[0].token_masks},
        selector_counts={k: np.concatenate([r.selector_counts[k] for r in res], axis=0)
                         for k in res[0].selector_counts},
        payloads={k: np.concatenate([r.payloads[k] for r in res], axis=1)
                  for k in res[0].payloads},
        voltages={k: np.concatenate([r.voltages[k] for r in res], axis=1)
                  for k in res[0].voltages},
        voltage_scales=dict(res[0].voltage_scales),
        output_steps=np.concatenate([r.output_steps for r in res], axis=0))


def _simulate_float(fp: FloatProgram, x) -> SimulationResult:
    B, T = x.shape[0], x.shape[1]  # x: (B, T, n_in) float64
    src = _Sources(fp, x, T, np.float64, fixed=False)
    spikes = src.spikes
    voltages: dict[str, np.ndarray] = {}
    by_target: dict[str, list] = {}
    for g in fp.groups:
        by_target.setdefault(g.target, []).append(g)
    for pop in fp.populations:
        n = pop.size
        own = [g for g in by_target[pop.name] if g.source == pop.name]
        drive = np.zeros((n, T * B))
        for g in by_target[pop.name]:
            if g.source != pop.name:
                drive += np.asarray(g.weight @ src(g.source, g.lag))
        drive = drive.T.reshape(T, B, n)
        if pop.kind == RELAY:  # the real factor output, passed on as a graded value
            src.relay(pop, drive)
            continue
        gate = src.gate(pop)
        current = bool(np.any(np.asarray(pop.alpha_syn) != 0))
        i_syn = np.zeros((B, n))
        v = np.zeros((B, n))
        out = np.zeros((T, B, n), bool)
        volts = np.zeros((T, B, n)) if pop.kind == LI else None
        for t in range(T):
            x_t = drive[t]
            for g in own:
                if t >= g.lag:
                    x_t = x_t + np.asarray(g.weight @ out[t - g.lag].T.astype(np.float64)).T
            if current:
                i_syn = pop.alpha_syn * i_syn + x_t
                x_t = i_syn
            v = pop.alpha * v + x_t + pop.bias
            if volts is not None:
                volts[t] = v
                continue
            s = v >= pop.v_threshold if pop.threshold_ge else v > pop.v_threshold
            if pop.reset == "subtract":
                v = np.where(s, v - pop.v_threshold, v)
            else:
                v = np.where(s, 0.0, v)
            if gate is not None:
                s, v = s & gate, v * gate
            out[t] = s
        if volts is not None:
            voltages[pop.name] = volts
        else:
            spikes[pop.name] = out
    counts = {k: s.sum(axis=0) for k, s in spikes.items()}
    sel_counts = src.selector_counts()
    logits, steps = _read_out(fp.readout, src, {**counts, **sel_counts}, voltages, {}, T, B)
    return SimulationResult(spikes, counts, logits, {}, token_masks=dict(src.masks),
                            selector_counts=sel_counts, payloads=src.payloads,
                            voltages=voltages, voltage_scales={k: 1.0 for k in voltages},
                            output_steps=steps)
