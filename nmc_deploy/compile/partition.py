"""Place populations and their incoming synapses onto cores under a target's limits (pure).

Strategy (greedy, sequential, reproducible, like nengo-loihi's block splitting):

1. each population is cut into contiguous neuron chunks, each as large as possible such that
   its neurons, its incoming synapse memory (sparse format, :func:`synapse_memory_bits`) and
   its input axons (one per source neuron with synapses into the chunk, per group) fit one
   core;
2. chunks are packed in program order onto cores, a new core opening when any per-core
   limit (neurons, neuron groups, synapse memory, input axons) would be exceeded;
3. output axons (one per source neuron and destination core reached) are counted
   after placement and checked.

Attention ops need programmable (graded-spike) neurons: on a target with graded spikes each
gets a core of its own; otherwise they are assumed to run on the chip's embedded x86 cores.

Relay populations (low-rank factors in relay form, graded payloads) are placed exactly like
LIF populations: one compartment per neuron, its own neuron group (a distinct neuron
program) on each core it occupies, its incoming synapses stored like any other. Assumed for
graded payloads (Loihi 2; Intel publishes no per-message costs): a graded spike is one
message per (source neuron, destination core), so it costs one output axon there and one
input axon per destination core like a binary spike; the payload travels in the message and
multiplies the stored weight at the destination, so a synapse entry needs no extra bits
(same ``weight_bits + index_bits`` as for binary spikes). A relay needs a target with graded
spikes (``graded_spike_bits`` at least its ``payload_bits``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import CapacityError
from ..targets import HardwareTarget, synapse_memory_bits
from ..program import Program
from ..program.placement import ATTENTION_INPUTS, Chunk, Placement

__all__ = ["Placement", "Chunk", "partition_program", "format_utilization"]


def _chunk_cost(groups, start, stop, target) -> tuple[int, int, int]:
    """Synapses, synapse memory bits and input axons of neurons ``[start, stop)``.

    Reads the rows straight from each CSR's ``indptr``/``indices`` (no submatrix is built:
    re-slicing was most of the partition time on large models)."""
    syn = mem = axons = 0
    for g in groups:
        w = g.weights
        lo, hi = int(w.indptr[start]), int(w.indptr[stop])
        if hi == lo:
            continue
        counts = np.bincount(w.indices[lo:hi], minlength=w.shape[1])
        counts = counts[counts > 0]
        syn += hi - lo
        axons += int(counts.size)
        mem += synapse_memory_bits(counts, target, sparse=True, span=stop - start)
    return syn, mem, axons


def _chunk_population(p, groups, target, outdeg) -> list[Chunk]:
    max_neurons = target.max_neurons_per_core
    max_mem = target.synapse_memory_bits_per_core
    max_in = target.max_in_axons_per_core
    max_out = target.max_out_axons_per_core
    cum_out = np.concatenate([[0], np.cumsum(outdeg)])
    chunks = []
    start = 0
    while start < p.size:
        hi = min(p.size, start + max_neurons)

        def fits(stop):
            if cum_out[stop] - cum_out[start] > max_out:
                return False
            _, mem, axons = _chunk_cost(groups, start, stop, target)
            return mem <= max_mem and axons <= max_in

        if not fits(start + 1):
            syn, mem, axons = _chunk_cost(groups, start, start + 1, target)
            if mem > max_mem:
                what, got, limit, name = ("synapse memory bits", mem, max_mem,
                                          "synapse_memory_bits_per_core")
            elif axons > max_in:
                what, got, limit, name = ("input axons", axons, max_in, "max_in_axons_per_core")
            else:
                what, got, limit, name = ("output axons", int(outdeg[start]), max_out,
                                          "max_out_axons_per_core")
            raise CapacityError(
                f"{p.name}[{start}]: {what} of one neuron ({got}) exceeds {name} ({limit}) "
                f"of target {target.name}; prune the model or choose a larger target")
        lo = start + 1  # fits(lo); find the largest stop <= hi that fits
        if fits(hi):
            lo = hi
        else:
            top = hi
            while top - lo > 1:
                mid = (lo + top) // 2
                if fits(mid):
                    lo = mid
                else:
                    top = mid
        syn, mem, axons = _chunk_cost(groups, start, lo, target)
        chunks.append(Chunk(p.name, start, lo, syn, mem, axons))
        start = lo
    return chunks


def _pack(chunks, target, outdeg) -> list[list[Chunk]]:
    cores: list[list[Chunk]] = []
    used = None
    for c in chunks:
        out = int(outdeg[c.population][c.start:c.stop].sum())
        if used is not None and (used[0] + c.neurons <= target.max_neurons_per_core and
                                 used[1] + c.synapse_memory_bits <=
                                 target.synapse_memory_bits_per_core and
                                 used[2] + c.in_axons <= target.max_in_axons_per_core and
                                 used[3] + out <= target.max_out_axons_per_core and
                                 len(cores[-1]) < target.max_neuron_groups_per_core):
            cores[-1].append(c)
            used = (used[0] + c.neurons, used[1] + c.synapse_memory_bits,
                    used[2] + c.in_axons, used[3] + out)
        else:
            cores.append([c])
            used = (c.neurons, c.synapse_memory_bits, c.in_axons, out)
    return cores


def _out_degrees(program, cores) -> dict[str, np.ndarray]:
    """Per source neuron: the number of distinct cores its synapses reach."""
    core_of = {p.name: np.full(p.size, -1, np.int64) for p in program.populations}
    for i, cs in enumerate(cores):
        for c in cs:
            core_of[c.population][c.start:c.stop] = i
    n_cores = len(cores) + 1
    pairs_by_source: dict[str, list[np.ndarray]] = {}
    for g in program.groups:
        if g.kind == "attention" or g.source not in core_of:
            continue
        w = sp.csc_matrix(g.weights)
        dest = core_of[g.target][w.indices]
        col = np.repeat(np.arange(w.shape[1]), np.diff(w.indptr))
        pairs_by_source.setdefault(g.source, []).append(col * n_cores + dest)
    outdeg = {p.name: np.zeros(p.size, np.int64) for p in program.populations}
    for src, pairs in pairs_by_source.items():  # one axon per (neuron, destination core)
        np.add.at(outdeg[src], np.unique(np.concatenate(pairs)) // n_cores, 1)
    for op in program.attention:  # every q, k, v neuron also feeds its attention unit
        for name in {op.q, op.k, op.v}:
            outdeg[name] += 1
    return outdeg


MAX_PARTITION_ROUNDS = 8


def partition_program(program: Program, target: HardwareTarget) -> Placement:
    """Place ``program`` on cores of ``target``; raises :class:`CapacityError` if it cannot.

    Output axons depend on where the targets land, so placement repeats with each neuron's
    out-degree (in cores) from the previous round as a constraint, until nothing changes.
    """
    for p in program.populations:
        if p.graded and p.payload_bits > target.graded_spike_bits:
            raise CapacityError(f"{p.name}: graded payload bits ({p.payload_bits}) exceeds "
                                f"graded_spike_bits ({target.graded_spike_bits}) of target "
                                f"{target.name}; compile the low-rank factors fused "
                                "(--low-rank fused) for this target")
    incoming: dict[str, list] = {p.name: [] for p in program.populations}
    for g in program.groups:
        if g.kind != "attention":  # realised inside the attention unit
            incoming[g.target].append(g)
    outdeg = {p.name: np.zeros(p.size, np.int64) for p in program.populations}
    for _ in range(MAX_PARTITION_ROUNDS):
        chunks = [c for p in program.populations
                  for c in _chunk_population(p, incoming[p.name], target, outdeg[p.name])]
        cores = _pack(chunks, target, outdeg)
        new = _out_degrees(program, cores)
        out_axons = [int(sum(new[c.population][c.start:c.stop].sum() for c in cs))
                     for cs in cores]
        if max(out_axons) <= target.max_out_axons_per_core:
            break
        outdeg = {k: np.maximum(outdeg[k], v) for k, v in new.items()}
    else:
        i = int(np.argmax(out_axons))
        raise CapacityError(f"core {i}: output axons ({out_axons[i]}) exceed "
                            f"max_out_axons_per_core ({target.max_out_axons_per_core}) of target "
                            f"{target.name}; the populations on it project to too many cores")
    graded = target.graded_spike_bits > 0
    for op in program.attention if graded else ():
        n = op.dim * op.n_tokens
        if ATTENTION_INPUTS * n > target.max_in_axons_per_core or \
                n > target.max_out_axons_per_core:
            raise CapacityError(f"{op.name}: attention unit axons (in {ATTENTION_INPUTS * n}, "
                                f"out {n}) exceed "
                                f"max_in_axons_per_core ({target.max_in_axons_per_core}) or "
                                f"max_out_axons_per_core ({target.max_out_axons_per_core}); "
                                "splitting attention over cores is not supported yet")
    att_cores = tuple(op.name for op in program.attention) if graded else ()
    att_host = () if graded else tuple(op.name for op in program.attention)
    total = len(cores) + len(att_cores)
    max_cores = target.cores_per_chip * target.max_chips
    if total > max_cores:
        raise CapacityError(f"program: cores ({total}) exceed the cores of target {target.name} "
                            f"({max_cores} = {target.max_chips} chip(s) x {target.cores_per_chip}); "
                            "prune the model or use a larger target")
    limits = {"max_neurons_per_core": target.max_neurons_per_core,
              "synapse_memory_bits_per_core": target.synapse_memory_bits_per_core,
              "max_in_axons_per_core": target.max_in_axons_per_core,
              "max_out_axons_per_core": target.max_out_axons_per_core,
              "max_neuron_groups_per_core": target.max_neuron_groups_per_core}
    return Placement(target.name, tuple(tuple(c) for c in cores), att_cores, att_host,
                     tuple(out_axons), limits)


def format_utilization(summary: dict) -> str:
    """A per-core utilization table (percent of each per-core limit)."""
    lim = summary["limits"]
    head = f"{'core':>4}  {'populations':<44} {'neurons':>13} {'synapses':>9} " \
           f"{'syn. memory':>12} {'in-axons':>13} {'out-axons':>13}"
    lines = [head, "-" * len(head)]

    def pct(x, m):
        return f"{x:>6} {100.0 * x / m:5.1f}%"

    for c in summary["cores"]:
        if c["kind"] == "attention":
            lines.append(f"{c['core']:>4}  {'[attention unit] ' + c['attention']:<44} "
                         f"{'-':>13} {'-':>9} {'-':>12} {'-':>13} {'-':>13}")
            continue
        names = ", ".join(p["name"] + ("" if p["fraction"] == 1 else f"[{p['start']}:{p['stop']}]")
                          for p in c["populations"])
        if len(names) > 44:
            names = names[:41] + "..."
        mem_pct = 100.0 * c["synapse_memory_bits"] / lim["synapse_memory_bits_per_core"]
        lines.append(f"{c['core']:>4}  {names:<44} {pct(c['neurons'], lim['max_neurons_per_core'])} "
                     f"{c['synapses']:>9} {c['synapse_memory_bits'] // 8:>7}B {mem_pct:3.0f}% "
                     f"{pct(c['in_axons'], lim['max_in_axons_per_core'])} "
                     f"{pct(c['out_axons'], lim['max_out_axons_per_core'])}")
    lines.append(f"cores used: {summary['cores_used']} (target {summary['target']})")
    if summary.get("attention_on_host"):
        lines.append("attention ops on embedded x86 cores (no graded spikes on this target): "
                     + ", ".join(summary["attention_on_host"]))
    for t in summary.get("token_selectors", []):
        lines.append(f"token selector {t['name']} on an embedded core: keeps {t['kept']} of "
                     f"{t['tokens']} tokens, {t['predictor_words']} program words, buffer "
                     f"{t['buffer_values']} values, adds {t['depth'] - t['depth_in']} steps")
    return "\n".join(lines)
