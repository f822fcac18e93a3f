"""Latency per time step and per sample from simulated activity (stdlib only).

:func:`estimate_latency` prices the per-step averages of an
:class:`~nmc_deploy.program.activity.Activity` on the cores of a
:class:`~nmc_deploy.program.placement.PlacementSummary` with the timing of a
:class:`~nmc_deploy.targets.HardwareTarget` (every coefficient cited in the target file)::

    busy_c    = synops_c x time_per_synop_ns                                  (memory)
              + active_c x t_active + inactive_c x t_inactive                (compute)
              + sent_c x time_per_message_out_ns + received_c x time_per_message_in_ns
                                                                            (traffic)
    route     = longest route: E-W hops x t_ew + N-S hops x t_ns + chip hops x t_chip
    barrier   = b_tile + (b_chip - b_tile) x log2(n) / log2(N)     one chip, n of N tiles
              = b_chip + (b_sys - b_chip) x log2(c) / log2(c_sys)  c > 1 chips
    step_ns   = max over cores c of busy_c + route + barrier
    sample_us = (time_steps + pipeline_depth) x step_ns / 1000

``x_c`` is the per-step average over the recorded samples x steps of the work of core ``c``:
its share (``fraction``) of each population's neuron updates and of the synaptic operations
of the layers feeding it (spread evenly over the population's neurons), and the messages it sends and receives (``traffic.core_pairs``;
none without them). An attention op placed on attention-unit cores counts its attention
ops on those cores (split by each unit's ``ops_per_step``), not on its target population's
cores. The critical core is the one with the largest ``busy_c``; its bound is
the largest of memory (synaptic ops: synapse-memory reads), compute (neuron updates) and
traffic (its messages + route + barrier), the three terms of the max-affine Loihi 2 runtime
model of Timcheck et al. (arXiv 2601.10035). The barrier interpolation (log2 in tiles on one
chip, log2 in chips across chips) is nmc-deploy's, anchored on Davies et al. 2018 Table 2
(113-465 ns for 1-32 tiles) and Frady et al. NICE 2020 (16.2 us on 768 chips); docs
cost-model.md.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import InputFileError
from ..program.activity import Activity, LayerActivity
from ..program.placement import PlacementSummary
from ..targets import HardwareTarget

__all__ = ["TIMING_FIELDS", "BOUNDS", "estimate_latency", "barrier_ns", "chips_and_tiles"]

#: Target fields the latency uses (their sources go to ``report["sources"]["latency"]``).
TIMING_FIELDS = ("time_per_synop_ns", "time_per_neuron_update_active_ns",
                 "time_per_neuron_update_inactive_ns", "time_per_message_out_ns",
                 "time_per_message_in_ns", "barrier_ns", "barrier_chip_ns",
                 "barrier_system_ns", "barrier_system_chips")
ROUTE_FIELDS = ("time_per_tile_hop_ew_ns", "time_per_tile_hop_ns_ns", "time_per_chip_hop_ns")
#: Which critical-core terms make up each bound.
BOUNDS = {"memory": ("synops",), "compute": ("neuron_updates",),
          "traffic": ("messages", "route", "barrier")}


def barrier_ns(target: HardwareTarget, tiles: int, chips: int) -> float:
    """Barrier time of one step for a program on ``chips`` chips spanning ``tiles`` tiles
    (of the chip with the most): log2 interpolation between the target's anchors."""
    if chips > 1:
        ref = target.barrier_system_chips
        if ref <= 1:
            return target.barrier_system_ns
        return target.barrier_chip_ns + (target.barrier_system_ns - target.barrier_chip_ns) \
            * math.log2(chips) / math.log2(ref)
    n_tiles = target.tiles_x * target.tiles_y
    if tiles <= 1 or n_tiles <= 1:
        return target.barrier_ns
    return target.barrier_ns + (target.barrier_chip_ns - target.barrier_ns) \
        * math.log2(min(tiles, n_tiles)) / math.log2(n_tiles)


def chips_and_tiles(placement: PlacementSummary, target: HardwareTarget) -> tuple[int, int, str]:
    """(chips used, most tiles used on one chip, how they were found)."""
    cores = placement.cores
    if cores and all(c.tile is not None for c in cores):
        per_chip: dict[int, set] = {}
        for c in cores:
            per_chip.setdefault(c.chip or 0, set()).add(tuple(c.tile))
        chips = placement.system.chips_used if placement.system is not None else len(per_chip)
        return chips, max(len(t) for t in per_chip.values()), "placed tiles"
    chips = (placement.system.chips_used if placement.system is not None
             else max(1, math.ceil(placement.cores_used / target.cores_per_chip)))
    per_chip_cores = math.ceil(placement.cores_used / chips) if chips else 0
    return chips, max(1, math.ceil(per_chip_cores / target.cores_per_tile)), \
        "no tiles recorded: cores assumed packed tile by tile"


def estimate_latency(activity: Activity, placement: PlacementSummary,
                     feeders: dict[str, list[LayerActivity]], target: HardwareTarget,
                     assumptions: list[str]) -> dict:
    """The ``report["latency"]`` record (``model`` and ``pop_busy_ns`` are popped by the
    caller); appends its assumptions to ``assumptions``."""
    steps, depth = activity.time_steps, activity.pipeline_depth or 0
    recorded = activity.samples * steps
    unit_ops, on_units = _attention_on_units(placement, feeders, recorded)
    per_step = {p.name: (sum(ly.synops for ly in feeders[p.name] if ly.name not in on_units)
                         / recorded, p.active_updates / recorded,
                         (p.neuron_updates - p.active_updates) / recorded)
                for p in activity.populations}
    sent, received = _messages_per_step(activity, recorded)
    rows, pop_busy = _core_rows(placement, per_step, sent, received, target, assumptions,
                                unit_ops)
    critical = max(rows, key=lambda r: r["busy_ns_per_step"], default=None)
    route, route_ns = _route(activity, target)
    chips, tiles, how = chips_and_tiles(placement, target)
    barrier = barrier_ns(target, tiles, chips)
    terms = {k: (critical["terms_ns"][k] if critical else 0.0)
             for k in ("synops", "neuron_updates", "messages")}
    terms.update(route=route_ns, barrier=barrier)
    bounds = {b: sum(terms[t] for t in ts) for b, ts in BOUNDS.items()}
    bound = max(bounds, key=lambda b: bounds[b])
    step_ns = sum(terms.values())
    steps_per_sample = steps + depth
    _state(activity, target, chips, tiles, how, barrier, assumptions)
    model = (f"estimated: per time step = max over cores of (synops x "
             f"{target.time_per_synop_ns:g} ns + active / inactive neuron updates x "
             f"{target.time_per_neuron_update_active_ns:g} / "
             f"{target.time_per_neuron_update_inactive_ns:g} ns + messages sent / received x "
             f"{target.time_per_message_out_ns:g} / {target.time_per_message_in_ns:g} ns) + "
             f"longest route ({route_ns:.6g} ns) + barrier ({barrier:.6g} ns: {tiles} tile(s), "
             f"{chips} chip(s)); per sample = (T {steps} + pipeline depth {depth}) steps")
    out: dict[str, Any] = {
        "per_sample_us": steps_per_sample * step_ns / 1000.0, "per_step_ns": step_ns,
        "steps_per_sample": steps_per_sample, "barrier_ns": barrier,
        "barrier": {"tiles": tiles, "chips": chips, "tiles_from": how},
        "route_ns_per_step": route_ns,
        "critical_core": critical["core"] if critical else None, "bound": bound,
        "critical_terms_ns": terms, "bounds_ns": bounds, "cores": rows,
        "model": model, "pop_busy_ns": pop_busy}
    if route is not None:
        out["longest_route"] = route
    return out


def _attention_on_units(placement: PlacementSummary, feeders: dict, recorded: int
                        ) -> tuple[dict[int, float], set[str]]:
    """Attention ops per step of every attention-unit core (an op's ops split over its
    units by their ``ops_per_step``), and the attention layers so charged (they run on the
    units, not on their target population's neuro cores)."""
    units: dict[str, list] = {}
    for c in placement.cores:
        if c.kind == "attention" and c.attention:
            units.setdefault(c.attention.split("[")[0], []).append(c)
    ops: dict[int, float] = {}
    charged: set[str] = set()
    for layers in feeders.values():
        for ly in layers:
            cores = units.get(ly.name) if ly.kind == "attention" else None
            if not cores:
                continue
            weight = [float(c.ops_per_step or 0) for c in cores]
            total = sum(weight)
            for c, w in zip(cores, weight):
                share = w / total if total else 1.0 / len(cores)
                ops[c.core] = ops.get(c.core, 0.0) + ly.synops / recorded * share
            charged.add(ly.name)
    return ops, charged


def _messages_per_step(activity: Activity, recorded: int) -> tuple[dict, dict]:
    """Per core id the messages it sends and receives per step (empty without core_pairs)."""
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    pairs = activity.traffic.core_pairs if activity.traffic is not None else None
    if pairs is not None:
        for s, d, m in zip(pairs.source, pairs.destination, pairs.messages):
            sent[s] = sent.get(s, 0.0) + m / recorded
            received[d] = received.get(d, 0.0) + m / recorded
    return sent, received


def _core_rows(placement: PlacementSummary, per_step: dict, sent: dict, received: dict,
               target: HardwareTarget, assumptions: list[str],
               unit_ops: dict[int, float] | None = None) -> tuple[list, dict]:
    """One row per core with its per-step work and terms (an attention unit's core: its
    share of the op's attention ops, ``unit_ops``, as synaptic ops); per population its busy
    ns (synops + neuron updates, summed over its cores: the key of the static-energy split)."""
    t_syn, t_act = target.time_per_synop_ns, target.time_per_neuron_update_active_ns
    t_ina = target.time_per_neuron_update_inactive_ns
    placed: dict[str, float] = {}
    pop_busy: dict[str, float] = {}
    rows = []
    for core in placement.cores:
        synops = (unit_ops or {}).get(core.core, 0.0)
        active = inactive = 0.0
        for entry in core.populations:
            if entry.name not in per_step:
                raise InputFileError(
                    f"program_summary: core {core.core} holds population '{entry.name}', which "
                    f"has no recorded activity; simulate the same compiled program")
            placed[entry.name] = placed.get(entry.name, 0.0) + entry.fraction
            s, a, i = (entry.fraction * x for x in per_step[entry.name])
            synops, active, inactive = synops + s, active + a, inactive + i
            pop_busy[entry.name] = pop_busy.get(entry.name, 0.0) + s * t_syn + a * t_act \
                + i * t_ina
        out_, in_ = sent.get(core.core, 0.0), received.get(core.core, 0.0)
        terms = {"synops": synops * t_syn, "neuron_updates": active * t_act + inactive * t_ina,
                 "messages": out_ * target.time_per_message_out_ns
                 + in_ * target.time_per_message_in_ns}
        rows.append({"core": core.core, "synops_per_step": synops,
                     "active_updates_per_step": active, "inactive_updates_per_step": inactive,
                     "messages_sent_per_step": out_, "messages_received_per_step": in_,
                     "terms_ns": terms, "busy_ns_per_step": sum(terms.values())})
    for name in per_step:
        if name not in placed:
            assumptions.append(f"Population '{name}' has recorded activity but is on no core "
                               f"(host-fed); it counts for energy but not for core time.")
        elif abs(placed[name] - 1.0) > 1e-6:
            assumptions.append(f"Population '{name}': its core fractions sum to "
                               f"{placed[name]:.6g}, not 1.")
    return rows, pop_busy


def _route(activity: Activity, target: HardwareTarget) -> tuple[dict | None, float]:
    """(longest route, its ns per step); (None, 0) without traffic."""
    if activity.traffic is None:
        return None, 0.0
    route = dict(activity.traffic.longest_route)
    return route, (route["tile_hops_ew"] * target.time_per_tile_hop_ew_ns
                   + route["tile_hops_ns"] * target.time_per_tile_hop_ns_ns
                   + route["chip_hops"] * target.time_per_chip_hop_ns)


def _state(activity: Activity, target: HardwareTarget, chips: int, tiles: int, how: str,
           barrier: float, assumptions: list[str]) -> None:
    traffic = activity.traffic
    if traffic is None:
        messages = ("message send/receive work is 0 and spike routing time is not modelled "
                    "(no traffic counted)")
    elif traffic.core_pairs is None:
        messages = ("message send/receive work is 0: the activity file has no "
                    "traffic.core_pairs (an older file); the longest route is priced")
    else:
        messages = ("each core pays time_per_message_out_ns per message it sends and "
                    "time_per_message_in_ns per message it receives (traffic.core_pairs, "
                    "messages to itself included); the longest route's hops add once per step "
                    "(messages pipelined, no congestion)")
    assumptions.append(
        "Latency: cores work in parallel, a core's synaptic, neuron-update and message work "
        f"add up, and all cores synchronise once per time step; {messages}. Barrier "
        f"{barrier:.6g} ns for {chips} chip(s) and {tiles} tile(s) ({how}): log2 interpolation "
        f"between {target.barrier_ns:g} ns (1 tile), {target.barrier_chip_ns:g} ns (a whole "
        f"chip) and {target.barrier_system_ns:g} ns ({target.barrier_system_chips} chips). The "
        "per-step average activity also applies to the pipeline-fill steps; host I/O is not "
        "modelled.")
    fields = TIMING_FIELDS + (ROUTE_FIELDS if traffic is not None else ())
    if any(target.source_of(f).basis == "assumption" for f in fields):
        assumptions.append(f"Latency coefficients of '{target.name}' are taken from another "
                           f"chip or derived (basis 'assumption'); see the latency sources.")
