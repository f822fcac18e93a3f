"""Render a cost report (the dict of :func:`~nmc_deploy.report.energy.estimate_costs`).

Three formats: a plain-text table (:func:`render_table`), JSON (:func:`render_json`) and one
self-contained HTML page with an inline-SVG bar chart and no external assets
(:func:`render_html`). :func:`write_report` writes any of them atomically.
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import NmcDeployError
from ..fileio import write_text_atomic

__all__ = ["FORMATS", "render_table", "render_json", "render_html", "write_report"]

#: Output formats of :func:`write_report`.
FORMATS = ("table", "json", "html")

_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")


# ---------------------------------------------------------------------------------------------
# number formatting
# ---------------------------------------------------------------------------------------------

def _num(x: float, decimals: int = 3) -> str:
    """``1,234.500``-style fixed point; scientific notation for very large or small values."""
    x = float(x)
    if x == 0:
        return "0"
    if not math.isfinite(x) or abs(x) >= 1e15 or abs(x) < 10.0 ** -decimals:
        return f"{x:.3e}"
    return f"{x:,.{decimals}f}"


def _count(x: float) -> str:
    """Counts per sample: integers without decimals, fractions with two."""
    x = float(x)
    return _num(x, 0) if x.is_integer() else _num(x, 2)


def _tick(x: float) -> str:
    """Compact axis label: ``0``, ``2,500``, ``1e7``, ``2.5e-3``."""
    if x == 0:
        return "0"
    if 1 <= abs(x) < 1e6 and float(x).is_integer():
        return f"{x:,.0f}"
    text = f"{x:.3g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


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
    out = [
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
    """The report as indented JSON (round-trips through :func:`json.loads`)."""
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; }
th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; border-top: 2px solid #999; }
.label { color: #666; font-size: 0.85em; }
.note { background: #fff8e1; padding: 0.5em 0.8em; border-left: 4px solid #f2c12e; }
svg text { font-family: inherit; font-size: 12px; }
"""


def render_html(report: dict) -> str:
    """A self-contained HTML page: summary, per-layer table, energy bar chart, sources.

    The chart is inline SVG with one bar group per layer and one colour per energy model
    (one ``<rect>`` per layer and model; the legend uses circles). No scripts, fonts or other
    external assets.
    """
    e = html.escape
    models = _models(report)
    ps = report["per_sample"]
    title = f"nmc-deploy cost report: {report['target']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{e(title)}</h1>",
        '<p class="note">Operation counts are <b>measured (simulated activity)</b>; energies and '
        "latency are <b>estimated (model)</b> from the cited per-operation figures.</p>",
        "<h2>Summary</h2>", "<table>",
    ]
    summary: list[tuple[str, str, str]] = [
        ("target", str(report["target"]), report.get("target_description", "")),
        ("backend", str(report["backend"]), ""),
        ("samples", str(report["samples"]), ""),
        ("time steps per sample", str(report.get("time_steps", "")), ""),
        ("pipeline depth", str(report.get("pipeline_depth", "")), ""),
        ("cores used", _cores_used(report), "compiled program"),
        ("synaptic ops / sample", _count(ps["synops"]), "measured (simulated activity)"),
        ("encoding MACs / sample", _count(ps["macs_encoding"]), "measured (simulated activity)"),
        ("ACs / sample", _count(ps["acs"]), "measured (simulated activity)"),
        ("attention ops / sample", _count(ps["attention_ops"]), "measured (simulated activity)"),
        ("spikes / sample", _count(ps["spikes"]), "measured (simulated activity)"),
        ("neuron updates / sample", _count(ps["neuron_updates"]),
         "measured (simulated activity)"),
    ]
    summary += [(f"energy / sample, {m}", f"{report['energy_per_sample_uj'][m]:.6g} µJ",
                 "estimated (model)") for m in models]
    summary.append(("latency / sample", f"{report['latency_per_sample_us']:.6g} µs",
                    "estimated (model)"))
    summary += [(name, value, "counted on the placement (hops: mesh model)")
                for name, value in _traffic_rows(report)]
    for key, value, label in summary:
        parts.append(f'<tr><th>{e(key)}</th><td class="num">{e(value)}</td>'
                     f'<td class="label">{e(label)}</td></tr>')
    parts += ["</table>", f'<p class="label">Latency model: {e(report.get("latency_model", ""))}'
              "</p>"]

    parts += ["<h2>Per layer (per sample)</h2>", "<table>", "<tr><th>layer</th><th>kind</th>"
              "<th>population</th><th>synops (measured)</th>"
              + "".join(f"<th>{e(m)} [pJ] (estimated)</th>" for m in models) + "</tr>"]
    for row in report["layers"]:
        parts.append(
            f"<tr><td>{e(row['name'])}</td><td>{e(row['kind'])}</td>"
            f"<td>{e(row.get('population', ''))}</td>"
            f'<td class="num">{_count(row["synops_per_sample"])}</td>'
            + "".join(f'<td class="num">{_num(row["energy_pj_per_sample"][m])}</td>'
                      for m in models) + "</tr>")
    parts.append('<tr class="total"><td>total</td><td></td><td></td>'
                 f'<td class="num">{_count(ps["synops"])}</td>'
                 + "".join(f'<td class="num">{_num(report["energy_per_sample_uj"][m] * 1e6)}</td>'
                           for m in models) + "</tr>")
    parts.append("</table>")

    system = report.get("system")
    if system:
        parts += [f"<h2>Chips (compiled): {system['chips_used']} of {system['chips']} used</h2>",
                  "<table>", "<tr><th>chip</th><th>position</th><th>cores</th>"
                  "<th>what binds its cores</th></tr>"]
        parts += [f"<tr><td>{c['chip']}</td><td>{e(str(tuple(c['position'])))}</td>"
                  f'<td class="num">{c["cores"]}/{system["cores_per_chip"]}</td>'
                  f"<td>{e(_binding_text(c))}</td></tr>" for c in system["per_chip"]]
        parts.append("</table>")
    deployment = _deployment_lines(report)
    if deployment:
        parts += ["<h2>Deployment choices (compiled)</h2>", "<pre>",
                  e("\n".join(line for line in deployment if line)), "</pre>"]
    parts += ["<h2>Energy per layer (estimated)</h2>", _energy_chart_svg(report)]

    if report.get("assumptions"):
        parts += ["<h2>Assumptions</h2>", "<ul>",
                  *[f"<li>{e(a)}</li>" for a in report["assumptions"]], "</ul>"]
    if report.get("sources"):
        parts.append("<h2>Sources</h2>")
        for name, cites in report["sources"].items():
            parts += [f"<h3>{e(name)}</h3>", "<ul>", *[f"<li>{e(c)}</li>" for c in cites],
                      "</ul>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _nice_step(span: float) -> float:
    """A 1/2/5 x 10^k step that cuts ``span`` into about five intervals."""
    raw = span / 5.0
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * power:
            return m * power
    return 10.0 * power


def _energy_chart_svg(report: dict) -> str:
    """Horizontal grouped bar chart: one group per layer, one bar (rect) per energy model."""
    e = html.escape
    models = _models(report)
    layers = report["layers"]
    values = [[float(row["energy_pj_per_sample"][m]) for m in models] for row in layers]
    positive = [v for vs in values for v in vs if v > 0]
    vmax = max(positive, default=1.0)
    vmin = min(positive, default=1.0)
    log_scale = vmax / vmin > 1000.0

    label_w = min(280, 36 + 7 * max((len(r["name"]) for r in layers), default=4))
    plot_w, bar_h, gap, top, bottom = 560, 14, 10, 40, 50
    group_h = max(1, len(models)) * bar_h + gap
    plot_h = max(1, len(layers)) * group_h
    width, height = label_w + plot_w + 30, top + plot_h + bottom

    if log_scale:
        lo = math.floor(math.log10(vmin))
        hi = max(math.ceil(math.log10(vmax)), lo + 1)
        ticks = [10.0 ** k for k in range(lo, hi + 1)]

        def x_of(v: float) -> float:
            if v <= 0:
                return 0.0
            return plot_w * (math.log10(v) - lo) / (hi - lo)
    else:
        step = _nice_step(vmax)
        top_value = step * math.ceil(vmax / step)
        ticks = [step * i for i in range(int(round(top_value / step)) + 1)]

        def x_of(v: float) -> float:
            return plot_w * max(v, 0.0) / top_value

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="estimated energy per sample and layer">']
    # legend (circles, so that every rect is a bar)
    x = label_w
    for i, m in enumerate(models):
        colour = _COLOURS[i % len(_COLOURS)]
        svg.append(f'<circle cx="{x + 6}" cy="16" r="6" fill="{colour}"/>'
                   f'<text x="{x + 16}" y="20">{e(m)}</text>')
        x += 30 + 7 * len(m)
    # grid and x axis
    x0, y_axis = label_w, top + plot_h
    for t in ticks:
        xt = x0 + x_of(t)
        svg.append(f'<line x1="{xt:.1f}" y1="{top}" x2="{xt:.1f}" y2="{y_axis}" '
                   f'stroke="#ddd"/><text x="{xt:.1f}" y="{y_axis + 16}" '
                   f'text-anchor="middle">{e(_tick(t))}</text>')
    svg.append(f'<line x1="{x0}" y1="{y_axis}" x2="{x0 + plot_w}" y2="{y_axis}" stroke="#333"/>')
    svg.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{y_axis}" stroke="#333"/>')
    axis = "energy per sample [pJ], estimated" + (" (log scale)" if log_scale else "")
    svg.append(f'<text x="{x0 + plot_w / 2:.1f}" y="{y_axis + 38}" text-anchor="middle">'
               f"{e(axis)}</text>")
    svg.append(f'<text x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">layer</text>')
    # bars
    for li, (row, vs) in enumerate(zip(layers, values)):
        y_group = top + li * group_h + gap / 2
        svg.append(f'<text x="{label_w - 6}" y="{y_group + len(models) * bar_h / 2 + 4:.1f}" '
                   f'text-anchor="end">{e(row["name"])}</text>')
        for mi, (m, v) in enumerate(zip(models, vs)):
            colour = _COLOURS[mi % len(_COLOURS)]
            svg.append(f'<rect class="bar" x="{x0}" y="{y_group + mi * bar_h:.1f}" '
                       f'width="{x_of(v):.2f}" height="{bar_h - 2}" fill="{colour}">'
                       f"<title>{e(row['name'])}, {e(m)}: {e(_num(v))} pJ/sample</title></rect>")
    svg.append("</svg>")
    return "\n".join(svg)


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
