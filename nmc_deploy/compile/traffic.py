"""Spike traffic of a placed program: messages, mesh hops and chip crossings (pure).

Counted from the program's synapse groups, the placement's cores, chips and tiles
(``placement.json``, :mod:`~nmc_deploy.compile.chips`) and the per-neuron events a
simulation recorded (:func:`sender_events`).

Messages: an event of a source neuron (a spike; a nonzero graded payload of a relay; a
nonzero partial count of an attention unit) is one message to each distinct core its synapses
reach - one per (neuron, destination core), the output axons of partition - plus, for the q,
k and v neurons an attention unit on a core reads (its heads at its queries, keys and
values), one message to that unit's core.

Route of a message from core a to core b (dimension-order routing on a mesh, hops = Manhattan
distance): ``|x_a - x_b|`` east-west and ``|y_a - y_b|`` north-south tile hops between the
two cores' tile positions on their chips' meshes, plus ``sum |p_a - p_b|`` chip hops between
the positions of their chips on the system's chip grid. Between chips the tile hops are
counted as if both tiles were on one chip: the path to and from the chip's edge links is not
modelled. Cores on the same tile exchange messages with zero hops.

Not counted: the host's input and constant sources, token selectors and attention ops on the
embedded x86 cores (their traffic goes through the chip's host interface), the host readout.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputFileError

from ..loihi.attention import attention_counts
from ..program import Program
from ..program.activity import CorePairs, SenderTraffic, Traffic
from ..program.placement import PlacementSummary
from ..program.shared import LI, RELAY
from ..program.shared_weights import ConvShared, TokenShared
from .partition import (EXACT_CONV_FANOUT_SYNAPSES, attention_units, csc_pairs,
                        token_shared_pairs)
from .shared_costs import SharedCosts

__all__ = ["sender_events", "core_messages", "count_traffic"]


def sender_events(program: Program, run) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per sender, its events per neuron summed over samples and steps, from a simulation.

    ``run`` is a :class:`~nmc_deploy.simulate.result.SimulationResult` of the fixed-point
    reference (``counts``: spikes; ``payloads``: relay payloads; ``spikes``: per-step spikes,
    needed for attention outputs). An attention unit's events are its nonzero partial counts
    (its heads and queries, its key block), over the op's output neurons. Returns
    ``(events, missing)``: senders whose events the run did not record are named in
    ``missing``.
    """
    events: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for p in program.populations:
        if p.kind == LI:
            continue
        if p.kind == RELAY:
            if p.name in run.payloads:
                events[p.name] = np.count_nonzero(run.payloads[p.name], axis=(0, 1))
            else:
                missing.append(f"relay {p.name} (payloads not recorded)")
        elif p.name in run.counts:
            events[p.name] = np.asarray(run.counts[p.name], np.int64).sum(axis=0)
    for op in program.attention:
        if not all(n in run.spikes for n in (op.q, op.k, op.v)):
            missing.append(f"attention {op.name} (spikes not recorded)")
            continue
        n = op.dim * op.n_tokens
        q, k, v = (np.asarray(run.spikes[name]).reshape(-1, n) for name in (op.q, op.k, op.v))
        token = np.arange(n) % op.n_tokens
        partial = {}
        for lo, hi in {(u.k_start, u.k_stop) for u in attention_units(op)}:
            keep = (token >= lo) & (token < hi)
            C, _ = attention_counts(q, k & keep, v & keep, op.num_heads, op.dim, op.n_tokens)
            partial[lo, hi] = np.count_nonzero(C, axis=0)
        for u in attention_units(op):
            mine = np.zeros(n, np.int64)
            out = u.outputs(op.dim, op.n_tokens)
            mine[out] = partial[u.k_start, u.k_stop][out]
            events[u.name] = mine
    return events, missing


def _core_map(program: Program, summary: PlacementSummary):
    """Core of every placed neuron (flat index) and of every order position, the core of
    every attention unit, and per core its tile (x, y) and chip; ``None`` if the summary
    lacks slices, chips or tiles."""
    if summary.system is None:
        return None
    core_at = {p.name: np.full(p.size, -1, np.int64) for p in program.populations}
    unit_core: dict[str, int] = {}
    n = len(summary.cores)
    tiles = np.zeros((n, 2), np.int64)
    chip = np.zeros(n, np.int64)
    for c in summary.cores:
        if c.chip is None or c.tile is None:
            return None
        tiles[c.core], chip[c.core] = c.tile, c.chip
        if c.attention is not None:
            unit_core[c.attention] = c.core
        for s in c.populations:
            if s.start is None or s.stop is None:
                return None
            core_at[s.name][s.start:s.stop] = c.core
    core_of = dict(core_at)
    for name, order in (summary.orders or {}).items():
        if name in core_at:
            if order.size != core_at[name].size:
                raise InputFileError(f"program_summary: orders.{name} covers {order.size} "
                                     f"neurons, the population has {core_at[name].size}; "
                                     "compile the program again")
            core_of[name] = np.empty_like(core_at[name])
            core_of[name][order.neurons()] = core_at[name]
    grid = {c.chip: c.position for c in summary.system.per_chip}
    position = np.array([grid[int(k)] for k in chip], np.int64).reshape(n, -1)
    return core_of, core_at, unit_core, tiles, chip, position


def _conv_channel_pairs(w: ConvShared, core_of_target: np.ndarray, n_cores: int) -> np.ndarray:
    """(source neuron, core) pairs of a large convolution at channel level: every position of
    an input channel reaches every core holding an output channel it feeds (an upper bound;
    looser than partition's out-degree of such convolutions, which also asks whether one of
    the core's output positions reads the input position)."""
    co, cig = w.kernel.shape[:2]
    cpo, hw = co // w.groups, w.in_shape[1] * w.in_shape[2]
    per = w.out_hw[0] * w.out_hw[1]
    any_tap = np.any(w.kernel != 0, axis=(2, 3))
    pairs = []
    for core in np.unique(core_of_target[core_of_target >= 0]):
        out_ch = np.unique(np.flatnonzero(core_of_target == core) // per)
        for g in np.unique(out_ch // cpo):
            rows = out_ch[out_ch // cpo == g]
            fed = g * cig + np.flatnonzero(any_tap[rows].any(axis=0))
            src = (fed[:, None] * hw + np.arange(hw)[None, :]).ravel()
            pairs.append(src * n_cores + core)
    return np.concatenate(pairs) if pairs else np.zeros(0, np.int64)


def _group_pairs(g, dest: np.ndarray, dest_at: np.ndarray, order, n_cores: int,
                 costs) -> np.ndarray:
    """Distinct (source neuron, destination core) pairs of one group, ``n * n_cores + c``
    (``dest``: core of each target neuron; ``dest_at``: of each position of the target's
    placement ``order``)."""
    w = g.weights
    if isinstance(w, ConvShared) and w.nnz > EXACT_CONV_FANOUT_SYNAPSES:
        return _conv_channel_pairs(w, dest, n_cores)
    if isinstance(w, TokenShared):
        return token_shared_pairs(w, dest_at, n_cores, costs, order)
    return csc_pairs(costs.csc(w), dest, n_cores, order is None)


def _destinations(program: Program, core_of, core_at, orders, unit_core,
                  n_cores: int) -> dict[str, np.ndarray]:
    """Per sender (population, or attention unit on a core): its distinct (source neuron,
    destination core) pairs, coded ``n * n_cores + c``."""
    costs = SharedCosts()
    pairs: dict[str, list[np.ndarray]] = {}
    op_pairs: dict[str, list[np.ndarray]] = {}
    for g in program.groups:
        if g.target not in core_of:
            continue
        if g.source in core_of:
            pairs.setdefault(g.source, []).append(_group_pairs(
                g, core_of[g.target], core_at[g.target], orders.get(g.target), n_cores, costs))
        elif g.kind == "attention":
            op_pairs.setdefault(g.source, []).append(_group_pairs(
                g, core_of[g.target], core_at[g.target], orders.get(g.target), n_cores, costs))
    for op in program.attention:
        for u in attention_units(op):
            if u.name not in unit_core:
                continue  # on the host
            core = unit_core[u.name]
            for name, lo, hi in ((op.q, u.q_start, u.q_stop), (op.k, u.k_start, u.k_stop),
                                 (op.v, u.k_start, u.k_stop)):  # inputs: one per neuron
                pairs.setdefault(name, []).append(u.reads(lo, hi, op.n_tokens) * n_cores + core)
            if op.name in op_pairs:  # outputs: its queries' neurons onwards
                codes = np.concatenate(op_pairs[op.name])
                mine = np.isin(codes // n_cores, u.outputs(op.dim, op.n_tokens))
                pairs[u.name] = [codes[mine]]
    return {s: np.unique(np.concatenate(p)) for s, p in pairs.items()}


def _sender_messages(program: Program, summary: PlacementSummary, cores,
                     events: dict[str, np.ndarray]):
    """Per sender with recorded events: ``(name, source core, destination core, events)``
    arrays over its distinct (source neuron, destination core) pairs."""
    core_of, core_at, unit_core, tiles, chip, position = cores
    n_cores = len(summary.cores)
    for name, codes in _destinations(program, core_of, core_at, summary.orders or {},
                                     unit_core, n_cores).items():
        if name not in events:
            continue
        neuron, dest = np.divmod(codes, n_cores)
        src = np.full(neuron.shape, unit_core[name]) if name in unit_core else core_of[name][neuron]
        yield name, src, dest, np.asarray(events[name])[neuron]


def core_messages(program: Program, summary: PlacementSummary,
                  events: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The core-to-core message matrix in coordinate form: ``(source core, destination
    core, messages)``, one entry per pair with messages, summed over senders. ``events``
    may be fractional (expected events per neuron, e.g. firing rates); a placement without
    chips or slices raises :class:`~nmc_deploy.errors.InputFileError`."""
    cores = _core_map(program, summary)
    if cores is None:
        raise InputFileError("program_summary: no chip assignment or neuron slices; "
                             "compile the program again")
    n_cores = len(summary.cores)
    parts = [(src * n_cores + dest, w.astype(np.float64))
             for _, src, dest, w in _sender_messages(program, summary, cores, events)]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    codes, inverse = np.unique(np.concatenate([c for c, _ in parts]), return_inverse=True)
    weight = np.bincount(inverse, weights=np.concatenate([w for _, w in parts]),
                         minlength=codes.size)
    keep = weight > 0
    src, dst = np.divmod(codes[keep], n_cores)
    return src, dst, weight[keep]


def count_traffic(program: Program, summary: PlacementSummary,
                  events: dict[str, np.ndarray], missing=()) -> Traffic | None:
    """Messages, tile hops (east-west, north-south), chip hops and messages between chips of
    every sender, summed over its events (the module's route model), and the core-to-core
    matrix (:class:`~nmc_deploy.program.activity.CorePairs`).

    ``events``: per sender (population or attention op) its events per neuron
    (:func:`sender_events`). Returns ``None`` when ``summary`` has no chip assignment or no
    neuron slices (a placement written before chips were assigned).
    """
    cores = _core_map(program, summary)
    if cores is None:
        return None
    tiles, chip, position = cores[3:]
    n_cores = len(summary.cores)
    att_target = {g.source: g.target for g in program.groups if g.kind == "attention"}
    targets = {u.name: att_target.get(op.name, u.name) for op in program.attention
               for u in attention_units(op)}
    senders, longest = [], np.zeros(3, np.int64)
    pair_parts: list[np.ndarray] = []
    for name, src, dest, weight in _sender_messages(program, summary, cores, events):
        weight = weight.astype(np.int64)
        hops = np.stack([np.abs(tiles[src, 0] - tiles[dest, 0]),
                         np.abs(tiles[src, 1] - tiles[dest, 1]),
                         np.abs(position[src] - position[dest]).sum(axis=1)])
        used = weight > 0
        if used.any():
            longest = np.maximum(longest, hops[:, used].max(axis=1))
            pair_parts.append(np.stack([src[used] * n_cores + dest[used], weight[used],
                                        (hops[0] + hops[1])[used] * weight[used],
                                        hops[2, used] * weight[used]]))
        senders.append(SenderTraffic(
            name=name, population=targets.get(name, name), messages=int(weight.sum()),
            messages_between_chips=int(weight[chip[src] != chip[dest]].sum()),
            tile_hops_ew=int(hops[0] @ weight), tile_hops_ns=int(hops[1] @ weight),
            chip_hops=int(hops[2] @ weight)))
    order = {n: i for i, n in enumerate([p.name for p in program.populations] + [
        u.name for op in program.attention for u in attention_units(op)])}
    senders.sort(key=lambda s: order.get(s.name, len(order)))
    not_counted = list(missing) + ["host input and constant sources, token selectors and "
                                   "attention ops on embedded x86 cores, the host readout"]
    return Traffic(tuple(senders), dict(zip(("tile_hops_ew", "tile_hops_ns", "chip_hops"),
                                            map(int, longest))), tuple(not_counted),
                   _core_pairs(pair_parts, n_cores))


def _core_pairs(parts: list[np.ndarray], n_cores: int) -> CorePairs:
    """Sum the (pair code, messages, tile hops, chip hops) columns of every sender per pair."""
    if not parts:
        return CorePairs((), (), (), (), ())
    cols = np.concatenate(parts, axis=1)
    codes, inverse = np.unique(cols[0], return_inverse=True)
    sums = [np.bincount(inverse, weights=c, minlength=codes.size).astype(np.int64)
            for c in cols[1:]]
    src, dst = np.divmod(codes, n_cores)
    return CorePairs(*(tuple(int(v) for v in a) for a in (src, dst, *sums)))
