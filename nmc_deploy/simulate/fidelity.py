"""Fidelity of a simulation, per population: float vs fixed point, reference vs Lava (pure).

:func:`fidelity_summary` compares up to three runs of the same samples (each a
:class:`~nmc_deploy.simulate.result.SimulationResult`):

* ``float``: the float64 model of the graph (``simulate_float``), None for a netx build;
* ``fixed``: the fixed-point program (the reference simulator, or Lava when only Lava ran);
* ``lava``: Lava's run, when it ran next to the reference (``simulate --compare``).

Per population: the fixed run's spikes (relays: nonzero payloads), the entries
(step x sample x neuron) where float and fixed spikes differ, and those where reference and
Lava differ; LI populations (voltages, not spikes) get the largest |float - fixed| voltage in
float units instead, relays (graded payloads in different units) no float comparison. Outputs:
how many samples' predictions agree float vs fixed (and fixed vs Lava), the largest
|float - fixed| of the graph's per-step outputs, and accuracies when labels are given.
"""
from __future__ import annotations

import numpy as np

from .result import accuracy

__all__ = ["fidelity_summary", "format_fidelity"]


def _population_rows(flt, fixed, lav) -> list[dict]:
    rows = []
    for name, s in fixed.spikes.items():
        rows.append({"population": name, "kind": "spikes", "entries": int(s.size),
                     "spikes": int(np.count_nonzero(s)),
                     "float_vs_fixed": (int(np.count_nonzero(flt.spikes[name] != s))
                                        if flt is not None and name in flt.spikes else None),
                     "reference_vs_lava": (int(np.count_nonzero(lav.spikes[name] != s))
                                           if lav is not None and name in lav.spikes else None)})
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
            row["max_voltage_error"] = float(np.max(np.abs(v / scale - flt.voltages[name]),
                                                    initial=0.0))
        rows.append(row)
    return rows


def fidelity_summary(flt, fixed, lav=None, labels=None) -> dict:
    """Per-population and output fidelity of ``fixed`` against ``flt`` (float model, or
    None) and ``lav`` (Lava next to the reference, or None); accuracies with ``labels``."""
    rows = _population_rows(flt, fixed, lav)
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


def format_fidelity(summary: dict, fixed_name: str = "reference") -> str:
    """The per-population table and the output lines ``simulate`` prints."""
    rows = summary["populations"]
    width = max([len(r["population"]) for r in rows] + [len("population")])
    head = (f"{'population':<{width}}  {'kind':<8} {'entries':>12} {'spikes':>10} "
            f"{'float≠fixed':>12} {'ref≠Lava':>9}")
    lines = [f"fidelity ({summary['samples']} samples; entries = steps x samples x neurons; "
             f"fixed point: {fixed_name})", head, "-" * len(head)]
    for r in rows:
        ff = r["float_vs_fixed"]
        if "max_voltage_error" in r:
            ff_text = f"{r['max_voltage_error']:.3g} max"
        else:
            ff_text = _cell(ff)
        lines.append(f"{r['population']:<{width}}  {r['kind']:<8} {r['entries']:>12,} "
                     f"{_cell(r['spikes']):>10} {ff_text:>12} "
                     f"{_cell(r['reference_vs_lava']):>9}")
    lines.append(f"{'total':<{width}}  {'':<8} {sum(r['entries'] for r in rows):>12,} "
                 f"{sum(r['spikes'] or 0 for r in rows):>10,} "
                 f"{_cell(summary['float_vs_fixed']):>12} "
                 f"{_cell(summary['reference_vs_lava']):>9}")
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
