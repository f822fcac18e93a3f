"""Render a cost report (the dict of :func:`~nmc_deploy.report.energy.estimate_costs`).

Three formats: a plain-text table (:func:`render_table`; the verdict and fidelity first), JSON
(:func:`render_json`) and the one-page HTML report (:func:`render_html`, built by
:mod:`nmc_deploy.report.page`). :func:`write_report` writes any of them atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import NmcDeployError
from ..fileio import write_text_atomic
from .op_counts import op_count_rows
from .svg import count as _count, num as _num  # one format for the table and the page

__all__ = ["FORMATS", "render_table", "render_json", "render_html", "write_report"]

#: Output formats of :func:`write_report`.
FORMATS = ("table", "json", "html")


def _models(report: dict) -> list[str]:
    return list(report.get("energy_per_sample_uj", {}))


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Aligned text columns separated by two spaces."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        out = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(out).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]]


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------

def render_table(report: dict) -> str:
    """Plain-text report: per-layer table, totals, energy and latency per sample, sources.

    Parameters
    ----------
    report
        The dict returned by :func:`~nmc_deploy.report.energy.estimate_costs`.

    Returns
    -------
    str
        Lines ending in ``"\\n"``; columns aligned with spaces.
    """
    models = _models(report)
    ps = report["per_sample"]
    out = [*_verdict_lines(report), *([""] if "verdict" in report else []),
        f"nmc-deploy cost report: target {report['target']}, backend {report['backend']}",
        f"{report['samples']} samples x {report.get('time_steps', '?')} time steps "
        f"(+{report.get('pipeline_depth', 0)} pipeline steps), {_cores_used(report)}",
        "Counts are measured (simulated activity); energies and latency are estimated (model).",
        "",
    ]
    header = ["layer", "kind", "population", "synops/sample",
              *[f"{m} [pJ/sample]" for m in models]]
    rows = [[row["name"], row["kind"], row.get("population", ""),
             _count(row["synops_per_sample"]),
             *[_num(row["energy_pj_per_sample"][m]) for m in models]]
            for row in report["layers"]]
    tok = report.get("token_selection")
    if tok:  # embedded-core work: MACs, not synaptic ops
        rows.append(["token selectors", "embedded", "", "-",
                     *[_num(tok["energy_pj_per_sample"][m]) for m in models]])
    totals = ["total", "", "", _count(ps["synops"]),
              *[_num(report["energy_per_sample_uj"][m] * 1e6) for m in models]]
    grid = _grid(header, [*rows, totals], [False, False, False, True, *[True] * len(models)])
    out += [*grid[:-1], grid[1], grid[-1], ""]

    out.append("Per sample (measured): "
               f"synops {_count(ps['synops'])}, encoding MACs {_count(ps['macs_encoding'])}, "
               f"ACs {_count(ps['acs'])}, attention ops {_count(ps['attention_ops'])}, "
               f"spikes {_count(ps['spikes'])}, neuron updates {_count(ps['neuron_updates'])}"
               + (f" (active {_count(ps['active_updates'])})" if "active_updates" in ps else ""))
    out += [f"  {q}: {v}  [{lab}]" for q, v, lab in op_count_rows(report)]
    if tok:
        out += ["", "Token selection (counts measured, energy estimated):"]
        for sel in tok["selectors"]:
            out.append(f"  {sel['name']}: scores {_count(sel['evaluated_tokens_per_sample'])} "
                       f"tokens, keeps {_count(sel['kept_tokens_per_sample'])}, "
                       f"{_count(sel['predictor_macs_per_sample'])} MACs per sample")
        if "synops_saved_per_sample" in tok:
            out.append(f"  synops per sample without selection "
                       f"{_count(tok['synops_without_selection_per_sample'])}, saved "
                       f"{_count(tok['synops_saved_per_sample'])} "
                       f"({100 * tok['synops_saved_fraction']:.1f} %)")
    out += _chip_lines(report)
    out += ["", "Energy per sample (estimated):"]
    width = max((len(m) for m in models), default=0)
    for m in models:
        desc = report.get("energy_models", {}).get(m, {}).get("description", "")
        out.append(f"  {m.ljust(width)}  {report['energy_per_sample_uj'][m]:>12.6g} µJ"
                   + (f"  ({desc})" if desc else ""))
    out += ["", f"Latency per sample (estimated): {report['latency_per_sample_us']:.6g} µs",
            f"  {report.get('latency_model', '')}"]
    if report.get("assumptions"):
        out += ["", "Assumptions:", *[f"  - {a}" for a in report["assumptions"]]]
    if report.get("sources"):
        out += ["", "Sources:"]
        for name, cites in report["sources"].items():
            out.append(f"  {name}:")
            out += [f"    - {c}" for c in cites]
    return "\n".join(out) + "\n"


def _verdict_lines(report: dict) -> list[str]:
    """The verdict and fidelity lines that open the text report (none without them)."""
    v, f = report.get("verdict"), report.get("fidelity")
    out = [] if v is None else [f"Verdict: {v['text']}"]
    if f is None:
        return out
    acc = []
    for kind, name in (("float", "float"), ("fixed_reference", "fixed (reference)"),
                       ("fixed_lava", "fixed (Lava)")):
        a = f["accuracy"].get(kind)
        acc.append(f"{name} {100 * a['value']:.2f} % ({a['samples']} samples)"
                   if isinstance(a, dict) else f"{name} {a}")
    out.append("Fidelity: accuracy " + ", ".join(acc))
    m = f["mismatches"]
    out.append(f"  spike mismatches reference vs Lava: {m['total']:,} of "
               f"{m['spikes_compared'] or 0:,} spikes ({m['samples']} samples), prediction "
               f"mismatches {m['prediction_mismatches']}" if isinstance(m, dict) else
               f"  spike mismatches reference vs Lava: {m}")
    q = f["quantization"]
    if isinstance(q, dict):
        out.append(f"  quantization ({q['weight_bits']}-bit weights): {q['zeroed_weights'] or 0:,}"
                   f" of {q['float_synapses'] or 0:,} weights zeroed, "
                   f"{q['clipped_weights'] or 0:,} clipped, {q['clipped_biases'] or 0:,} biases "
                   "clipped")
    per = f.get("per_layer")
    if isinstance(per, dict) and per["rows"]:
        head = f"  float vs fixed ({per['samples']} samples, {per['file']}): "
        if per["float_vs_fixed"] is None:  # a netx build: no float model
            out.append(head + "not compared (no float graph)")
        else:
            worst = max(per["rows"], key=lambda r: r["float_vs_fixed"] or 0)
            errs = [r["max_voltage_error"] for r in per["rows"]
                    if r["max_voltage_error"] is not None]
            out.append(head + f"{per['float_vs_fixed']:,} spike mismatches, most in "
                       f"{worst['population']} ({worst['float_vs_fixed'] or 0:,})"
                       + (f"; largest membrane error {max(errs):.3g}" if errs else ""))
    return out


def _cores_used(report: dict) -> str:
    """``"3 cores used"``, ``"3 cores used (of 128 on one loihi2 chip)"`` or ``"129 cores used
    on 2 of 8 chips (kapoho_point: loihi2 chips of 128 cores)"``."""
    text = f"{report['cores_used']} cores used"
    system = report.get("system")
    if system is None:
        return text
    if system["chips"] == 1:
        return f"{text} (of {system['cores_per_chip']} on one {system['chip']} chip)"
    return (f"{text} on {system['chips_used']} of {system['chips']} chips ({system['name']}: "
            f"{system['chip']} chips of {system['cores_per_chip']} cores)")


def _binding_text(chip: dict) -> str:
    """What binds one chip's cores, e.g. ``"synapse memory on 97 of 128 cores (mean 84.0 %)"``."""
    share = 100 * chip["utilization"].get(chip["binding"], 0.0)
    return (f"{chip['binding'].replace('_', ' ')} on {chip['binding_cores']} of "
            f"{chip['cores']} cores (mean {share:.1f} %)")


def _traffic_rows(report: dict) -> list[tuple[str, str]]:
    """(name, value) of the mesh traffic per step, and the longest route."""
    traffic = report.get("traffic")
    if not traffic:
        return []
    step = traffic["per_step"]
    route = traffic["longest_route"]
    return [("messages / step", _num(step["messages"], 2)),
            ("messages between chips / step", _num(step["messages_between_chips"], 2)),
            ("tile hops / step (E-W, N-S)",
             f"{_num(step['tile_hops_ew'], 2)}, {_num(step['tile_hops_ns'], 2)}"),
            ("chip hops / step", _num(step["chip_hops"], 2)),
            ("longest route (E-W, N-S tile hops; chip hops)",
             f"{route['tile_hops_ew']}, {route['tile_hops_ns']}; {route['chip_hops']}")]


def _deployment_lines(report: dict) -> list[str]:
    """Both weight-storage answers, both residual forms and the attention units (compiled),
    as text lines."""
    out = []
    ws = report.get("weight_sharing")
    if ws:
        out += ["", f"Shared weights (compiled): {ws['weights']:,} stored weights for "
                f"{ws['synapses']:,} synapses; '{ws['written']}' written"]
        for mode, c in ws["forms"].items():
            out.append(f"  sharing {mode}: " + (c["error"] if "error" in c else
                       f"{c['cores']} cores, {c['synapses_stored']:,} synapses on cores, "
                       f"{c['synapse_memory_bits'] // 8:,} B synapse memory"))
    res = report.get("residual")
    if res:
        out += ["", f"Residual stream (compiled, deployment decision 3): {res['relays']} "
                f"relays in relay form; '{res['written']}' written"]
        for form, c in res["forms"].items():
            out.append(f"  {form}: " + (c["error"] if "error" in c else
                       f"{c['cores']} cores, {c['synapses']:,} synapses, "
                       f"{c['synapse_memory_bits'] // 8:,} B synapse memory, {c['groups']} "
                       f"groups, largest out-degree {c['max_out_degree']}, pipeline depth "
                       f"{c['pipeline_depth']}"))
    att = report.get("attention_deployment")
    if att:
        text = (f"{att['units']} attention unit(s) on programmable cores (largest: in-axons "
                f"{att['max_in_axons']}, out-axons {att['max_out_axons']}, "
                f"{att['max_ops_per_step']} ops/step)") if att["units"] else \
            "attention on embedded x86 cores (no graded spikes): " + ", ".join(att["on_host"])
        out += ["", f"Attention (compiled, deployment decision 7): {text}"]
    return out


def _chip_lines(report: dict) -> list[str]:
    """The per-chip lines (compiled) and the mesh traffic (counted) of the text report."""
    out = _deployment_lines(report)
    system = report.get("system")
    if system:
        out += ["", f"Chips (compiled): {system['chips_used']} of {system['chips']} used, "
                f"{system['cores_per_chip']} cores per chip; what binds each chip's cores:"]
        out += [f"  chip {c['chip']} at {tuple(c['position'])}: {c['cores']}/"
                f"{system['cores_per_chip']} cores, binds {_binding_text(c)}"
                for c in system["per_chip"]]
    rows = _traffic_rows(report)
    if rows:
        out += ["", "Mesh traffic (counted on the placement; hops from the mesh model):"]
        out += [f"  {name}: {value}" for name, value in rows]
    return out


def render_json(report: dict) -> str:
    """The report as indented JSON (round-trips through :func:`json.loads`); a list of
    numbers or strings stays on one line (the traffic matrix's columns are long)."""
    return _dump(report, 0) + "\n"


def _dump(x: Any, level: int) -> str:
    """JSON text of ``x``: objects and lists of objects indented by two spaces per level,
    lists of scalars on one line."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(x, dict) and x:
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_dump(v, level + 1)}"
                 for k, v in x.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(x, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in x):
        return "[\n" + ",\n".join(inner + _dump(v, level + 1) for v in x) + f"\n{pad}]"
    return json.dumps(x, ensure_ascii=False, allow_nan=False, separators=(",", ": "))


def render_html(report: dict) -> str:
    """The one-page deployment report as self-contained HTML
    (:func:`~nmc_deploy.report.page.render_page`)."""
    from .page import render_page

    return render_page(report)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------

def write_report(report: dict, fmt: str, path: str | os.PathLike[str]) -> Path:
    """Render ``report`` as ``fmt`` (one of :data:`FORMATS`) and write it to ``path`` atomically.

    The text goes to a temporary file in the same directory, which then replaces ``path``
    (:func:`~nmc_deploy.fileio.write_text_atomic`), so readers never see a half-written
    report. Missing parent directories are created.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    NmcDeployError
        ``fmt`` is not one of :data:`FORMATS`.
    """
    renderers: dict[str, Any] = {"table": render_table, "json": render_json,
                                 "html": render_html}
    if fmt not in renderers:
        raise NmcDeployError(f"report format '{fmt}': unknown; choose one of {', '.join(FORMATS)}")
    text = renderers[fmt](report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, text)
