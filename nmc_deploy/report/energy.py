"""Energy and latency estimates from simulated activity (numpy-free, stdlib only).

:func:`estimate_costs` combines three inputs:

* an :class:`~nmc_deploy.program.activity.Activity` - operation counts from a simulation
  (measured in simulation, not on a chip): synaptic operations per layer, spikes and neuron
  updates per population;
* a :class:`~nmc_deploy.program.placement.PlacementSummary` - where the compiler placed each
  population (cores, fractions);
* a :class:`~nmc_deploy.targets.HardwareTarget` - energy models and timing, each with a source.

It returns a JSON-able report dict. Counts are labelled ``"measured (simulated activity)"``,
energies and latency ``"estimated (model)"``; every coefficient used is cited under
``report["sources"]``.

Energy models (``formula`` of an :class:`~nmc_deploy.targets.EnergyModel`)::

    mac_ac     E = e_mac_pj * encoding MACs + e_ac_pj * (all other synaptic ops, attention incl.)
    per_event  E = e_synop_pj * (all synaptic ops, encoding and attention incl.)
                 + e_neuron_update_active_pj * active updates
                 + e_neuron_update_inactive_pj * (neuron updates - active updates)
                 + e_spike_within_tile_pj * spikes
                 [+ e_tile_hop_ew_pj * east-west tile hops + e_tile_hop_ns_pj * north-south
                    tile hops + e_chip_hop_pj * chip hops]      (when the model has them)
                 + static_power_mw_per_chip * chips powered * latency per sample

Mesh traffic (``activity.traffic``, :mod:`nmc_deploy.compile.traffic`): the simulated spikes
routed on the compiled placement's chips and tiles. A sender's hops are priced into the
population that carries them (the sender; an attention unit's target population), as its
spikes are; without traffic (an older build) no hop is priced and the report says so.

Static energy (``report["static"]``): every chip the placement uses is powered for the
estimated latency of a sample (:mod:`.latency`); per_event models only (the mac_ac
convention counts compute alone). It is split over the populations in proportion to the
core time their synaptic ops and neuron updates take (:func:`.latency.estimate_latency`);
without any core time, equally over the populations.

Per-layer attribution: a layer carries the energy of its own synaptic operations plus a share of
its destination population's neuron-update, spike, hop and static energy; layers feeding the
same population split that energy in proportion to their synaptic operations (equally if all
have none). A population no layer feeds (e.g. a host-fed input) gets its own row of kind
``"population"``. The rows therefore add up to the total.

Latency: :mod:`nmc_deploy.report.latency` (busiest core's synaptic, neuron-update and message
work + longest route + a barrier growing with tiles and chips; the critical core's bound).

Relay populations (low-rank factors in relay form; activity entries with ``kind`` "relay")
are priced like neurons: a nonzero graded payload counts as one spike (one message), a
payload event costs one synaptic op per nonzero weight it reaches (as a binary spike does;
the multiplication by the payload is assumed free), and each relay neuron costs one neuron
update per step (active when its input is nonzero). Intel publishes no separate graded-spike
figures, so this is an assumption and the report says so.
"""
from __future__ import annotations

from typing import Any

from ..errors import InputFileError
from ..program.activity import (LAYER_KINDS, TRAFFIC_COUNTS, Activity, LayerActivity,
                                PopulationActivity)
from ..program.placement import PlacementSummary
from ..targets import HardwareTarget
from .latency import ROUTE_FIELDS, TIMING_FIELDS, estimate_latency
from .op_counts import op_counts_section

__all__ = ["REPORT_VERSION", "LAYER_KINDS", "MEASURED", "ESTIMATED", "COMPILED", "TRAFFIC",
           "estimate_costs"]

REPORT_VERSION = 1
MEASURED = "measured (simulated activity)"
ESTIMATED = "estimated (model)"
COMPILED = "compiled program"

# traffic count -> (the per_event coefficient that prices it, its breakdown term)
_HOP_PRICES = {"tile_hops_ew": "e_tile_hop_ew_pj", "tile_hops_ns": "e_tile_hop_ns_pj",
               "chip_hops": "e_chip_hop_pj"}
_HOP_TERMS = {"tile_hops_ew": "tile_hops", "tile_hops_ns": "tile_hops", "chip_hops": "chip_hops"}
TRAFFIC = "counted (simulated spikes routed on the compiled placement; hops: mesh model)"


def estimate_costs(activity: Activity | dict, program_summary: PlacementSummary | dict,
                   target: HardwareTarget, neurobench: dict | None = None) -> dict:
    """Estimate energy per sample (every energy model of the target) and latency per sample.

    Parameters
    ----------
    activity
        The simulated activity (:class:`~nmc_deploy.program.activity.Activity`; a dict in the
        layout of ``activity_<backend>.json`` is read with ``Activity.from_json``). Counts are
        totals over all samples and steps; a layer's ``kind`` is one of :data:`LAYER_KINDS`.
        A missing ``pipeline_depth`` is taken as 0 (and said so in the assumptions).
    program_summary
        Where the program sits (:class:`~nmc_deploy.program.placement.PlacementSummary`; a
        dict in the layout of ``placement.json`` is read with ``PlacementSummary.from_json``):
        per core the populations on it with ``fraction``, the share of the population's
        neurons on that core.
    target
        The hardware target; must be the one the program was compiled for.
    neurobench
        NeuroBench-compatible counts of the float model
        (:func:`nmc_deploy.models.op_counts.count_neurobench_ops`), or None: the report's
        ``op_counts`` section names both counts either way (:mod:`.op_counts`).

    Returns
    -------
    dict
        JSON-able: ``target``, ``backend``, ``samples``, ``time_steps``, ``pipeline_depth``,
        ``cores_used``, ``per_sample`` (counts), ``layers``, ``populations``,
        ``energy_per_sample_uj``, ``energy_breakdown_pj_per_sample``, ``energy_models``,
        ``latency_per_sample_us``, ``latency``, ``latency_model``, ``assumptions``, ``sources``,
        ``labels`` (which figures are measured and which estimated), ``op_counts``
        (the NeuroBench-compatible and the hardware-event count, each labelled).

    Raises
    ------
    InputFileError
        A malformed input dict, a program population without recorded activity, or a program
        compiled for another target.
    """
    if not isinstance(activity, Activity):
        activity = Activity.from_json(activity, "activity")
    if not isinstance(program_summary, PlacementSummary):
        program_summary = PlacementSummary.from_json(program_summary, "program_summary")
    if program_summary.target != target.name:
        raise InputFileError(f"program_summary: compiled for target '{program_summary.target}', "
                             f"but costs are estimated for '{target.name}'; use the same target "
                             "for both")
    assumptions: list[str] = []
    if activity.pipeline_depth is None:
        assumptions.append("activity: pipeline_depth not recorded; taken as 0.")
    samples = activity.samples
    per_sample, total_synops = _count_per_sample(activity)
    feeders: dict[str, list[LayerActivity]] = {p.name: [] for p in activity.populations}
    for layer in activity.layers:
        feeders[layer.population].append(layer)
    latency = estimate_latency(activity, program_summary, feeders, target, assumptions)
    latency_model = latency.pop("model")
    static, static_pj = _static(activity, latency, target, assumptions)
    rows = _energy_rows(activity, feeders, target, per_sample, static_pj, assumptions)
    token = _token_selection(activity, total_synops, target, assumptions)
    if token is not None:
        for name, pj in token["energy_pj_per_sample"].items():
            rows["energy_per_sample_uj"][name] += pj * 1e-6
            rows["energy_breakdown_pj_per_sample"][name]["token_selectors"] = pj
    timing = TIMING_FIELDS + (ROUTE_FIELDS if activity.traffic is not None else ())
    rows["sources"]["latency"] = [
        f"{f} = {getattr(target, f):g}{'' if f.endswith('chips') else ' ns'}: "
        f"{target.source_of(f)}" for f in timing]
    rows["sources"]["static"] = [f"static_power_mw_per_chip = "
                                 f"{target.static_power_mw_per_chip:g} mW: "
                                 f"{target.source_of('static_power_mw_per_chip')}"]
    extra = {} if token is None else {"token_selection": token}
    extra.update(_system(program_summary, activity, target, assumptions))
    relays = [p.name for p in activity.populations if p.graded]
    if relays:
        assumptions.append(
            f"{len(relays)} graded relay population(s) (low-rank factors as two synaptic "
            "stages, or residual streams summed once): a nonzero payload counts as one spike "
            "message, each nonzero weight it reaches as one synaptic op (as for a binary "
            "spike), each relay neuron as one neuron update per step; Intel publishes no "
            "separate graded-spike costs.")
    assumptions[:0] = [
        f"Synaptic operations, spikes and neuron updates were counted by the "
        f"'{activity.backend}' simulator over {samples} samples x {activity.time_steps} time "
        f"steps: measured in simulation, not on hardware.",
        "Per-layer energy = the layer's synaptic operations plus a share of its destination "
        "population's neuron-update, spike, hop and static energy, split among the layers "
        "feeding that "
        "population in proportion to their synaptic operations; a population fed by no layer "
        "has its own row (kind 'population').",
    ]
    return {
        **extra,
        "report_version": REPORT_VERSION,
        "target": target.name,
        "target_description": target.description,
        "backend": activity.backend,
        "samples": samples,
        "time_steps": activity.time_steps,
        "pipeline_depth": activity.pipeline_depth or 0,
        "cores_used": program_summary.cores_used,
        "per_sample": per_sample,
        "layers": rows["layers"],
        "populations": rows["populations"],
        "energy_per_sample_uj": rows["energy_per_sample_uj"],
        "energy_breakdown_pj_per_sample": rows["energy_breakdown_pj_per_sample"],
        "energy_models": rows["energy_models"],
        "latency_per_sample_us": latency["per_sample_us"],
        "latency": latency,
        "latency_model": latency_model,
        "static": static,
        "energy_terms": rows["energy_terms"],
        "assumptions": assumptions,
        "sources": rows["sources"],
        "labels": dict(_LABELS),
        "op_counts": op_counts_section(activity, neurobench),
    }


_LABELS = {
    "per_sample": MEASURED,
    "layers.synops_per_sample": MEASURED,
    "populations": MEASURED,
    "cores_used": COMPILED,
    "chips_used": COMPILED,
    "system": COMPILED,
    "traffic": TRAFFIC,
    "layers.energy_pj_per_sample": ESTIMATED,
    "populations.energy_pj_per_sample": ESTIMATED,
    "energy_per_sample_uj": ESTIMATED,
    "energy_breakdown_pj_per_sample": ESTIMATED,
    "latency_per_sample_us": ESTIMATED,
    "latency": ESTIMATED,
    "static": ESTIMATED,
    "energy_terms": "per model and term: the basis of its coefficients",
    "op_counts": "two named counts: op_counts.<count>.label",
}


# ---------------------------------------------------------------------------------------------
# measured counts and energy
# ---------------------------------------------------------------------------------------------

def _count_per_sample(activity: Activity) -> tuple[dict[str, float], int]:
    """Per-sample counts (synops by kind, spikes, updates) and the total synaptic ops."""
    samples, layers, pops = activity.samples, activity.layers, activity.populations
    synops_by_kind = {kind: sum(ly.synops for ly in layers if ly.kind == kind)
                      for kind in LAYER_KINDS}
    total_synops = sum(synops_by_kind.values())
    per_sample = {
        "synops": total_synops / samples,
        "macs_encoding": synops_by_kind["encoding"] / samples,
        "acs": (synops_by_kind["synapses"] + synops_by_kind["attention"]
                + synops_by_kind["tokens"]) / samples,
        "attention_ops": synops_by_kind["attention"] / samples,
        "spikes": sum(p.spikes for p in pops) / samples,
        "neuron_updates": sum(p.neuron_updates for p in pops) / samples,
        "active_updates": sum(p.active_updates for p in pops) / samples,
    }
    return per_sample, total_synops


def _energy_rows(activity: Activity, feeders: dict[str, list[LayerActivity]],
                 target: HardwareTarget, per_sample: dict, static_pj: dict[str, float],
                 assumptions: list[str]) -> dict:
    """Layer and population rows priced by every energy model, with the totals per model;
    ``static_pj``: per population its static energy (all samples; per_event models)."""
    samples, layers, pops = activity.samples, activity.layers, activity.populations
    layer_rows = [{"name": ly.name, "kind": ly.kind, "population": ly.population,
                   "synapses": ly.synapses, "synops_per_sample": ly.synops / samples,
                   "energy_pj_per_sample": {}} for ly in layers]
    orphan_rows = [{"name": p.name, "kind": "population", "population": p.name,
                    "synapses": 0, "synops_per_sample": 0.0, "energy_pj_per_sample": {}}
                   for p in pops if not feeders[p.name]]
    pop_rows = [{"name": p.name, "neurons": p.neurons,
                 "spikes_per_sample": p.spikes / samples,
                 "neuron_updates_per_sample": p.neuron_updates / samples,
                 "active_updates_per_sample": p.active_updates / samples,
                 "firing_rate": (p.spikes / p.neuron_updates) if p.neuron_updates else 0.0,
                 "energy_pj_per_sample": {}} for p in pops]
    energy_uj: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = {}
    models_out: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    hops = _hops_by_population(activity)
    terms: dict[str, dict] = {}
    for model in target.energy_models.values():
        synop_pj = [_synop_energy_pj(model, ly) for ly in layers]
        pop_pj = {p.name: _population_energy_pj(model, p, hops.get(p.name),
                                                static_pj.get(p.name, 0.0)) for p in pops}
        for row, layer, e_syn in zip(layer_rows, layers, synop_pj):
            group = feeders[layer.population]
            group_synops = sum(g.synops for g in group)
            share = layer.synops / group_synops if group_synops else 1.0 / len(group)
            e_pop = sum(pop_pj[layer.population].values()) * share
            row["energy_pj_per_sample"][model.name] = (e_syn + e_pop) / samples
        for row in orphan_rows + pop_rows:
            row["energy_pj_per_sample"][model.name] = sum(pop_pj[row["name"]].values()) / samples
        parts = {"synops": sum(synop_pj), **{
            k: sum(v[k] for v in pop_pj.values()) for k in ("neuron_updates", "spikes")}}
        if activity.traffic is not None:
            parts.update({k: sum(v[k] for v in pop_pj.values())
                          for k in ("tile_hops", "chip_hops")})
        parts["static"] = sum(v["static"] for v in pop_pj.values())
        terms[model.name] = _term_labels(model, target, list(parts))
        breakdown[model.name] = {k: v / samples for k, v in parts.items()}
        energy_uj[model.name] = sum(parts.values()) / samples * 1e-6
        models_out[model.name] = {"formula": model.formula, "description": model.description,
                                  "coefficients_pj": dict(model.coefficients_pj)}
        sources[model.name] = model.citations()
        assumptions.append(_model_assumption(model, per_sample, activity.traffic is not None))
    return {"layers": layer_rows + orphan_rows, "populations": pop_rows,
            "energy_per_sample_uj": energy_uj, "energy_breakdown_pj_per_sample": breakdown,
            "energy_models": models_out, "sources": sources, "energy_terms": terms}


# the coefficients behind each breakdown term of a per_event model
_TERM_COEFFICIENTS = {
    "synops": ("e_synop_pj",),
    "neuron_updates": ("e_neuron_update_active_pj", "e_neuron_update_inactive_pj"),
    "spikes": ("e_spike_within_tile_pj",), "tile_hops": ("e_tile_hop_ew_pj", "e_tile_hop_ns_pj"),
    "chip_hops": ("e_chip_hop_pj",)}


def _term_labels(model, target: HardwareTarget, terms: list[str]) -> dict[str, dict]:
    """Per breakdown term: how it is known (``label``), its coefficients and their bases."""
    out = {}
    for term in terms:
        if model.formula == "mac_ac":
            coefs = {"synops": ("e_mac_pj", "e_ac_pj")}.get(term, ())
            bases = sorted({model.sources[c].basis for c in coefs})
        elif term == "static":
            coefs = ("static_power_mw_per_chip",)
            bases = [target.source_of(coefs[0]).basis]
        else:
            coefs = tuple(c for c in _TERM_COEFFICIENTS[term] if c in model.coefficients_pj)
            bases = sorted({model.sources[c].basis for c in coefs})
        label = ("not priced (0)" if not coefs else
                 "assumption (coefficient from another chip or derived)"
                 if "assumption" in bases else "estimated (model; cited coefficients)")
        out[term] = {"label": label, "coefficients": list(coefs), "basis": bases}
    return out


def _static(activity: Activity, latency: dict, target: HardwareTarget,
            assumptions: list[str]) -> tuple[dict, dict[str, float]]:
    """``report["static"]`` and per population its static energy (all samples), split in
    proportion to its core time (synops + neuron updates), equally without any."""
    chips = latency["barrier"]["chips"]
    power = target.static_power_mw_per_chip
    per_sample_pj = power * chips * latency["per_sample_us"] * 1e3  # mW x us = nJ
    busy = latency.pop("pop_busy_ns")
    names = [p.name for p in activity.populations]
    total = sum(busy.get(n, 0.0) for n in names)
    share = {n: (busy.get(n, 0.0) / total if total else 1.0 / len(names)) for n in names}
    source = target.source_of("static_power_mw_per_chip")
    assumptions.append(
        f"Static energy: {chips} chip(s) powered (the chips the placement uses; idle chips of "
        f"a board are not charged, as lava-dl's Loihi 2 benchmarks compensate for them) at "
        f"{power:g} mW each ({source.basis}) for the estimated latency per sample "
        f"({latency['per_sample_us']:.6g} us); per_event models only. Per layer it is split "
        "in proportion to the core time of each population's synaptic ops and neuron "
        "updates" + ("" if total else " (no core time: equally)") + ".")
    record = {"power_mw_per_chip": power, "chips_powered": chips,
              "runtime_us_per_sample": latency["per_sample_us"],
              "energy_pj_per_sample": per_sample_pj, "basis": source.basis,
              "source": str(source),
              "split": "per population in proportion to its synops + neuron-update core time"}
    return record, {n: per_sample_pj * activity.samples * share[n] for n in names}


def _token_selection(activity: Activity, total_synops: int, target: HardwareTarget,
                     assumptions: list[str]) -> dict | None:
    """Work of the token selectors and the synaptic ops they save (None: no selectors).

    Selector MACs run on an embedded core: priced with the target's 45 nm MAC energy
    (``e_mac_pj`` of its ``mac_ac`` model) in every energy model, an estimate.
    """
    if not activity.token_selectors:
        return None
    samples = activity.samples
    rows = [{"name": sel.name,
             "evaluated_tokens_per_sample": sel.evaluated_tokens / samples,
             "kept_tokens_per_sample": sel.kept_tokens / samples,
             "predictor_macs_per_sample": sel.predictor_macs / samples,
             "lut_lookups_per_sample": sel.lut_lookups / samples}
            for sel in activity.token_selectors]
    macs = sum(r["predictor_macs_per_sample"] for r in rows)
    mac_pj = next((m.coefficient_pj("e_mac_pj") for m in target.energy_models.values()
                   if m.formula == "mac_ac"), None)
    energy = {m: (macs * mac_pj if mac_pj is not None else 0.0)
              for m in target.energy_models}
    assumptions.append(
        "Token selectors run on an embedded core: their multiply-accumulates "
        f"({macs:.6g} per sample) are priced at e_mac_pj = {mac_pj} pJ (45 nm MAC) in every "
        "energy model (no Loihi figure for embedded-core arithmetic); the table lookups, the "
        "sort and the one-sample buffer are not priced. Each selector adds T - 1 time steps "
        "of latency (it decides after a sample's last step)." if mac_pj is not None else
        "Token selectors: no 'mac_ac' energy model on this target, so their work is not priced.")
    out = {"selectors": rows, "predictor_macs_per_sample": macs,
           "energy_pj_per_sample": energy}
    if activity.synops_without_token_selection is not None:
        without = activity.synops_without_token_selection / samples
        with_ = total_synops / samples
        out.update({"synops_without_selection_per_sample": without,
                    "synops_saved_per_sample": without - with_,
                    "synops_saved_fraction": (without - with_) / without if without else 0.0})
    return out


def _synop_energy_pj(model, layer: LayerActivity) -> float:
    """Energy of one layer's synaptic operations (all samples)."""
    if model.formula == "mac_ac":
        key = "e_mac_pj" if layer.kind == "encoding" else "e_ac_pj"
        return model.coefficient_pj(key) * layer.synops
    return model.coefficient_pj("e_synop_pj") * layer.synops


def _hops_by_population(activity: Activity) -> dict[str, dict[str, int]]:
    """Per population, the hops of the messages it carries (empty without traffic)."""
    out: dict[str, dict[str, int]] = {}
    for sender in activity.traffic.senders if activity.traffic is not None else ():
        row = out.setdefault(sender.population, dict.fromkeys(_HOP_PRICES, 0))
        for key in _HOP_PRICES:
            row[key] += getattr(sender, key)
    return out


def _population_energy_pj(model, pop: PopulationActivity, hops: dict[str, int] | None = None,
                          static_pj: float = 0.0) -> dict[str, float]:
    """Neuron-update, spike, (with ``hops``: its messages' counts) tile- and chip-hop and static
    energy of one population (all samples); a hop kind the model has no coefficient for costs
    nothing; a mac_ac model prices none of these."""
    if model.formula == "mac_ac":
        return dict.fromkeys(("neuron_updates", "spikes", "tile_hops", "chip_hops", "static"), 0.0)
    inactive = pop.neuron_updates - pop.active_updates
    updates = (model.coefficient_pj("e_neuron_update_active_pj") * pop.active_updates
               + model.coefficient_pj("e_neuron_update_inactive_pj") * inactive)
    out = {"neuron_updates": updates,
           "spikes": model.coefficient_pj("e_spike_within_tile_pj") * pop.spikes,
           "tile_hops": 0.0, "chip_hops": 0.0, "static": static_pj}
    for key, price in _HOP_PRICES.items():
        out[_HOP_TERMS[key]] += model.coefficients_pj.get(price, 0.0) * (hops or {}).get(key, 0)
    return out


def _model_assumption(model, per_sample: dict, traffic: bool) -> str:
    bases = {model.sources[k].basis for k in model.used_coefficients}
    if model.formula == "mac_ac":
        text = (f"{model.name}: Spikformer convention - the encoding layer's "
                f"{per_sample['macs_encoding']:.6g} MACs/sample cost e_mac_pj, every other "
                f"synaptic op ({per_sample['acs']:.6g}/sample, of which "
                f"{per_sample['attention_ops']:.6g} attention ops) costs e_ac_pj; neuron updates, "
                f"spikes, memory access, routing and static power cost nothing.")
    else:
        priced = [p for p in _HOP_PRICES.values() if p in model.coefficients_pj]
        hops = ("each message's tile hops cost " + ", ".join(priced) + " (estimated: hop "
                "counts follow the mesh model; chip hops "
                + ("priced" if "e_chip_hop_pj" in priced else "counted, not priced: no "
                   "published figure") + ")") if traffic and priced else \
            "no mesh hops priced" + ("" if traffic else " (no traffic counted)")
        text = (f"{model.name}: every synaptic op (encoding and attention included) costs "
                f"e_synop_pj; a neuron update costs e_neuron_update_active_pj when the neuron "
                f"received input or had nonzero voltage, else e_neuron_update_inactive_pj; every "
                f"spike costs one within-tile message; {hops}; plus static power x runtime.")
    if "assumption" in bases:
        assumed = [k for k in model.used_coefficients if model.sources[k].basis == "assumption"]
        text += f" Coefficients taken from another chip (basis 'assumption'): {', '.join(assumed)}."
    return text


def _system(placement: PlacementSummary, activity: Activity, target: HardwareTarget,
            assumptions: list[str]) -> dict:
    """Chips used and what binds each (compiled), and the traffic per sample and per step
    (counted); empty for a placement without chips."""
    out: dict[str, Any] = {}
    if placement.system is not None:
        out["chips_used"] = placement.system.chips_used
        out["system"] = placement.system.to_json()
    if placement.weight_sharing is not None:  # both storage answers (compiled)
        out["weight_sharing"] = placement.weight_sharing.to_json()
    if placement.residual is not None:  # both residual forms (compiled)
        out["residual"] = placement.residual.to_json()
    units = [c for c in placement.cores if c.kind == "attention"]
    if units or placement.attention_on_host:
        out["attention_deployment"] = {
            "units": len(units), "on_host": list(placement.attention_on_host or ()),
            "max_in_axons": max((c.in_axons or 0 for c in units), default=0),
            "max_out_axons": max((c.out_axons or 0 for c in units), default=0),
            "max_ops_per_step": max((c.ops_per_step or 0 for c in units), default=0)}
    traffic = activity.traffic
    if traffic is None:
        assumptions.append("Mesh traffic was not counted (a build compiled before chips were "
                           "assigned, or an activity file without traffic): no hop energy or "
                           "routing time.")
        return out
    steps = activity.samples * activity.time_steps
    out["traffic"] = {
        "per_sample": {k: traffic.total(k) / activity.samples for k in TRAFFIC_COUNTS},
        "per_step": {k: traffic.total(k) / steps for k in TRAFFIC_COUNTS},
        "longest_route": dict(traffic.longest_route),
        "senders": [s.to_json() for s in traffic.senders],
        "not_counted": list(traffic.not_counted)}
    assumptions.append(
        "Mesh traffic: every event (spike, nonzero relay payload or attention output) is one "
        "message per destination core; a message's hops are the Manhattan distances of its "
        "cores' tiles (east-west, north-south) and of their chips on the chip grid "
        "(dimension-order routing; the way to a chip's edge links is not modelled). Not "
        "counted: " + "; ".join(traffic.not_counted) + ".")
    return out
