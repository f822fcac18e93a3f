"""The deployment sections of a report: fit verdict, fidelity, utilization, traffic, placement.

Pure functions over the build directory's JSON records (``placement.json``,
``simulation_<run>.json``, the activity file's ``traffic.core_pairs``); stdlib only, no input
is changed. :func:`deployment_sections` assembles what :func:`~nmc_deploy.pipeline.make_report`
adds to the cost report of :func:`~nmc_deploy.report.energy.estimate_costs`:

* ``verdict``: fits on <system>: N of M cores on K chips, the resource binding each core (the
  per-core limit it uses the largest share of, ties in :data:`RESOURCES` order: the rule of
  ``program/chips.py``) and overall (the one binding most cores);
* ``fidelity``: float vs fixed-point (reference) vs Lava accuracies, spike mismatches per
  population, quantization losses; what was not run says so;
* ``utilization``: per core its chip, tile and share of every per-core limit;
* ``traffic_matrix``: core-to-core messages and hops (the coordinate form of
  ``core_pairs``), and the same aggregated chip-to-chip through each core's chip;
* ``placement``: the placement method and, when an alternative was computed, the estimates
  of both placements (the ``placement`` record of ``placement.json``).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

__all__ = ["RESOURCES", "RUNS", "NOT_RUN", "core_shares", "verdict", "utilization",
           "fidelity", "traffic_matrix", "placement_record", "deployment_sections"]

#: Per-core resources and the ``limits`` key (``placement.json``) each is measured against
#: (the order breaks ties, as in ``program/chips.py``).
RESOURCES = {
    "neurons": "max_neurons_per_core",
    "synapse_memory_bits": "synapse_memory_bits_per_core",
    "in_axons": "max_in_axons_per_core",
    "out_axons": "max_out_axons_per_core",
    "neuron_groups": "max_neuron_groups_per_core",
}
#: Simulation records read for fidelity, by run name (``simulation_<run>.json``).
RUNS = ("reference", "compare", "lava")
NOT_RUN = "not run"
_ESTIMATES = ("messages_per_step", "message_hops_per_step", "messages_between_chips_per_step",
              "longest_route_hops", "chips_used")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------- fit and utilization

def core_shares(core: Mapping[str, Any], limits: Mapping[str, Any]) -> dict[str, float]:
    """Share of each per-core limit one core of ``placement.json`` uses (0 without a limit)."""
    used = {"neurons": core.get("neurons"), "synapse_memory_bits": core.get("synapse_memory_bits"),
            "in_axons": core.get("in_axons"), "out_axons": core.get("out_axons"),
            "neuron_groups": len(core.get("populations") or ())}
    return {r: (used[r] or 0) / limits[key] if limits.get(key) else 0.0
            for r, key in RESOURCES.items()}


def _binding(shares: Mapping[str, float]) -> str:
    return max(RESOURCES, key=lambda r: shares[r])  # ties: RESOURCES order


def utilization(placement: Mapping[str, Any]) -> dict:
    """Per core: kind, chip, tile, populations, share of every per-core limit, binding resource.

    ``placement`` is the ``placement.json`` dict. ``max_share`` is the largest share (the
    heatmap's colour); shares are rounded to 4 decimals.
    """
    limits = placement.get("limits") or {}
    rows = []
    for i, core in enumerate(placement.get("cores") or ()):
        shares = core_shares(core, limits)
        binding = _binding(shares)
        rows.append({"core": int(core.get("core", i)), "kind": core.get("kind") or "neuro",
                     "chip": int(core.get("chip") or 0),
                     "tile": list(core["tile"]) if core.get("tile") is not None else None,
                     "populations": [p.get("name", "") for p in core.get("populations") or ()],
                     "attention": core.get("attention"),
                     "shares": {r: round(s, 4) for r, s in shares.items()},
                     "binding": binding, "max_share": round(shares[binding], 4)})
    return {"resources": dict(RESOURCES), "limits": {k: limits.get(k) for k in RESOURCES.values()},
            "cores": rows}


def verdict(placement: Mapping[str, Any], design_rules: Mapping[str, Any] | None = None) -> dict:
    """Does the build fit its system: cores and chips used of those there are, what binds.

    Parameters
    ----------
    placement
        The ``placement.json`` dict (``cores``, ``limits``, ``system``, ``target``).
    design_rules
        ``design_rules.json`` (optional); a failing status makes the verdict "does not fit".

    Returns
    -------
    dict
        ``fits``, ``system``, ``cores_used`` (N), ``cores_available`` (M, None when the
        build has no ``system`` record), ``chips_used`` (K), ``chips``, ``binding`` (the
        resource binding most cores), ``binding_cores``, ``bound`` (cores per binding
        resource, most first), ``tightest`` (the core with the largest share: core,
        resource, share), ``problems`` (why it does not fit) and the one-line ``text``.
    """
    util = utilization(placement)
    cores = util["cores"]
    system = placement.get("system") or {}
    name = system.get("name") or placement.get("target", "?")
    n = int(placement.get("cores_used", len(cores)))
    chips = int(system["chips"]) if "chips" in system else None
    m = chips * int(system["cores_per_chip"]) if chips and "cores_per_chip" in system else None
    k = int(system.get("chips_used", placement.get("chips_used", 1 if cores else 0)))
    binds = Counter(c["binding"] for c in cores)
    bound = {r: binds[r] for r in sorted(RESOURCES, key=lambda r: -binds[r]) if binds[r]}
    binding = max(RESOURCES, key=lambda r: binds[r]) if cores else None
    tight = max(cores, key=lambda c: c["max_share"], default=None)
    problems = [f"core {c['core']}: {c['binding'].replace('_', ' ')} at "
                f"{100 * c['max_share']:.1f} % of its limit" for c in cores if c["max_share"] > 1]
    if m is not None and n > m:
        problems.append(f"cores ({n}) exceed the system's {m}")
    if chips is not None and k > chips:
        problems.append(f"chips ({k}) exceed the system's {chips}")
    if design_rules and design_rules.get("status") == "fail":
        problems.append("a design rule fails (design_rules.json)")
    fits = not problems
    where = f"{n:,} of {m:,} cores" if m is not None else _plural(n, "core")
    text = (f"{'fits' if fits else 'does not fit'} on {name}: {where} on "
            f"{k:,} of {_plural(chips, 'chip')}" if chips is not None else
            f"{'fits' if fits else 'does not fit'} on {name}: {where} on {_plural(k, 'chip')}")
    if binding is not None:
        text += (f"; binding resource: {binding.replace('_', ' ')} "
                 f"({binds[binding]:,} of {len(cores):,} cores)")
    return {"fits": fits, "system": name, "cores_used": n, "cores_available": m,
            "chips_used": k, "chips": chips, "binding": binding,
            "binding_cores": binds[binding] if binding else 0, "bound": bound,
            "tightest": None if tight is None else {"core": tight["core"],
                                                    "resource": tight["binding"],
                                                    "share": tight["max_share"]},
            "problems": problems, "text": text}


# ----------------------------------------------------------------------------------- fidelity

def _best(runs: Mapping[str, Mapping[str, Any]], key: str) -> dict | None:
    """The run with the most samples that has a value for ``key``."""
    found = [(int(r.get("samples") or 0), name, r[key]) for name, r in runs.items()
             if r.get(key) is not None]
    if not found:
        return None
    samples, name, value = max(found, key=lambda t: (t[0], -RUNS.index(t[1])))  # ties: RUNS
    return {"value": float(value), "samples": samples, "run": name,
            "file": f"simulation_{name}.json"}


def fidelity(simulations: Mapping[str, Mapping[str, Any]],
             quantization: Mapping[str, Any] | None) -> dict:
    """Float vs fixed point vs Lava, spike mismatches per population, quantization losses.

    Parameters
    ----------
    simulations
        ``simulation_<run>.json`` dicts by run name ("reference", "compare", "lava").
    quantization
        The ``quantization`` record of ``placement.json``.

    Returns
    -------
    dict
        ``runs`` (per run: dataset, samples, the three accuracies), ``accuracy`` (per kind
        "float", "fixed_reference", "fixed_lava": the run with the most samples: value,
        samples, run, file; or :data:`NOT_RUN` / "no labels"), ``mismatches`` (of the
        compare run: per population, total, spikes compared, prediction mismatches, samples;
        or :data:`NOT_RUN`), ``quantization`` (the losses, with the zeroed share) and
        ``per_layer`` (simulate's per-population fidelity rows of the run with the most
        samples, :func:`_per_layer`; or :data:`NOT_RUN`).
    """
    runs = {name: simulations[name] for name in RUNS if name in simulations}
    rows = [{"run": name, "file": f"simulation_{name}.json", "dataset": r.get("dataset"),
             "samples": r.get("samples"),
             **{k: r.get(k) for k in ("accuracy_float", "accuracy_fixed_reference",
                                      "accuracy_fixed_lava")}} for name, r in runs.items()]
    accuracy: dict[str, Any] = {}
    for kind in ("float", "fixed_reference", "fixed_lava"):
        key = f"accuracy_{kind}"
        best = _best(runs, key)
        ran = [r for r in runs.values() if key in r]
        accuracy[kind] = best if best else ("no labels" if ran else NOT_RUN)
    cmp = runs.get("compare")
    if cmp and "spike_mismatches_per_population" in cmp:
        per_pop = {str(k): int(v) for k, v in cmp["spike_mismatches_per_population"].items()}
        mismatches: Any = {"per_population": per_pop, "total": sum(per_pop.values()),
                           "spikes_compared": cmp.get("spikes_compared"),
                           "prediction_mismatches": cmp.get("prediction_mismatches"),
                           "samples": cmp.get("samples"), "file": "simulation_compare.json"}
    else:
        mismatches = NOT_RUN
    quant: Any = NOT_RUN
    if quantization:
        quant = {k: quantization.get(k) for k in ("weight_bits", "vth_mant", "zeroed_weights",
                                                   "clipped_weights", "clipped_biases",
                                                   "float_synapses")}
        quant["decay_rounding"] = dict(quantization.get("decay_rounding") or {})
        total = quantization.get("float_synapses") or 0
        quant["zeroed_share"] = (quantization.get("zeroed_weights") or 0) / total if total \
            else None
    return {"runs": rows, "accuracy": accuracy, "mismatches": mismatches,
            "quantization": quant, "per_layer": _per_layer(runs)}


_LAYER_KEYS = ("population", "kind", "vth_mant", "choice", "zeroed_weights", "entries", "spikes",
               "float_vs_fixed", "max_voltage_error", "reference_vs_lava", "u_wraps",
               "v_saturations")


def _per_layer(runs: Mapping[str, Mapping[str, Any]]) -> Any:
    """The per-population fidelity rows ``simulate`` printed (its ``fidelity`` record) of
    the run with the most samples: threshold mantissa, weights zeroed, float-vs-fixed spike
    mismatches, largest membrane error, reference-vs-Lava mismatches, wraps/saturations."""
    found = [(int(r.get("samples") or 0), name) for name, r in runs.items()
             if isinstance(r.get("fidelity"), Mapping)]
    if not found:
        return NOT_RUN
    samples, name = max(found, key=lambda t: (t[0], -RUNS.index(t[1])))
    fid = runs[name]["fidelity"]
    return {"run": name, "file": f"simulation_{name}.json", "samples": samples,
            "rows": [{k: r.get(k) for k in _LAYER_KEYS} for r in fid.get("populations", [])],
            "float_vs_fixed": fid.get("float_vs_fixed"),
            "predictions_agree": dict(fid.get("predictions_agree") or {})}


# ------------------------------------------------------------------------------------ traffic

def _sum_pairs(keys, columns: Mapping[str, list], names=("messages", "hops", "chip_hops")):
    """Sum ``columns`` per key (a (row, column) tuple per entry), sorted by key."""
    sums: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(keys):
        acc = sums.setdefault(key, [0] * len(names))
        for j, name in enumerate(names):
            acc[j] += int(columns[name][i])
    ordered = sorted(sums)
    return {"source": [a for a, _ in ordered], "destination": [b for _, b in ordered],
            **{name: [sums[key][j] for key in ordered] for j, name in enumerate(names)}}


def traffic_matrix(core_pairs: Mapping[str, list] | None, core_chip: Mapping[int, int],
                   samples: int, time_steps: int) -> dict:
    """Core-to-core and chip-to-chip spike messages and hops (totals over samples x steps).

    Parameters
    ----------
    core_pairs
        ``traffic.core_pairs`` of the activity file (columns ``source``, ``destination``,
        ``messages``, ``hops``, ``chip_hops``), or None when not counted.
    core_chip
        The chip of every core (``placement.json``).
    samples, time_steps
        Of the run, to give per-sample and per-step totals.

    Returns
    -------
    dict
        ``status`` "counted" or why not; ``cores`` (the coordinate form, as given), ``chips``
        (the same columns summed per (source chip, destination chip)), ``totals`` (messages,
        hops, chip hops, messages between chips: sums of the matrix), ``per_sample`` and
        ``per_step`` (totals / samples, / samples x time steps).
    """
    if core_pairs is None:
        return {"status": "not counted (the activity has no traffic.core_pairs; simulate the "
                          "build again)"}
    cols = {k: [int(x) for x in core_pairs[k]]
            for k in ("source", "destination", "messages", "hops", "chip_hops")}
    src, dst = cols["source"], cols["destination"]
    chips = _sum_pairs([(core_chip.get(a, 0), core_chip.get(b, 0)) for a, b in zip(src, dst)],
                       cols)
    between = sum(m for a, b, m in zip(src, dst, cols["messages"])
                  if core_chip.get(a, 0) != core_chip.get(b, 0))
    totals = {"messages": sum(cols["messages"]), "hops": sum(cols["hops"]),
              "chip_hops": sum(cols["chip_hops"]), "messages_between_chips": between}
    steps = samples * time_steps
    return {"status": "counted", "unit": "totals over samples x time steps",
            "samples": samples, "time_steps": time_steps, "cores": cols, "chips": chips,
            "totals": totals,
            "per_sample": {k: v / samples if samples else 0.0 for k, v in totals.items()},
            "per_step": {k: v / steps if steps else 0.0 for k, v in totals.items()}}


# ---------------------------------------------------------------------------------- placement

def placement_record(placement: Mapping[str, Any]) -> dict:
    """The placement method and, when computed, both placements' estimates and what moved.

    Reads the ``placement`` record of ``placement.json`` (``method``, ``seed``, ``rates``,
    ``estimates`` per method, ``baseline`` core chips and tiles when the method is
    "traffic"). Without it: greedy, ``computed`` False. ``change`` gives per estimate
    (after - before) / before of traffic vs greedy; ``moved_cores`` how many cores sit on
    another chip or tile than in the baseline.
    """
    rec = placement.get("placement")
    if not rec:
        return {"method": "greedy", "computed": False,
                "text": "greedy placement (no alternative computed)"}
    out: dict[str, Any] = {"method": rec.get("method", "greedy"), "computed": True,
                           "seed": rec.get("seed"), "rates": rec.get("rates"),
                           "estimates": {m: dict(v) for m, v in
                                         (rec.get("estimates") or {}).items()}}
    est = out["estimates"]
    if "greedy" in est and "traffic" in est:
        out["change"] = {k: ((est["traffic"][k] - est["greedy"][k]) / est["greedy"][k]
                             if est["greedy"].get(k) else None)
                         for k in _ESTIMATES if k in est["greedy"] and k in est["traffic"]}
    base = rec.get("baseline")
    if rec.get("balance"):
        out["balance"] = dict(rec["balance"])
    if base:
        cores = placement.get("cores") or ()
        now = [(c.get("chip"), list(c.get("tile") or ())) for c in cores]
        before = list(zip(base.get("core_chip") or (), base.get("core_tile") or ()))
        out["baseline"] = {"core_chip": list(base.get("core_chip") or ()),
                           "core_tile": [list(t) for t in base.get("core_tile") or ()],
                           "core_population": list(base.get("core_population") or ())}
        if (rec.get("balance") or {}).get("work_cap") is None and len(now) == len(before):
            # the same partition (not re-cut): cores correspond one to one
            out["moved_cores"] = sum(1 for (c, t), (bc, bt) in zip(now, before)
                                     if c != bc or t != list(bt))
    out["text"] = (f"{out['method']} placement (seed {out['seed']}, rates: {out['rates']})"
                   if out["method"] != "greedy" else "greedy placement")
    return out


# ----------------------------------------------------------------------------------- assembly

def deployment_sections(placement: Mapping[str, Any],
                        simulations: Mapping[str, Mapping[str, Any]],
                        core_pairs: Mapping[str, list] | None, *, samples: int,
                        time_steps: int, design_rules: Mapping[str, Any] | None = None) -> dict:
    """The report keys ``verdict``, ``fidelity``, ``utilization``, ``traffic_matrix`` and
    ``placement`` from a build's records (see the module docstring)."""
    core_chip = {int(c.get("core", i)): int(c.get("chip") or 0)
                 for i, c in enumerate(placement.get("cores") or ())}
    return {"verdict": verdict(placement, design_rules),
            "fidelity": fidelity(simulations, placement.get("quantization")),
            "utilization": utilization(placement),
            "traffic_matrix": traffic_matrix(core_pairs, core_chip, samples, time_steps),
            "placement": placement_record(placement)}
