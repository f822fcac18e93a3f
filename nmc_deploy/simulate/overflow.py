"""Fixed-point overflow and quantization per population, as data and as one-line warnings
(pure).

The quantizer records per population the threshold mantissa it chose (``choice`` "auto",
"override" for ``--vth-mant``, "integer" for max-pool ORs, "li" for readouts), the worst
case of its state and the weights rounded to zero
(``program.metadata["quantization"]["populations"]``, :mod:`~nmc_deploy.compile.scale`);
the reference simulator counts, per population, the steps x samples x neurons where the
current wrapped (``u_wraps``) and where the voltage reached its saturation bound
(``v_saturations``) in ``stats["populations"]``. :func:`quantization_rows` joins the two
(and, with a float run, the float-vs-fixed spike mismatches and the largest LI voltage
error); :func:`overflow_lines` gives the warnings ``simulate`` prints.
"""
from __future__ import annotations

import numpy as np

__all__ = ["quantization_rows", "overflow_lines"]


def quantization_rows(program, fixed, flt=None) -> dict[str, dict]:
    """Per population of ``program``: its scale (``vth_mant``, ``choice``, ``headroom``: the
    limit over the worst case, >= 1 means it cannot overflow), ``zeroed_weights`` (incoming
    weights rounded to 0), ``u_wraps`` and ``v_saturations`` of the fixed-point run
    ``fixed`` (a :class:`~.result.SimulationResult` of the reference; None for Lava, which
    does not count them), and with the float run ``flt``: ``float_vs_fixed`` spike
    mismatches (steps x samples x neurons) and, for LI populations, ``max_voltage_error``
    (float units)."""
    scales = program.metadata.get("quantization", {}).get("populations", {})
    counts = {e["name"]: e for e in fixed.stats.get("populations", [])}
    rows: dict[str, dict] = {}
    for pop in program.populations:
        q = scales.get(pop.name, {})
        c = counts.get(pop.name, {})
        row = {"vth_mant": q.get("vth_mant"), "choice": q.get("choice"),
               "headroom": q.get("headroom"), "zeroed_weights": q.get("zeroed_weights"),
               "u_wraps": c.get("u_wraps"), "v_saturations": c.get("v_saturations")}
        if flt is not None and pop.name in fixed.spikes and pop.name in flt.spikes:
            row["float_vs_fixed"] = int(np.count_nonzero(fixed.spikes[pop.name]
                                                         != flt.spikes[pop.name]))
        scale = fixed.voltage_scales.get(pop.name)
        if flt is not None and scale and pop.name in flt.voltages:
            row["max_voltage_error"] = float(np.max(np.abs(
                fixed.voltages[pop.name] / scale - flt.voltages[pop.name]), initial=0.0))
        rows[pop.name] = row
    return rows


def overflow_lines(program, stats: dict) -> list[str]:
    """One warning per population whose current wrapped or voltage saturated in the run
    whose ``stats`` are given (none when nothing overflowed), with the counts and the fix:
    with ``--vth-mant`` lower it or drop the override; with the automatic scale the inputs
    went beyond the bound it was chosen for (longer or larger than the program's)."""
    scales = program.metadata.get("quantization", {}).get("populations", {})
    lines = []
    for e in stats.get("populations", []):
        wraps, sats = e.get("u_wraps") or 0, e.get("v_saturations") or 0
        if not (wraps or sats):
            continue
        q = scales.get(e["name"], {})
        if q.get("choice") == "override":
            hint = f"lower --vth-mant (now {q.get('vth_mant')}) or drop the override"
        elif q.get("choice") == "auto" and q.get("headroom", 1) < 1:
            hint = (f"its worst case overflows even at mantissa {q.get('vth_mant')} (compile "
                    "warned); scale the layer's weights down or prune it")
        elif q.get("choice") == "auto":
            hint = ("the inputs exceed the worst case the scale was chosen for "
                    f"({program.time_steps} steps, inputs up to {program.input_levels}); "
                    "compile with a lower --vth-mant")
        else:
            hint = "lower --vth-mant"
        lines.append(f"warning: {e['name']}: current wraps ({wraps}), voltage saturations "
                     f"({sats}) in {stats.get('samples', '?')} samples; {hint}")
    if not lines and (stats.get("u_wraps") or stats.get("v_saturations")):  # no per-pop counts
        lines.append(f"warning: fixed-point overflow: current wraps ({stats['u_wraps']}), "
                     f"voltage saturations ({stats['v_saturations']}); lower --vth-mant")
    return lines
