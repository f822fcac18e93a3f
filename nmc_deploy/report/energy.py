"""Energy and latency estimates from simulated activity (numpy-free, stdlib only).

:func:`estimate_costs` combines three inputs:

* ``activity`` - operation counts from a simulation (measured in simulation, not on a chip):
  synaptic operations per layer, spikes and neuron updates per population;
* ``program_summary`` - where the compiler placed each population (cores, fractions);
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

Per-layer attribution: a layer carries the energy of its own synaptic operations plus a share of
its destination population's neuron-update and spike energy; layers feeding the same population
split that energy in proportion to their synaptic operations (equally if all have none). A
population no layer feeds (e.g. a host-fed input) gets its own row of kind ``"population"``.
The rows therefore add up to the total.

Latency (estimated)::

    step_ns   = barrier_ns + max over cores c of
                (synops_c * time_per_synop_ns + active_c * t_active + inactive_c * t_inactive)
    x_c       = sum over populations p on core c of fraction(p, c) * x_p / (samples * time_steps)
    sample_us = (time_steps + pipeline_depth) * step_ns / 1000

where a layer's synaptic operations count for its destination population.

Relay populations (low-rank factors in relay form; activity entries with ``kind`` "relay")
are priced like neurons: a nonzero graded payload counts as one spike (one message), a
payload event costs one synaptic op per nonzero weight it reaches (as a binary spike does;
the multiplication by the payload is assumed free), and each relay neuron costs one neuron
update per step (active when its input is nonzero). Intel publishes no separate graded-spike
figures, so this is an assumption and the report says so.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from ..errors import InputFileError
from ..targets import HardwareTarget

__all__ = ["REPORT_VERSION", "LAYER_KINDS", "MEASURED", "ESTIMATED", "COMPILED",
           "estimate_costs"]

REPORT_VERSION = 1
# "tokens": synapses fed by a token selector's gated stream (graded residual sums, priced as
# accumulates like every non-encoding synaptic op). Low-rank relays add no layer kind: the
# groups into a relay are "encoding" (from the input), "tokens" (from a selector) or
# "synapses", the group out of a relay is "synapses" (its graded payload priced like a spike;
# module docstring), and the relay itself is an activity population with kind "relay".
LAYER_KINDS = ("encoding", "synapses", "attention", "tokens")
MEASURED = "measured (simulated activity)"
ESTIMATED = "estimated (model)"
COMPILED = "compiled program"

_TIMING_FIELDS = ("time_per_synop_ns", "time_per_neuron_update_active_ns",
                  "time_per_neuron_update_inactive_ns", "barrier_ns")


def estimate_costs(activity: dict, program_summary: dict, target: HardwareTarget) -> dict:
    """Estimate energy per sample (every energy model of the target) and latency per sample.

    Parameters
    ----------
    activity
        ``{"backend": str, "samples": int, "time_steps": int, "pipeline_depth": int,
        "layers": [{"name", "kind", "synops", "synapses", "population"}],
        "populations": [{"name", "neurons", "spikes", "neuron_updates", "active_updates"}]}``
        (a population may carry ``"kind": "relay"``; optional ``token_selectors`` and
        ``synops_without_token_selection`` from a run with token selectors).
        Counts are totals over all samples and steps; ``kind`` is one of :data:`LAYER_KINDS`.
        A missing ``pipeline_depth`` is taken as 0 (and said so in the assumptions).
    program_summary
        ``{"target": str, "cores_used": int, "cores": [{"core": int, "populations":
        [{"name", "neurons", "fraction"}], ...}]}``; ``fraction`` is the share of the
        population's neurons on that core.
    target
        The hardware target; must be the one the program was compiled for.

    Returns
    -------
    dict
        JSON-able: ``target``, ``backend``, ``samples``, ``time_steps``, ``pipeline_depth``,
        ``cores_used``, ``per_sample`` (counts), ``layers``, ``populations``,
        ``energy_per_sample_uj``, ``energy_breakdown_pj_per_sample``, ``energy_models``,
        ``latency_per_sample_us``, ``latency``, ``latency_model``, ``assumptions``, ``sources``,
        ``labels`` (which figures are measured and which estimated).

    Raises
    ------
    InputFileError
        A malformed input, a layer naming an unknown population, a program population without
        recorded activity, or a program compiled for another target.
    """
    assumptions: list[str] = []
    run = _check_activity(activity, assumptions)
    cores = _check_program(program_summary, target)
    samples, steps = run["samples"], run["time_steps"]
    layers, pops = run["layers"], run["populations"]
    pop_by_name = {p["name"]: p for p in pops}

    # -- measured counts -----------------------------------------------------------------------
    synops_by_kind = {kind: sum(ly["synops"] for ly in layers if ly["kind"] == kind)
                      for kind in LAYER_KINDS}
    total_synops = sum(synops_by_kind.values())
    total_spikes = sum(p["spikes"] for p in pops)
    total_updates = sum(p["neuron_updates"] for p in pops)
    total_active = sum(p["active_updates"] for p in pops)
    per_sample = {
        "synops": total_synops / samples,
        "macs_encoding": synops_by_kind["encoding"] / samples,
        "acs": (synops_by_kind["synapses"] + synops_by_kind["attention"]
                + synops_by_kind["tokens"]) / samples,
        "attention_ops": synops_by_kind["attention"] / samples,
        "spikes": total_spikes / samples,
        "neuron_updates": total_updates / samples,
        "active_updates": total_active / samples,
    }

    # -- energy ---------------------------------------------------------------------------------
    feeders: dict[str, list[dict]] = {p["name"]: [] for p in pops}
    for layer in layers:
        feeders[layer["population"]].append(layer)
    layer_rows = [{"name": ly["name"], "kind": ly["kind"], "population": ly["population"],
                   "synapses": ly["synapses"], "synops_per_sample": ly["synops"] / samples,
                   "energy_pj_per_sample": {}} for ly in layers]
    orphan_rows = [{"name": p["name"], "kind": "population", "population": p["name"],
                    "synapses": 0, "synops_per_sample": 0.0, "energy_pj_per_sample": {}}
                   for p in pops if not feeders[p["name"]]]
    pop_rows = [{"name": p["name"], "neurons": p["neurons"],
                 "spikes_per_sample": p["spikes"] / samples,
                 "neuron_updates_per_sample": p["neuron_updates"] / samples,
                 "active_updates_per_sample": p["active_updates"] / samples,
                 "firing_rate": (p["spikes"] / p["neuron_updates"]) if p["neuron_updates"] else 0.0,
                 "energy_pj_per_sample": {}} for p in pops]

    energy_uj: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = {}
    models_out: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    for model in target.energy_models.values():
        synop_pj = [_synop_energy_pj(model, ly) for ly in layers]
        pop_pj = {p["name"]: _population_energy_pj(model, p) for p in pops}
        for row, layer, e_syn in zip(layer_rows, layers, synop_pj):
            group = feeders[layer["population"]]
            group_synops = sum(g["synops"] for g in group)
            share = layer["synops"] / group_synops if group_synops else 1.0 / len(group)
            e_pop = sum(pop_pj[layer["population"]].values()) * share
            row["energy_pj_per_sample"][model.name] = (e_syn + e_pop) / samples
        for row in orphan_rows:
            row["energy_pj_per_sample"][model.name] = sum(pop_pj[row["name"]].values()) / samples
        for row in pop_rows:
            row["energy_pj_per_sample"][model.name] = sum(pop_pj[row["name"]].values()) / samples
        parts = {"synops": sum(synop_pj),
                 "neuron_updates": sum(v["neuron_updates"] for v in pop_pj.values()),
                 "spikes": sum(v["spikes"] for v in pop_pj.values())}
        breakdown[model.name] = {k: v / samples for k, v in parts.items()}
        energy_uj[model.name] = sum(parts.values()) / samples * 1e-6
        models_out[model.name] = {"formula": model.formula, "description": model.description,
                                  "coefficients_pj": dict(model.coefficients_pj)}
        sources[model.name] = model.citations()
        assumptions.append(_model_assumption(model, per_sample))

    # -- token selectors (embedded-core ops) -----------------------------------------------------
    token = _token_selection(activity, samples, total_synops, target, assumptions)
    if token is not None:
        for name, pj in token["energy_pj_per_sample"].items():
            energy_uj[name] += pj * 1e-6
            breakdown[name]["token_selectors"] = pj

    # -- latency --------------------------------------------------------------------------------
    latency = _latency(run, cores, feeders, pop_by_name, target, assumptions)
    latency_model = latency.pop("model")
    sources["latency"] = [f"{f} = {getattr(target, f):g} ns: {target.source_of(f)}"
                          for f in _TIMING_FIELDS]

    relays = [p.get("name") for p in activity.get("populations", [])
              if isinstance(p, dict) and p.get("kind") == "relay"]
    if relays:
        assumptions.append(
            f"{len(relays)} graded relay population(s) (low-rank factors as two synaptic "
            "stages): a nonzero payload counts as one spike message, each nonzero weight it "
            "reaches as one synaptic op (as for a binary spike), each relay neuron as one "
            "neuron update per step; Intel publishes no separate graded-spike costs.")
    assumptions[:0] = [
        f"Synaptic operations, spikes and neuron updates were counted by the '{run['backend']}' "
        f"simulator over {samples} samples x {steps} time steps: measured in simulation, "
        f"not on hardware.",
        "Per-layer energy = the layer's synaptic operations plus a share of its destination "
        "population's neuron-update and spike energy, split among the layers feeding that "
        "population in proportion to their synaptic operations; a population fed by no layer "
        "has its own row (kind 'population').",
    ]
    extra = {} if token is None else {"token_selection": token}
    return {
        **extra,
        "report_version": REPORT_VERSION,
        "target": target.name,
        "target_description": target.description,
        "backend": run["backend"],
        "samples": samples,
        "time_steps": steps,
        "pipeline_depth": run["pipeline_depth"],
        "cores_used": cores["cores_used"],
        "per_sample": per_sample,
        "layers": layer_rows + orphan_rows,
        "populations": pop_rows,
        "energy_per_sample_uj": energy_uj,
        "energy_breakdown_pj_per_sample": breakdown,
        "energy_models": models_out,
        "latency_per_sample_us": latency["per_sample_us"],
        "latency": latency,
        "latency_model": latency_model,
        "assumptions": assumptions,
        "sources": sources,
        "labels": {
            "per_sample": MEASURED,
            "layers.synops_per_sample": MEASURED,
            "populations": MEASURED,
            "cores_used": COMPILED,
            "layers.energy_pj_per_sample": ESTIMATED,
            "populations.energy_pj_per_sample": ESTIMATED,
            "energy_per_sample_uj": ESTIMATED,
            "energy_breakdown_pj_per_sample": ESTIMATED,
            "latency_per_sample_us": ESTIMATED,
            "latency": ESTIMATED,
        },
    }


# ---------------------------------------------------------------------------------------------
# energy formulas
# ---------------------------------------------------------------------------------------------

def _token_selection(activity: dict, samples: int, total_synops: int, target: HardwareTarget,
                     assumptions: list[str]) -> dict | None:
    """Work of the token selectors and the synaptic ops they save (None: no selectors).

    Selector MACs run on an embedded core: priced with the target's 45 nm MAC energy
    (``e_mac_pj`` of its ``mac_ac`` model) in every energy model, an estimate.
    """
    sels = activity.get("token_selectors")
    if not sels:
        return None
    rows = []
    for i, sel in enumerate(_list(activity, "token_selectors", "activity")):
        where = f"activity: token_selectors[{i}]"
        row = {"name": _text(sel, "name", where)}
        for key in ("evaluated_tokens", "kept_tokens", "predictor_macs", "lut_lookups"):
            row[f"{key}_per_sample"] = _count(sel, key, where) / samples
        rows.append(row)
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
    if "synops_without_token_selection" in activity:
        without = _count(activity, "synops_without_token_selection", "activity") / samples
        with_ = total_synops / samples
        out.update({"synops_without_selection_per_sample": without,
                    "synops_saved_per_sample": without - with_,
                    "synops_saved_fraction": (without - with_) / without if without else 0.0})
    return out


def _synop_energy_pj(model, layer: dict) -> float:
    """Energy of one layer's synaptic operations (all samples)."""
    if model.formula == "mac_ac":
        key = "e_mac_pj" if layer["kind"] == "encoding" else "e_ac_pj"
        return model.coefficient_pj(key) * layer["synops"]
    return model.coefficient_pj("e_synop_pj") * layer["synops"]


def _population_energy_pj(model, pop: dict) -> dict[str, float]:
    """Neuron-update and spike energy of one population (all samples)."""
    if model.formula == "mac_ac":
        return {"neuron_updates": 0.0, "spikes": 0.0}
    inactive = pop["neuron_updates"] - pop["active_updates"]
    updates = (model.coefficient_pj("e_neuron_update_active_pj") * pop["active_updates"]
               + model.coefficient_pj("e_neuron_update_inactive_pj") * inactive)
    return {"neuron_updates": updates,
            "spikes": model.coefficient_pj("e_spike_within_tile_pj") * pop["spikes"]}


def _model_assumption(model, per_sample: dict) -> str:
    bases = {model.sources[k].basis for k in model.used_coefficients}
    if model.formula == "mac_ac":
        text = (f"{model.name}: Spikformer convention - the encoding layer's "
                f"{per_sample['macs_encoding']:.6g} MACs/sample cost e_mac_pj, every other "
                f"synaptic op ({per_sample['acs']:.6g}/sample, of which "
                f"{per_sample['attention_ops']:.6g} attention ops) costs e_ac_pj; neuron updates, "
                f"spikes, memory access and routing cost nothing.")
    else:
        text = (f"{model.name}: every synaptic op (encoding and attention included) costs "
                f"e_synop_pj; a neuron update costs e_neuron_update_active_pj when the neuron "
                f"received input or had nonzero voltage, else e_neuron_update_inactive_pj; every "
                f"spike costs one within-tile message (no mesh hops, no static power).")
    if "assumption" in bases:
        assumed = [k for k in model.used_coefficients if model.sources[k].basis == "assumption"]
        text += f" Coefficients taken from another chip (basis 'assumption'): {', '.join(assumed)}."
    return text


# ---------------------------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------------------------

def _latency(run: dict, cores: dict, feeders: dict, pop_by_name: dict,
             target: HardwareTarget, assumptions: list[str]) -> dict:
    samples, steps, depth = run["samples"], run["time_steps"], run["pipeline_depth"]
    recorded_steps = samples * steps
    per_step = {}
    for name, pop in pop_by_name.items():
        per_step[name] = {
            "synops": sum(ly["synops"] for ly in feeders[name]) / recorded_steps,
            "active": pop["active_updates"] / recorded_steps,
            "inactive": (pop["neuron_updates"] - pop["active_updates"]) / recorded_steps,
        }
    placed: dict[str, float] = {}
    core_rows = []
    for core in cores["cores"]:
        synops = active = inactive = 0.0
        for entry in core["populations"]:
            name, fraction = entry["name"], entry["fraction"]
            if name not in per_step:
                raise InputFileError(
                    f"program_summary: core {core['core']} holds population '{name}', which has "
                    f"no recorded activity; simulate the same compiled program")
            placed[name] = placed.get(name, 0.0) + fraction
            synops += fraction * per_step[name]["synops"]
            active += fraction * per_step[name]["active"]
            inactive += fraction * per_step[name]["inactive"]
        step_ns = (synops * target.time_per_synop_ns
                   + active * target.time_per_neuron_update_active_ns
                   + inactive * target.time_per_neuron_update_inactive_ns)
        core_rows.append({"core": core["core"], "synops_per_step": synops,
                          "active_updates_per_step": active,
                          "inactive_updates_per_step": inactive, "busy_ns_per_step": step_ns})
    for name in pop_by_name:
        if name not in placed:
            assumptions.append(f"Population '{name}' has recorded activity but is on no core "
                               f"(host-fed); it counts for energy but not for core time.")
        elif abs(placed[name] - 1.0) > 1e-6:
            assumptions.append(f"Population '{name}': its core fractions sum to "
                               f"{placed[name]:.6g}, not 1.")
    critical = max(core_rows, key=lambda r: r["busy_ns_per_step"], default=None)
    busy_ns = critical["busy_ns_per_step"] if critical else 0.0
    step_ns = target.barrier_ns + busy_ns
    steps_per_sample = steps + depth
    per_sample_us = steps_per_sample * step_ns / 1000.0
    model = (f"estimated: per time step = barrier ({target.barrier_ns:g} ns) + busiest core "
             f"(synops x {target.time_per_synop_ns:g} ns + active updates x "
             f"{target.time_per_neuron_update_active_ns:g} ns + inactive updates x "
             f"{target.time_per_neuron_update_inactive_ns:g} ns, per-step averages of the "
             f"simulated activity); per sample = (T {steps} + pipeline depth {depth}) steps")
    assumptions.append(
        "Latency: cores work in parallel and synchronise once per time step (barrier, 1-tile "
        "value); the per-step average activity also applies to the pipeline-fill steps; "
        "spike routing time, host I/O and inter-chip links are not modelled.")
    bases = {target.source_of(f).basis for f in _TIMING_FIELDS}
    if "assumption" in bases:
        assumptions.append(f"Latency coefficients of '{target.name}' are taken from another "
                           f"chip (basis 'assumption'); see the latency sources.")
    return {"per_sample_us": per_sample_us, "per_step_ns": step_ns,
            "steps_per_sample": steps_per_sample, "barrier_ns": target.barrier_ns,
            "critical_core": critical["core"] if critical else None, "cores": core_rows,
            "model": model}


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------

def _count(d: dict, key: str, where: str, minimum: int = 0) -> int:
    if key not in d:
        raise InputFileError(f"{where}: missing key '{key}'")
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, Real) and float(value).is_integer():
            value = int(value)
        else:
            raise InputFileError(f"{where}: '{key}' must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise InputFileError(f"{where}: '{key}' ({value}) is below {minimum}")
    return value


def _text(d: dict, key: str, where: str) -> str:
    if key not in d:
        raise InputFileError(f"{where}: missing key '{key}'")
    if not isinstance(d[key], str):
        raise InputFileError(f"{where}: '{key}' must be a string, got {d[key]!r}")
    return d[key]


def _list(d: dict, key: str, where: str) -> list:
    if key not in d:
        raise InputFileError(f"{where}: missing key '{key}'")
    if not isinstance(d[key], (list, tuple)):
        raise InputFileError(f"{where}: '{key}' must be a list")
    return list(d[key])


def _check_activity(activity: dict, assumptions: list[str]) -> dict:
    if not isinstance(activity, dict):
        raise InputFileError("activity: expected a dict")
    run = {"backend": _text(activity, "backend", "activity"),
           "samples": _count(activity, "samples", "activity", 1),
           "time_steps": _count(activity, "time_steps", "activity", 1)}
    if "pipeline_depth" in activity:
        run["pipeline_depth"] = _count(activity, "pipeline_depth", "activity")
    else:
        run["pipeline_depth"] = 0
        assumptions.append("activity: pipeline_depth not recorded; taken as 0.")
    pops = []
    for i, p in enumerate(_list(activity, "populations", "activity")):
        where = f"activity: populations[{i}]"
        pop = {"name": _text(p, "name", where)}
        for key in ("neurons", "spikes", "neuron_updates", "active_updates"):
            pop[key] = _count(p, key, f"activity: population '{pop['name']}'")
        if pop["active_updates"] > pop["neuron_updates"]:
            raise InputFileError(f"activity: population '{pop['name']}': active_updates "
                                 f"({pop['active_updates']}) exceeds neuron_updates "
                                 f"({pop['neuron_updates']})")
        pops.append(pop)
    names = [p["name"] for p in pops]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputFileError(f"activity: population '{dup}' is listed twice")
    layers = []
    for i, ly in enumerate(_list(activity, "layers", "activity")):
        where = f"activity: layers[{i}]"
        layer = {"name": _text(ly, "name", where)}
        where = f"activity: layer '{layer['name']}'"
        layer["kind"] = _text(ly, "kind", where)
        if layer["kind"] not in LAYER_KINDS:
            raise InputFileError(f"{where}: kind '{layer['kind']}' is not one of "
                                 f"{', '.join(LAYER_KINDS)}")
        layer["synops"] = _count(ly, "synops", where)
        layer["synapses"] = _count(ly, "synapses", where)
        layer["population"] = _text(ly, "population", where)
        if layer["population"] not in names:
            raise InputFileError(f"{where}: destination population '{layer['population']}' is "
                                 f"not in activity['populations']")
        layers.append(layer)
    run["layers"], run["populations"] = layers, pops
    return run


def _check_program(program: dict, target: HardwareTarget) -> dict:
    if not isinstance(program, dict):
        raise InputFileError("program_summary: expected a dict")
    compiled_for = _text(program, "target", "program_summary")
    if compiled_for != target.name:
        raise InputFileError(f"program_summary: compiled for target '{compiled_for}', but costs "
                             f"are estimated for '{target.name}'; use the same target for both")
    cores = []
    for i, c in enumerate(_list(program, "cores", "program_summary")):
        where = f"program_summary: cores[{i}]"
        core = {"core": _count(c, "core", where), "populations": []}
        for j, p in enumerate(_list(c, "populations", where)):
            pwhere = f"{where}.populations[{j}]"
            name = _text(p, "name", pwhere)
            fraction = p.get("fraction")
            if isinstance(fraction, bool) or not isinstance(fraction, Real) \
                    or not 0.0 <= float(fraction) <= 1.0:
                raise InputFileError(f"{pwhere}: 'fraction' must be a number in [0, 1], "
                                     f"got {fraction!r}")
            core["populations"].append({"name": name, "fraction": float(fraction)})
        cores.append(core)
    cores_used = _count(program, "cores_used", "program_summary") \
        if "cores_used" in program else len(cores)
    return {"cores_used": cores_used, "cores": cores}
