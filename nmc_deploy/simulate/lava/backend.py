"""Run a compiled program with real Lava Processes on ``Loihi2SimCfg(select_tag='fixed_pt')``.

The only module of nmc-deploy (besides the Processes in ``lif`` and ``processes``) that
imports Lava. Mapping:

* input: ``RingBuffer`` source with the integer input of every sample: images repeated T
  times or a (B, T, *input_shape) sequence; a second ``RingBuffer`` cycling ``[1]*T +
  [0]*gap`` when groups read the constant source ``CONST``;
* population: our ``LoihiLIF`` (Lava's LIFReset with options; ``simulate/lava/lif.py``)
  with ``reset_interval = P`` and ``reset_offset = (1 + depth) % P``, so u and v are zeroed
  at the first step of each sample window of that depth (deployment decision 2); the
  options follow the population (:func:`lif_options`): its decays per neuron, a window
  when samples are separated by a gap, a gate for the token selector that gates it, a
  subtractive reset, no spikes for an LI/CubaLI readout;
* synapse group: ``Sparse`` (delay 0) or ``DelaySparse`` (delay > 0), with the program's
  integer weights, ``weight_exp``, ``num_weight_bits=8`` and ``num_message_bits``;
* attention op: our ``SpikeAttention`` Process, whose output drives the attention LIF;
* relay population (low-rank factor stage): our ``GradedRelay`` Process; the groups it
  feeds are Sparse/DelaySparse with ``num_message_bits > 0`` (graded payloads);
* token selector: our ``TokenSelectProcess`` (buffers a sample, decides, re-emits the kept
  tokens' stream as graded payloads); the populations it gates receive its keep mask on
  ``gate_in`` (``LoihiLIF``'s gate option);
* recording: one ``SpikeRecorder`` per spiking population writes its raster to a temporary
  file; a ``GradedRecorder`` (int32 payloads) per relay, per token selector output and per
  LI population (its voltage).

Samples run with period ``P = T + gap`` (``gap = program.sample_gap``, the largest lag; 0
without Delay nodes and recurrence, so samples run back to back): a population of depth d
holds sample k, step t at Lava time step ``1 + d + k P + t``. In the ``gap`` idle steps the
input is 0 and every population rests (``LoihiLIF``'s window option), so a lagged group (at
most ``gap`` steps) delivers zeros into the first steps of the next window, as the
reference's "0 before t = 0": a recurrent spike of a sample's last step never reaches the
next sample. The run lasts ``n P + pipeline depth`` steps.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import lava311
from ...program import CONST, LI, Program, SourceKind
from ...program.shared_weights import as_csr
from ...errors import SimulationError
from ...loihi.constants import LAVA_SYNAPSE
from ..inputs import as_input_sequence, check_input_steps
from ..readout import read_out
from ..result import SimulationResult

lava311.import_lava_runtime()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.io.source import RingBuffer  # noqa: E402
from lava.proc.sparse.process import DelaySparse, Sparse  # noqa: E402

from .lif import LoihiLIF  # noqa: E402
from .processes import (GradedRecorder, GradedRelay,  # noqa: E402
                        PyDelaySparseModelBitAccCached, SpikeAttention, SpikeRecorder,
                        TokenSelectProcess)

__all__ = ["simulate_lava", "build_network", "run_config", "lif_options"]


def _attention_weight(weights):
    d = weights.diagonal().astype(np.int64)
    return int(d[0]) if np.all(d == d[0]) else d


def lif_options(p, T: int, windowed: bool, selector=None) -> dict:
    """The :class:`LoihiLIF` options of population ``p`` (besides its LIFReset parameters).

    ``windowed`` (samples separated by a gap): active ``T`` steps from ``1 + depth`` per
    period, at rest between. LI populations and those with a subtractive reset get the
    window in every program (without a gap it only keeps them at rest before their first
    window). ``selector``: the token selector gating ``p`` (its mask, ``depth - selector
    depth`` steps old, belongs to the sample being computed); it combines with a window.
    """
    options = {}
    if windowed or p.kind == LI or p.reset_subtract or p.multi_spike or p.v_min is not None:
        options.update(window=T, first_step=1 + p.depth)
    if p.reset_subtract:
        options["reset_subtract"] = p.reset_subtract
    if p.kind == LI:
        options["spiking"] = False
    if p.multi_spike:
        options.update(max_spikes=p.max_spikes, spike_unit=p.spike_unit)
    if p.v_min is not None:
        options["v_min"] = p.v_min
    if selector is not None:
        options.update(gate_tokens=selector.n_tokens, gate_delay=p.depth - selector.depth)
    return options


def _connect_recorders(program: Program, lifs: dict, selectors: dict, num_steps: int,
                       record_dir: Path) -> dict:
    """One recorder per population (spikes; payloads of a relay, voltage of an LI) and two
    per token selector (its stream, its mask); returns name -> (recorder, *paths)."""
    recorders = {}
    for i, p in enumerate(program.populations):
        recorder = GradedRecorder if (p.graded or p.kind == LI or p.multi_spike) \
            else SpikeRecorder
        rec = recorder(shape=(p.size,), num_steps=num_steps,
                       path=str(record_dir / f"pop{i}.npy"), name=f"rec:{p.name}")
        lifs[p.name].s_out.connect(rec.a_in)
        recorders[p.name] = (rec, record_dir / f"pop{i}.npy")
    for i, t in enumerate(program.token_selects):
        n = t.dim * t.n_tokens
        rec = GradedRecorder(shape=(n,), num_steps=num_steps, path=str(record_dir / f"sel{i}.npy"),
                             name=f"rec:{t.name}")
        selectors[t.name].s_out.connect(rec.a_in)
        mrec = SpikeRecorder(shape=(t.n_tokens,), num_steps=num_steps,
                             path=str(record_dir / f"mask{i}.npy"), name=f"rec:{t.name}:mask")
        selectors[t.name].mask_out.connect(mrec.a_in)
        recorders[t.name] = (rec, record_dir / f"sel{i}.npy", record_dir / f"mask{i}.npy")
    return recorders


def build_network(program: Program, seq: np.ndarray, record_dir: Path):
    """Create and connect the Lava Processes; returns ``(source, recorders, num_steps)``.

    ``seq``: the integer input sequence ``(n, T, n_in)``
    (:func:`~nmc_deploy.simulate.inputs.as_input_sequence`).
    """
    n, T = seq.shape[0], seq.shape[1]
    gap = program.sample_gap
    period = T + gap
    windowed = gap > 0
    num_steps = n * period + program.pipeline_depth
    padded = np.zeros((n, period, seq.shape[2]), np.int64)
    padded[:, :T] = seq
    data = padded.reshape(n * period, -1).T.astype(np.int32)  # (n_in, n*P), sample-major
    source = RingBuffer(data=data)
    const = None
    if any(g.source == CONST for g in program.groups):
        const = RingBuffer(data=np.array([[1] * T + [0] * gap], np.int32))
    lifs = {}
    sels = {t.name: t for t in program.token_selects}
    for p in program.populations:
        if p.graded:  # a low-rank relay: graded payloads, no state (never gated)
            lifs[p.name] = GradedRelay(shape=(p.size,), payload_shift=p.payload_shift,
                                       name=p.name)
            continue
        lifs[p.name] = LoihiLIF(
            shape=(p.size,), du=p.du, dv=p.dv, vth=p.vth,
            bias_mant=np.asarray(p.bias_mant, np.int64).astype(np.int32),
            bias_exp=np.full(p.size, p.bias_exp, np.int32), reset_interval=period,
            reset_offset=(1 + p.depth) % period, name=p.name,
            **lif_options(p, T, windowed, sels.get(p.gate)))
    selectors = {}
    for t in program.token_selects:
        prev_delay = t.depth_in - sels[t.previous].depth if t.previous else -1
        params = {"w1": t.w1, "b1": t.b1, "h_shift": t.h_shift, "lut": t.lut,
                  "lut_min": t.lut_min, "w_score": t.w_score, "b_score": t.b_score}
        selectors[t.name] = TokenSelectProcess(
            dim=t.dim, n_tokens=t.n_tokens, n_keep=t.n_keep, time_steps=T, depth_in=t.depth_in,
            params=params, prev_delay=prev_delay, name=t.name)
        if t.previous:
            selectors[t.previous].mask_out.connect(selectors[t.name].prev_in)
    for p in program.populations:
        if p.gate:
            selectors[p.gate].mask_out.connect(lifs[p.name].gate_in)

    kinds = program.source_kinds()

    def out_port(src):
        kind = kinds[src]
        if kind is SourceKind.INPUT:
            return source.s_out
        if kind is SourceKind.CONST:
            return const.s_out
        return (selectors[src] if kind is SourceKind.SELECTOR else lifs[src]).s_out

    def connect_group(g, in_port):
        kwargs = dict(weights=as_csr(g.weights).astype(np.int32), weight_exp=g.weight_exp,
                      num_weight_bits=LAVA_SYNAPSE.max_weight_bits,
                      num_message_bits=g.num_message_bits, name=g.name)
        if g.delay:  # delays as a sparse matrix on the weights' synapses: an int would
            w = kwargs["weights"]  # become a dense (targets x sources) Var in Lava
            delays = sp.csr_matrix((np.full(w.nnz, g.delay, np.int64), w.indices, w.indptr),
                                   shape=w.shape)
            syn = DelaySparse(delays=delays, max_delay=g.delay, **kwargs)
        else:
            syn = Sparse(**kwargs)
        out_port(g.source).connect(syn.s_in)
        syn.a_out.connect(in_port)

    for t in program.token_selects:
        for g in t.inputs:
            connect_group(g, selectors[t.name].a_in)
    ops = {op.name: op for op in program.attention}
    for g in program.groups:
        if g.kind == "attention":
            op = ops[g.source]
            for unit in op.units or (None,):  # one Process per attention unit (core)
                proc = SpikeAttention(
                    dim=op.dim, n_tokens=op.n_tokens, num_heads=op.num_heads,
                    weight=_attention_weight(g.weights), weight_exp=g.weight_exp,
                    unit=None if unit is None else (
                        unit.head_start, unit.head_stop, unit.q_start, unit.q_stop,
                        unit.k_start, unit.k_stop),
                    name=op.name if unit is None else unit.name)
                lifs[op.q].s_out.connect(proc.q_in)
                lifs[op.k].s_out.connect(proc.k_in)
                lifs[op.v].s_out.connect(proc.v_in)
                proc.a_out.connect(lifs[g.target].a_in)
            continue
        connect_group(g, lifs[g.target].a_in)
    recorders = _connect_recorders(program, lifs, selectors, num_steps, record_dir)
    return source, recorders, num_steps


def run_config(cache_delay_weights: bool = True) -> Loihi2SimCfg:
    """``Loihi2SimCfg(select_tag='fixed_pt')``; optionally with the cached DelaySparse model."""
    exceptions = {DelaySparse: PyDelaySparseModelBitAccCached} if cache_delay_weights else {}
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=exceptions)


def simulate_lava(program: Program, inputs: np.ndarray, *,
                  cache_delay_weights: bool = True) -> SimulationResult:
    """Run ``program`` in Lava on images ``(B, *input_shape)`` or an integer sequence
    ``(B, T, *input_shape)``; spikes, payloads and LI voltages in sample time like
    :func:`~nmc_deploy.simulate.reference.simulate_reference`."""
    seq = as_input_sequence(program, inputs)
    check_input_steps(program, seq)
    n, T = seq.shape[0], seq.shape[1]
    period = T + program.sample_gap
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nmc-lava-") as tmp:
        tmp = Path(tmp)
        source, recorders, num_steps = build_network(program, seq, tmp)
        try:
            with warnings.catch_warnings():
                # Lava's compiler tries to import every module beside a Process's module as
                # a top-level one while it looks for ProcessModels, and warns for those it
                # cannot (ours are package modules); the models it needs are found
                warnings.filterwarnings("ignore", message="Cannot import module",
                                        category=UserWarning)
                source.run(condition=RunSteps(num_steps=num_steps, blocking=True),
                           run_cfg=run_config(cache_delay_weights))
        except Exception as exc:
            raise SimulationError(f"lava: run failed ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from exc
        finally:
            try:
                source.stop()
            except Exception:
                pass
        spikes, payloads, voltages = {}, {}, {}
        for p in program.populations:
            path = recorders[p.name][1]
            if not path.exists():
                raise SimulationError(f"lava: population '{p.name}' recorded nothing")
            if p.graded or p.kind == LI or p.multi_spike:  # payloads, voltages, counts
                raster = np.load(path).astype(np.int64)
            else:
                raster = np.unpackbits(np.load(path), axis=1, count=p.size).astype(bool)
            # Lava step 1+d+kP+t -> row d+kP+t
            window = raster[p.depth:p.depth + n * period].reshape(n, period, p.size)[:, :T]
            out = payloads if p.graded else voltages if p.kind == LI else spikes
            out[p.name] = window.transpose(1, 0, 2)
        sel_counts, sel_steps, masks = {}, {}, {}
        for t in program.token_selects:
            _, path, mpath = recorders[t.name]
            if not path.exists() or not mpath.exists():
                raise SimulationError(f"lava: token selector '{t.name}' recorded nothing")
            window = np.load(path)[t.depth:t.depth + n * T].astype(np.int64)
            sel_steps[t.name] = window.reshape(n, T, -1).transpose(1, 0, 2)
            sel_counts[t.name] = window.reshape(n, T, -1).sum(axis=1)
            mraster = np.unpackbits(np.load(mpath), axis=1, count=t.n_tokens).astype(bool)
            masks[t.name] = mraster[t.depth:t.depth + n * T:T]  # one row per sample
    counts = {k: s.sum(axis=0).astype(np.int64) for k, s in spikes.items()}
    scales = {p.name: float(p.scale) for p in program.populations if p.kind == LI}
    logits, steps = read_out(program.readout, {**counts, **sel_counts}, {**spikes, **sel_steps},
                             voltages, scales, T, n)
    stats = {"backend": "lava", "samples": n, "time_steps": T, "lava_steps": num_steps,
             "sample_gap": program.sample_gap, "seconds": time.perf_counter() - t0}
    return SimulationResult(spikes, counts, logits, stats, token_masks=masks,
                            selector_counts=sel_counts, payloads=payloads, voltages=voltages,
                            voltage_scales=scales, output_steps=steps)
