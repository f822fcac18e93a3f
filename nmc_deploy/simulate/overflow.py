"""Fixed-point overflow and quantization per population, as data and as one-line warnings
(pure).

The quantizer records per population the threshold mantissa it chose (``choice`` "auto",
"override" for ``--vth-mant``, "integer" for max-pool ORs, "li" for readouts), the worst
case of its state and the weights rounded to zero
(``program.metadata["quantization"]["populations"]``, :mod:`~nmc_deploy.compile.scale`);
the reference simulator counts, per population, the steps x samples x neurons where the
current wrapped (``u_wraps``) and where the voltage reached its saturation bound
(``v_saturations``) in ``stats["populations"]``. The fidelity table
(:func:`~nmc_deploy.simulate.fidelity.fidelity_summary` with the program) joins the two per
population; :func:`overflow_lines` gives the warnings ``simulate`` prints.
"""
from __future__ import annotations

__all__ = ["overflow_lines"]


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
        elif q.get("choice") == "auto" and "headroom" in q and q["headroom"] is None:
            hint = ("its recurrent spike counts exceed what its worst case assumed (compile "
                    "warned); lower the recurrent weights or compile with --spikes single")
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
