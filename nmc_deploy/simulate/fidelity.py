"""Fidelity of a simulation, per population: float vs fixed point, reference vs Lava (pure).

:func:`fidelity_summary` compares up to three runs of the same samples (each a
:class:`~nmc_deploy.simulate.result.SimulationResult`):

* ``float``: the float64 model of the graph (``simulate_float``), None for a netx build;
* ``fixed``: the fixed-point program (the reference simulator, or Lava when only Lava ran);
* ``lava``: Lava's run, when it ran next to the reference (``simulate --compare``).

Per population: the fixed run's spikes (relays: nonzero payloads), the entries
(step x sample x neuron) where float and fixed spikes differ, and those where reference and
Lava differ; the largest |float - fixed| membrane voltage in float units (LI populations
always, over all entries; spiking ones when both runs kept their membranes,
``membranes=True``: the voltage after the step's reset, over the entries whose neuron has
spiked alike in both runs so far, i.e. the state's quantization error and not the jump a
different spike causes after); relays (graded payloads in different units) get no float
comparison. With the ``program``, its quantization per population
(:mod:`~nmc_deploy.compile.scale`: the threshold mantissa and how it was chosen, incoming
weights rounded to zero) and the fixed
run's overflow counts (current wraps, voltage saturations: the reference counts them, Lava
does not). Outputs: how many samples' predictions agree float vs fixed (and fixed vs Lava),
the largest |float - fixed| of the graph's per-step outputs, and accuracies when labels are
given.
"""
from __future__ import annotations

import numpy as np

from .result import accuracy

__all__ = ["fidelity_summary", "format_fidelity", "snntorch_double_reset_lines",
           "keep_membranes", "per_neuron_membranes", "vth_cell", "overflow_cell",
           "MEMBRANE_ENTRIES"]

# Spiking populations' membranes are kept (4 bytes per entry, in each of the float and the
# fixed run) for the fidelity table's largest voltage error while their entries (steps x
# samples x neurons) stay below this; above it the column shows "-" for spiking layers.
MEMBRANE_ENTRIES = 25_000_000


def keep_membranes(program, x) -> bool:
    """Whether the float and fixed runs of the inputs ``x`` (images or sequences) keep
    the spiking populations' membranes: their entries are at most :data:`MEMBRANE_ENTRIES`."""
    steps = x.shape[1] if x.ndim > 1 + len(program.input_shape) else program.time_steps
    neurons = sum(p.size for p in program.populations if p.spiking)
    return len(x) * steps * neurons <= MEMBRANE_ENTRIES



def per_neuron_membranes(membranes: dict, program, fp) -> dict:
    """The fixed run's kept ``membranes`` (divided by each population's scalar ``scale``)
    in float units per neuron: a population with per-neuron thresholds has a per-neuron
    scale ``lam_i = (64 vth + ge) / theta_i`` (the quantizer folds theta into the weights),
    of which ``scale`` is the largest, so ``v / lam_i = (v / scale) * scale / lam_i``.
    Returns a new dict; populations with one threshold are passed through."""
    from ..loihi.constants import LAVA_LIF

    fixed = {p.name: p for p in program.populations}
    out = dict(membranes)
    for p in fp.populations:
        theta = np.asarray(p.v_threshold, np.float64)
        q = fixed.get(p.name)
        if p.name not in out or q is None or theta.ndim == 0 or np.all(theta == theta.flat[0]):
            continue
        lam = ((2 ** LAVA_LIF.vth_shift) * q.vth + (1 if p.threshold_ge else 0)) / theta
        out[p.name] = (out[p.name] * (q.scale / lam)).astype(np.float32)
    return out


def _max_error(fixed_v: np.ndarray, float_v: np.ndarray, scale: float = 1.0) -> float:
    return float(np.max(np.abs(np.asarray(fixed_v, np.float64) / scale - float_v),
                        initial=0.0))


def _membrane_error(fixed_v, float_v, fixed_s, float_s) -> float:
    """The largest |float - fixed| membrane voltage (float units) over the (T, B, n) entries
    whose neuron has spiked alike in both runs up to and including that step: the
    quantization error of the state, not the θ-sized jump a different spike causes after."""
    alike = np.logical_and.accumulate(fixed_s == float_s, axis=0)
    diff = np.abs(np.asarray(fixed_v, np.float64) - float_v)
    return float(np.max(diff, where=alike, initial=0.0))


def _population_rows(flt, fixed, lav) -> list[dict]:
    rows = []
    for name, s in fixed.spikes.items():
        rows.append({"population": name, "kind": "spikes", "entries": int(s.size),
                     "spikes": int(np.count_nonzero(s)),
                     "float_vs_fixed": (int(np.count_nonzero(flt.spikes[name] != s))
                                        if flt is not None and name in flt.spikes else None),
                     "reference_vs_lava": (int(np.count_nonzero(lav.spikes[name] != s))
                                           if lav is not None and name in lav.spikes else None)})
        if flt is not None and name in fixed.membranes and name in flt.membranes:
            rows[-1]["max_voltage_error"] = _membrane_error(
                fixed.membranes[name], flt.membranes[name], s, flt.spikes[name])
    for name, p in fixed.payloads.items():
        rows.append({"population": name, "kind": "payloads", "entries": int(p.size),
                     "spikes": int(np.count_nonzero(p)), "float_vs_fixed": None,
                     "reference_vs_lava": (int(np.count_nonzero(lav.payloads[name] != p))
                                           if lav is not None and name in lav.payloads
                                           else None)})
    for name, v in fixed.voltages.items():
        row = {"population": name, "kind": "voltages", "entries": int(v.size), "spikes": None,
               "float_vs_fixed": None,
               "reference_vs_lava": (int(np.count_nonzero(lav.voltages[name] != v))
                                     if lav is not None and name in lav.voltages else None)}
        scale = fixed.voltage_scales.get(name)
        if flt is not None and name in flt.voltages and scale:
            row["max_voltage_error"] = _max_error(v, flt.voltages[name], scale)
        rows.append(row)
    return rows


def _add_quantization(rows: list[dict], program, stats: dict) -> None:
    """Each row gains its population's ``vth_mant``, ``choice``, ``headroom`` (the limit over
    the worst case: >= 1 cannot overflow), ``zeroed_weights`` (from the
    program's quantization record) and ``u_wraps``, ``v_saturations`` (from the fixed run's
    stats; None where it did not count them)."""
    scales = program.metadata.get("quantization", {}).get("populations", {})
    counts = {e["name"]: e for e in stats.get("populations", [])}
    for r in rows:
        q, c = scales.get(r["population"], {}), counts.get(r["population"], {})
        r.update({"vth_mant": q.get("vth_mant"), "choice": q.get("choice"),
                  "headroom": q.get("headroom"), "zeroed_weights": q.get("zeroed_weights"),
                  "u_wraps": c.get("u_wraps"), "v_saturations": c.get("v_saturations")})


def fidelity_summary(flt, fixed, lav=None, labels=None, program=None) -> dict:
    """Per-population and output fidelity of ``fixed`` against ``flt`` (float model, or
    None) and ``lav`` (Lava next to the reference, or None); accuracies with ``labels``;
    quantization and overflow columns with the ``program`` that ran."""
    rows = _population_rows(flt, fixed, lav)
    if program is not None:
        _add_quantization(rows, program, fixed.stats)
    n = int(len(fixed.logits))
    out: dict = {"samples": n, "populations": rows,
                 "float_vs_fixed": (None if flt is None else
                                    int(sum(r["float_vs_fixed"] or 0 for r in rows))),
                 "reference_vs_lava": (None if lav is None else
                                       int(sum(r["reference_vs_lava"] or 0 for r in rows)))}
    agree = {}
    if flt is not None:
        agree["float_vs_fixed"] = int(np.sum(flt.predictions == fixed.predictions))
        if flt.output_steps is not None and fixed.output_steps is not None:
            out["max_output_error"] = float(np.max(np.abs(flt.output_steps
                                                          - fixed.output_steps), initial=0.0))
    if lav is not None:
        agree["fixed_vs_lava"] = int(np.sum(lav.predictions == fixed.predictions))
    out["predictions_agree"] = agree
    if labels is not None:
        acc = {"fixed": accuracy(fixed, labels)}
        if flt is not None:
            acc["float"] = accuracy(flt, labels)
        if lav is not None:
            acc["lava"] = accuracy(lav, labels)
        out["accuracy"] = acc
    return out


def _cell(v) -> str:
    return "-" if v is None else f"{v:,}"


def vth_cell(r: dict) -> str:
    """The threshold mantissa, ``*`` when the --vth-mant override set it."""
    if r.get("vth_mant") is None or r.get("choice") == "li":
        return "-"
    if r.get("choice") == "integer":  # a max-pool OR: integer threshold, no scale
        return "int"
    return f"{r['vth_mant']}{'*' if r.get('choice') == 'override' else ''}"


def overflow_cell(r: dict) -> str:
    """Current wraps / voltage saturations of the fixed run ("-": not counted)."""
    wraps, sats = r.get("u_wraps"), r.get("v_saturations")
    if wraps is None and sats is None:
        return "-"
    return f"{wraps or 0:,}/{sats or 0:,}"


def _total(rows: list[dict], key: str):
    vals = [r.get(key) for r in rows if r.get(key) is not None]
    return int(sum(vals)) if vals else None


def format_fidelity(summary: dict, fixed_name: str = "reference") -> str:
    """The per-population table and the output lines ``simulate`` prints."""
    rows = summary["populations"]
    width = max([len(r["population"]) for r in rows] + [len("population")])
    head = (f"{'population':<{width}}  {'kind':<8} {'vth':>5} {'zeroed':>7} {'entries':>12} "
            f"{'spikes':>10} {'float≠fixed':>12} {'max |dv|':>9} {'ref≠Lava':>9} "
            f"{'wrap/sat':>9}")
    lines = [f"fidelity ({summary['samples']} samples; entries = steps x samples x neurons; "
             f"fixed point: {fixed_name})", head, "-" * len(head)]
    for r in rows:
        dv = r.get("max_voltage_error")
        lines.append(f"{r['population']:<{width}}  {r['kind']:<8} {vth_cell(r):>5} "
                     f"{_cell(r.get('zeroed_weights')):>7} {r['entries']:>12,} "
                     f"{_cell(r['spikes']):>10} {_cell(r['float_vs_fixed']):>12} "
                     f"{'-' if dv is None else f'{dv:.3g}':>9} "
                     f"{_cell(r['reference_vs_lava']):>9} {overflow_cell(r):>9}")
    lines.append(f"{'total':<{width}}  {'':<8} {'':>5} "
                 f"{_cell(_total(rows, 'zeroed_weights')):>7} "
                 f"{sum(r['entries'] for r in rows):>12,} "
                 f"{sum(r['spikes'] or 0 for r in rows):>10,} "
                 f"{_cell(summary['float_vs_fixed']):>12} {'':>9} "
                 f"{_cell(summary['reference_vs_lava']):>9} "
                 f"{overflow_cell({k: _total(rows, k) for k in ('u_wraps', 'v_saturations')}):>9}")
    lines.append("vth: threshold mantissa (* set by --vth-mant); zeroed: incoming weights "
                 "rounded to 0; spikes: nonzero outputs (messages; a multi-spike count is one); "
                 "max |dv|: largest |float - fixed| voltage, float units (spiking layers: while "
                 "the neuron's own spikes agree; differences upstream included); wrap/sat: "
                 "current wraps / voltage saturations")
    n, agree = summary["samples"], summary["predictions_agree"]
    parts = []
    if "float_vs_fixed" in agree:
        parts.append(f"float vs fixed {agree['float_vs_fixed']} of {n}")
    if "fixed_vs_lava" in agree:
        parts.append(f"fixed vs Lava {agree['fixed_vs_lava']} of {n}")
    if parts:
        lines.append("predictions agree: " + ", ".join(parts))
    if "max_output_error" in summary:
        lines.append(f"largest |float - fixed| of the graph outputs (per step): "
                     f"{summary['max_output_error']:.6g}")
    if summary.get("accuracy"):
        lines.append("accuracy: " + ", ".join(f"{k} {100 * v:.2f} %"
                                              for k, v in summary["accuracy"].items()))
    if summary["float_vs_fixed"] is None:
        lines.append("float: not compared (no float graph: a netx build is fixed point only)")
    return "\n".join(lines)


def snntorch_double_reset_lines(fp, flt) -> list[str]:
    """Warnings for snnTorch's ``reset_delay=False`` subtract rule, which equals our
    same-step subtraction only while v after the subtraction stays at or below θ: where it
    does not, snnTorch subtracts θ again in the next step (its ``reset`` of the post-reset
    v) and cancels that step's own subtraction, so it skips a spike we emit whenever
    0 < v - θ <= θ then (tests/interop/test_tool_runs.py). One line per subtract-reset
    population of the float program ``fp`` whose kept membranes (``flt.membranes``) exceed
    θ after the reset, with the count; when the membranes were not kept, one line saying
    so."""
    if not flt.membranes and any(getattr(p, "reset", "") == "subtract" for p in fp.populations):
        return [f"note: snnTorch reset_delay=False check skipped: membranes not kept (more "
                f"than {MEMBRANE_ENTRIES:,} entries); simulate fewer samples to run it"]
    lines = []
    for pop in fp.populations:
        v = flt.membranes.get(pop.name)
        if v is None or getattr(pop, "reset", "zero") != "subtract":
            continue
        above = int(np.count_nonzero(v > np.broadcast_to(pop.v_threshold, v.shape[-1:])))
        if above:
            lines.append(f"warning: {pop.name}: v stays above the threshold after the "
                         f"subtraction in {above:,} entries, where snnTorch's "
                         "reset_delay=False subtracts it again a step later and can skip a "
                         "spike (its run may differ from there on); if the model keeps "
                         "snnTorch's default reset_delay=True, compile with --reset "
                         "subtract-delayed")
    return lines
