"""Place populations and their incoming synapses onto cores under a target's limits (pure).

Strategy (greedy, sequential, reproducible, like nengo-loihi's block splitting):

1. each population is cut into contiguous neuron chunks, each as large as possible such that
   its neurons, its incoming synapse memory (sparse format, :func:`synapse_memory_bits`) and
   its input axons (one per source neuron with synapses into the chunk, per group) fit one
   core;
2. chunks are packed in program order onto cores, a new core opening when any per-core
   limit (neurons, neuron groups, synapse memory, input axons) would be exceeded;
3. output axons (one per source neuron and destination core reached) are counted
   after placement and checked;
4. the cores are assigned to chips and mesh positions (:func:`~.chips.assign_chips`).

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
from ..program import AttentionUnit, Program
from ..program.placement import BlockOrder, Chunk, Placement
from ..program.shared_weights import ConvShared, TokenShared, is_shared
from .chips import assign_chips, capacity_message
from .order import choose_order, conv_reach, segments, token_reach
from .shared_costs import SharedCosts, _positions


__all__ = ["Placement", "Chunk", "partition_program", "format_utilization"]


def _csr_rows_cost(w, start, stop, target, span) -> tuple[int, int, int]:
    """Synapses, memory bits and input axons of rows ``[start, stop)`` of CSR ``w``.

    Reads the rows straight from the CSR's ``indptr``/``indices`` (no submatrix is built:
    re-slicing was most of the partition time on large models)."""
    lo, hi = int(w.indptr[start]), int(w.indptr[stop])
    if hi == lo:
        return 0, 0, 0
    counts = np.bincount(w.indices[lo:hi], minlength=w.shape[1])
    counts = counts[counts > 0]
    return hi - lo, synapse_memory_bits(counts, target, sparse=True, span=span), int(counts.size)


def _chunk_cost(groups, start, stop, target, sharing=None, costs=None,
                order=None) -> tuple[int, int, int]:
    """Synapses, synapse memory bits and input axons of order positions ``[start, stop)``
    (flat neuron indices unless ``order`` blocks the population).

    ``sharing``: store shared weights once per core (default: the target's
    ``weight_sharing``); otherwise their expanded rows are charged."""
    sharing = target.weight_sharing if sharing is None else sharing
    costs = costs if costs is not None else SharedCosts()
    syn = mem = axons = 0
    for g in groups:
        w = g.weights
        if is_shared(w):
            if sharing:
                s_, m_, a_ = costs.cost(w, start, stop, target, order)
            else:
                s_, m_, a_ = _csr_rows_cost(w.rows_csr(start, stop), 0, stop - start, target,
                                            stop - start)
        else:
            s_, m_, a_ = _csr_rows_cost(w, start, stop, target, stop - start)
        syn, mem, axons = syn + s_, mem + m_, axons + a_
    return syn, mem, axons


def _chunk_population(p, groups, target, outdeg, sharing, costs, order=None,
                      max_out=None, work=None, max_work=None) -> list[Chunk]:
    """Chunks of ``p`` in its placement order (``outdeg`` per order position), each with at
    most ``max_out`` output axons (default: the target's limit) and, with ``work`` (per
    order position), at most ``max_work`` work (a single neuron always fits)."""
    max_neurons = target.max_neurons_per_core
    max_mem = target.synapse_memory_bits_per_core
    max_in = target.max_in_axons_per_core
    max_out = target.max_out_axons_per_core if max_out is None else max_out
    cum_out = np.concatenate([[0], np.cumsum(outdeg)])
    cum_work = None if work is None else np.concatenate([[0.0], np.cumsum(work)])
    if order is not None:  # chunks end on whole rows (positions) of a block where they can
        row_start = np.asarray(order.bounds, np.int64) * order.positions
        row_width = np.diff(np.asarray(order.bounds, np.int64))
    chunks = []
    start = 0
    while start < p.size:
        # the out-axon bound first (prefix sums), then search memory and axons below it; a
        # neuron alone is held to the target's limit, not the round's headroom
        budget = max(max_out, int(outdeg[start]))
        by_out = int(np.searchsorted(cum_out, cum_out[start] + budget, side="right")) - 1
        hi = max(start + 1, min(p.size, start + max_neurons, by_out))

        def fits(stop):
            limit = max_out if stop - start > 1 else target.max_out_axons_per_core
            if cum_out[stop] - cum_out[start] > limit:
                return False
            if cum_work is not None and stop - start > 1 and \
                    cum_work[stop] - cum_work[start] > max_work:
                return False
            _, mem, axons = _chunk_cost(groups, start, stop, target, sharing, costs, order)
            return mem <= max_mem and axons <= max_in

        if not fits(start + 1):
            syn, mem, axons = _chunk_cost(groups, start, start + 1, target, sharing, costs,
                                          order)
            if mem > max_mem:
                what, got, limit, name = ("synapse memory bits", mem, max_mem,
                                          "synapse_memory_bits_per_core")
            elif axons > max_in:
                what, got, limit, name = ("input axons", axons, max_in, "max_in_axons_per_core")
            else:
                what, got, limit, name = ("output axons", int(outdeg[start]),
                                          target.max_out_axons_per_core,
                                          "max_out_axons_per_core")
            neuron = start if order is None else int(order.neurons(start, start + 1)[0])
            raise CapacityError(
                f"{p.name}[{neuron}]: {what} of one neuron ({got}) exceeds {name} ({limit}) "
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
        if order is not None and lo < p.size:
            # a row cut between two cores makes every source of that position reach both
            k = int(np.searchsorted(row_start, lo, side="right")) - 1
            aligned = int(row_start[k] + (lo - row_start[k]) // row_width[k] * row_width[k])
            if aligned > start:
                lo = aligned
        syn, mem, axons = _chunk_cost(groups, start, lo, target, sharing, costs, order)
        chunks.append(Chunk(p.name, start, lo, syn, mem, axons))
        start = lo
    return chunks


def _pack(chunks, target, outdeg, max_out=None, work=None, max_work=None) -> list[list[Chunk]]:
    max_out = target.max_out_axons_per_core if max_out is None else max_out
    cores: list[list[Chunk]] = []
    used = None
    busy = 0.0
    for c in chunks:
        out = int(outdeg[c.population][c.start:c.stop].sum())
        w = 0.0 if work is None else float(work[c.population][c.start:c.stop].sum())
        if used is not None and (work is None or busy + w <= max_work) and \
                (used[0] + c.neurons <= target.max_neurons_per_core and
                                 used[1] + c.synapse_memory_bits <=
                                 target.synapse_memory_bits_per_core and
                                 used[2] + c.in_axons <= target.max_in_axons_per_core and
                                 used[3] + out <= max_out and
                                 len(cores[-1]) < target.max_neuron_groups_per_core):
            cores[-1].append(c)
            used = (used[0] + c.neurons, used[1] + c.synapse_memory_bits,
                    used[2] + c.in_axons, used[3] + out)
            busy += w
        else:
            cores.append([c])
            used = (c.neurons, c.synapse_memory_bits, c.in_axons, out)
            busy = w
    return cores


def token_shared_pairs(w, core_at, n_cores, costs, order=None) -> np.ndarray:
    """The distinct (source neuron, destination core) pairs of a :class:`TokenShared` group,
    coded ``source * n_cores + core`` (``core_at``: core of each order position of the
    target; :func:`~.order.token_reach` with every core flagged)."""
    _, pairs = token_reach(costs.prefix(w), costs.layout(order, w), core_at, n_cores,
                           np.ones(n_cores, bool))
    return pairs


def conv_outdegree(w, core_at, costs=None, order=None) -> np.ndarray:
    """Upper bound of the cores each source neuron of a :class:`ConvShared` group reaches
    (used for convolutions above :data:`EXACT_CONV_FANOUT_SYNAPSES`;
    :func:`~.order.conv_reach`): a run counts for source ``(i, y, x)`` when its output
    channels include one that input channel ``i`` feeds and its output positions include
    one that reads ``(y, x)`` (any tap)."""
    costs = costs if costs is not None else SharedCosts()
    deg = conv_reach(costs.feeds_prefix(w), costs.layout(order, w), core_at,
                     lambda lo, hi: costs.used_inputs(w, lo, hi))
    return np.zeros(w.shape[1], np.int64) if deg is None else deg


# convolutions up to this many expanded synapses get exact output axons (expanded once)
EXACT_CONV_FANOUT_SYNAPSES = 20_000_000


def csc_pairs(w: sp.csc_matrix, core_of_target: np.ndarray, n_cores: int,
               monotone: bool = True) -> np.ndarray:
    """The distinct (source neuron, destination core) pairs of a matrix, as
    ``source * n_cores + core``. In the flat order (``monotone``) the cores of one column's
    sorted row indices never decrease (chunks are contiguous and packed in order), so a pair
    is new where the core changes; otherwise the pairs are made unique by sorting."""
    if not w.has_sorted_indices:
        w = w.sorted_indices()
    col = np.repeat(np.arange(w.shape[1], dtype=np.int64), np.diff(w.indptr))
    dest = core_of_target[w.indices]
    if not monotone:
        return np.unique(col * n_cores + dest)
    new = np.ones(dest.size, bool)
    new[1:] = (dest[1:] != dest[:-1]) | (col[1:] != col[:-1])
    return col[new] * n_cores + dest[new]


def core_maps(program, cores, orders) -> tuple[dict, dict]:
    """Per population the core of each order position and of each (flat) neuron."""
    core_at = {p.name: np.full(p.size, -1, np.int64) for p in program.populations}
    for i, cs in enumerate(cores):
        for c in cs:
            core_at[c.population][c.start:c.stop] = i
    core_of = dict(core_at)
    for name, order in (orders or {}).items():
        flat = np.empty_like(core_at[name])
        flat[order.neurons()] = core_at[name]
        core_of[name] = flat
    return core_at, core_of


def _out_degrees(program, cores, costs=None, orders=None) -> dict[str, np.ndarray]:
    """Per source neuron (flat index): the number of distinct cores its synapses reach (an
    upper bound for large convolution sources)."""
    costs = costs if costs is not None else SharedCosts()
    orders = orders or {}
    core_at, core_of = core_maps(program, cores, orders)
    n_cores = len(cores) + 1
    outdeg = {p.name: np.zeros(p.size, np.int64) for p in program.populations}
    by_source: dict[str, list] = {}
    for g in program.groups:
        if g.kind != "attention" and g.source in core_of:
            by_source.setdefault(g.source, []).append(g)
    for src, groups in by_source.items():  # one axon per (neuron, destination core)
        # cores that two or more of the source's groups reach (other targets, or the same
        # target with another lag): only pairs landing there can repeat across groups (each
        # group's pairs are distinct; one axon serves every delay)
        hits = np.zeros(n_cores, np.int64)
        for g in groups:  # cores rise along an order (chunks packed in order)
            hits[segments(core_at[g.target])[1]] += 1
        shared = hits > 1
        overlap = []
        for g in groups:
            w, order = g.weights, orders.get(g.target)
            if isinstance(w, ConvShared) and w.nnz > EXACT_CONV_FANOUT_SYNAPSES:
                outdeg[src] += conv_outdegree(w, core_at[g.target], costs, order)
                continue
            if isinstance(w, TokenShared):  # counts directly; pairs only on shared cores
                deg, pairs = token_reach(costs.prefix(w), costs.layout(order, w),
                                         core_at[g.target], n_cores, shared)
                outdeg[src] += deg
                overlap.append(pairs)
                continue
            if order is None:
                pairs = csc_pairs(costs.csc(w), core_of[g.target], n_cores)
            else:  # rows renumbered to the target's order: monotone again
                pairs = csc_pairs(costs.csc_in_order(w, order), core_at[g.target], n_cores)
            on_shared = shared[pairs % n_cores]
            outdeg[src] += np.bincount(pairs[~on_shared] // n_cores, minlength=outdeg[src].size)
            overlap.append(pairs[on_shared])
            del pairs, on_shared
        if overlap:
            both = np.unique(np.concatenate(overlap))
            outdeg[src] += np.bincount(both // n_cores, minlength=outdeg[src].size)
    for op in program.attention:  # q, k, v neurons also feed the attention units reading them
        for u in attention_units(op):
            feeds = {}
            for name, lo, hi in ((op.q, u.q_start, u.q_stop), (op.k, u.k_start, u.k_stop),
                                 (op.v, u.k_start, u.k_stop)):
                m = feeds.setdefault(name, np.zeros(op.dim * op.n_tokens, bool))
                m[u.reads(lo, hi, op.n_tokens)] = True
            for name, m in feeds.items():  # one axon per neuron and unit core
                outdeg[name] += m
    return outdeg


def _population_order(p, groups, target, costs, placed) -> BlockOrder | None:
    """The blocked placement order of a population fed only by shared weights of one
    (channels, positions) layout, at least one of them from a population on the cores
    (``placed``; the order saves those sources' output axons; :func:`~.order.choose_order`),
    else None (flat)."""
    if not groups or not all(isinstance(g.weights, (TokenShared, ConvShared)) for g in groups):
        return None
    if not any(g.source in placed for g in groups):
        return None
    shapes = {(g.weights.kernel.shape[0], _positions(g.weights)) for g in groups}
    if len(shapes) != 1:
        return None
    (channels, positions), = shapes
    if channels * positions != p.size:
        return None
    counts_of = [lambda lo, hi, w=g.weights: costs.channel_counts(w, ((lo, hi),))
                 for g in groups]
    return choose_order(channels, positions, counts_of, target)


def attention_units(op) -> tuple[AttentionUnit, ...]:
    """The units of an op (one unit, the whole op, if it has not been split)."""
    return op.units or (AttentionUnit(op.name, 0, op.num_heads, 0, op.n_tokens, 0,
                                      op.n_tokens, op.head_dim),)


MAX_PARTITION_ROUNDS = 12
OUT_AXON_HEADROOM = 0.02  # per round after the third, of max_out_axons_per_core


def partition_program(program: Program, target: HardwareTarget, *,
                      weight_sharing: bool | None = None,
                      work: dict[str, np.ndarray] | None = None,
                      max_work: float | None = None) -> Placement:
    """Place ``program`` on cores of ``target``; raises :class:`CapacityError` if it cannot.

    ``work`` (per population, per flat neuron) and ``max_work``: a further per-core limit,
    the sum of its neurons' work (a load balance, :mod:`~.balance`; a core with one neuron
    may exceed it).

    Output axons depend on where the targets land, so placement repeats with each neuron's
    out-degree (in cores) from the previous round as a constraint, until nothing changes.
    ``weight_sharing``: store shared (token-parallel, convolution) weights once per core
    (default: the target's ``weight_sharing``) or charge every expanded copy.
    """
    sharing = target.weight_sharing if weight_sharing is None else bool(weight_sharing)
    costs = SharedCosts()
    for p in program.populations:
        if (p.graded or p.multi_spike) and p.payload_bits > target.graded_spike_bits:
            raise CapacityError(f"{p.name}: graded payload bits ({p.payload_bits}) exceeds "
                                f"graded_spike_bits ({target.graded_spike_bits}) of target "
                                f"{target.name}; " + ("compile with --spikes single"
                                if p.multi_spike else "compile the low-rank factors fused "
                                "(--low-rank fused)") + " for this target")
    incoming: dict[str, list] = {p.name: [] for p in program.populations}
    for g in program.groups:
        if g.kind != "attention":  # realised inside the attention unit
            incoming[g.target].append(g)
    orders = {}
    if sharing:  # blocked orders for populations fed by shared weights only
        placed = {p.name for p in program.populations}
        for p in program.populations:
            order = _population_order(p, incoming[p.name], target, costs, placed)
            if order is not None:
                orders[p.name] = order

    def in_order(degrees):  # per population, out-degrees per order position
        return {k: v[costs.perm(orders[k])] if k in orders else v for k, v in degrees.items()}

    work_at = None if work is None else in_order(work)
    outdeg = {p.name: np.zeros(p.size, np.int64) for p in program.populations}
    chunked: dict[str, tuple] = {}  # chunks of the last outdeg and out-axon budget
    for round_ in range(MAX_PARTITION_ROUNDS):
        # later rounds keep headroom below the limit: chunk boundaries move between rounds,
        # and the out-degrees they cause with them (a few percent; converges in fewer rounds)
        max_out = int(target.max_out_axons_per_core *
                      max(0.5, 1.0 - OUT_AXON_HEADROOM * max(0, round_ - 2)))
        chunks = []
        at = in_order(outdeg)
        for p in program.populations:
            last = chunked.get(p.name)
            if last is None or last[1] != max_out or not np.array_equal(last[0], at[p.name]):
                last = (at[p.name], max_out,
                        _chunk_population(p, incoming[p.name], target, at[p.name], sharing,
                                          costs, orders.get(p.name), max_out,
                                          None if work_at is None else work_at[p.name],
                                          max_work))
                chunked[p.name] = last
            chunks.extend(last[2])
        cores = _pack(chunks, target, at, max_out, work_at, max_work)
        new = _out_degrees(program, cores, costs, orders)
        new_at = in_order(new)
        out_axons = [int(sum(new_at[c.population][c.start:c.stop].sum() for c in cs))
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
    units = [u for op in program.attention for u in attention_units(op)] if graded else []
    for u in units:
        if u.in_axons > target.max_in_axons_per_core or \
                u.out_axons > target.max_out_axons_per_core:
            raise CapacityError(f"{u.name}: attention unit axons (in {u.in_axons}, "
                                f"out {u.out_axons}) exceed max_in_axons_per_core "
                                f"({target.max_in_axons_per_core}) or max_out_axons_per_core "
                                f"({target.max_out_axons_per_core}); split the attention for "
                                "this target (compile splits it; see --attention-split)")
    att_cores = tuple(units)
    att_host = () if graded else tuple(op.name for op in program.attention)
    total = len(cores) + len(att_cores)
    if total > target.max_cores:  # names the chips needed and a larger system
        raise CapacityError(capacity_message(total, target))
    limits = {"max_neurons_per_core": target.max_neurons_per_core,
              "synapse_memory_bits_per_core": target.synapse_memory_bits_per_core,
              "max_in_axons_per_core": target.max_in_axons_per_core,
              "max_out_axons_per_core": target.max_out_axons_per_core,
              "max_neuron_groups_per_core": target.max_neuron_groups_per_core}
    return assign_chips(Placement(target.name, tuple(tuple(c) for c in cores), att_cores,
                                  att_host, tuple(out_axons), limits, orders=orders),
                        program, target)


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
            name = c["attention"]
            name = name if len(name) <= 44 else "..." + name[-41:]
            lines.append(f"{c['core']:>4}  {name:<44} {'-':>13} {'-':>9} {'-':>12} "
                         f"{pct(c['in_axons'], lim['max_in_axons_per_core'])} "
                         f"{pct(c['out_axons'], lim['max_out_axons_per_core'])}")
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
