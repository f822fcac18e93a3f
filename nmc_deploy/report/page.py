"""The one-page deployment report as self-contained HTML (:func:`render_page`).

Sections, in this order, each a ``<section id=...>``: ``verdict`` (fits or not, N of M
cores on K chips, what binds), ``fidelity`` (float vs fixed point vs Lava, spike mismatches,
quantization losses), ``cost`` (energy per sample per model, latency with its critical core
and bound, traffic), ``energy`` (breakdown by term and by layer, linear bars), ``utilization``
(per-core heatmap by chip and tile), ``traffic`` (core-to-core and chip-to-chip matrices),
``placement`` (before/after), ``assumptions`` and ``sources``. The first three sit above the
fold (a 1280 x 900 px window). Inline SVG and CSS only; no scripts or external assets.
Charts: :mod:`nmc_deploy.report.svg`; the deployment keys: :mod:`nmc_deploy.report.deployment`.
"""
from __future__ import annotations

import html
from typing import Any

from ..simulate.fidelity import overflow_cell, vth_cell
from . import svg
from .op_counts import op_count_rows
from .svg import count as _count, num

__all__ = ["SECTIONS", "render_page"]

#: Section ids of the page, in order.
SECTIONS = ("verdict", "fidelity", "cost", "energy", "utilization", "traffic", "placement",
            "assumptions", "sources")
_MATRIX_CORES = 64  # up to this many cores one matrix cell per core pair, else bins
_MATRIX_BINS = 48
_e = html.escape

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       padding: 0.6em 1.2em; max-width: 1180px; color: #222; line-height: 1.35; font-size: 14px; }
h1 { font-size: 1.25em; margin: 0.2em 0; } h2 { font-size: 1.1em; margin: 0 0 0.4em 0; }
h3 { font-size: 1em; margin: 0.8em 0 0.3em 0; }
section { margin: 0.8em 0; } .meta { color: #666; margin: 0 0 0.5em 0; }
#verdict { padding: 0.6em 1em; border-radius: 6px; border-left: 8px solid; }
#verdict.fits { background: #eaf6ec; border-color: #2e7d32; }
#verdict.nofit { background: #fdecea; border-color: #c62828; }
.big { font-size: 1.6em; font-weight: 600; margin: 0; }
.top { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.top > section { margin: 0; padding: 0.5em 0.8em; background: #fafafa; border: 1px solid #e3e3e3;
                 border-radius: 6px; }
table { border-collapse: collapse; margin: 0.3em 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.15em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: bold; border-top: 2px solid #999; }
.label { color: #666; font-size: 0.85em; } .bad { color: #c62828; font-weight: 600; }
.good { color: #2e7d32; font-weight: 600; }
svg text { font-family: inherit; font-size: 11px; } svg text.small { font-size: 9px; }
svg text.val { fill: #444; font-size: 10px; }
details { margin: 0.3em 0; } summary { cursor: pointer; color: #345; }
"""


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * float(x):.2f} %"


def _rows(pairs) -> str:
    """``<tr><th>key</th><td>value</td><td class=label>note</td></tr>`` lines (text escaped)."""
    return "\n".join(f'<tr><th>{_e(k)}</th><td class="num">{_e(v)}</td>'
                     f'<td class="label">{_e(n)}</td></tr>' for k, v, n in pairs)


def _section(sid: str, title: str, body: list[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return "\n".join([f'<section id="{sid}"{attr}>', f"<h2>{_e(title)}</h2>", *body,
                      "</section>"])


# ------------------------------------------------------------------------- above the fold

def _verdict(report: dict) -> str:
    v = report.get("verdict")
    if not v:
        return _section("verdict", "Verdict", ["<p>no placement record: verdict not "
                                               "available</p>"])
    head, _, tail = v["text"].partition("; ")
    mark = "✔" if v["fits"] else "✘"
    bound = ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in v["bound"].items())
    lines = [f'<p class="big">{mark} {_e(head)}</p>']
    if tail:
        lines.append(f"<p><b>{_e(tail)}</b>. Cores bound per resource: {_e(bound)}.")
    t = v.get("tightest")
    if t:
        lines.append(f" Tightest core: {t['core']} at {_pct(t['share'])} of its "
                     f"{_e(t['resource'].replace('_', ' '))} limit.")
    lines.append("</p>")
    lines += [f'<p class="bad">{_e(p)}</p>' for p in v.get("problems", ())[:5]]
    return _section("verdict", "Verdict", lines, "fits" if v["fits"] else "nofit")


def _fidelity(report: dict) -> str:
    f = report.get("fidelity")
    if not f:
        return _section("fidelity", "Fidelity", ["<p>not run (no simulation records)</p>"])
    names = {"float": "float (graph, float64)", "fixed_reference": "fixed point (reference)",
             "fixed_lava": "fixed point (Lava)"}
    rows = []
    for kind, name in names.items():
        a = f["accuracy"].get(kind)
        if isinstance(a, dict):
            rows.append((name, _pct(a["value"]), f"{a['samples']} samples, {a['file']}"))
        else:
            rows.append((name, str(a), ""))
    out = ["<table>", "<tr><th>accuracy</th><th></th><th></th></tr>", _rows(rows), "</table>"]
    same = [r for r in f["runs"] if r.get("accuracy_fixed_lava") is not None]
    if same:
        r = same[0]
        out.append(f'<p class="label">on the same {r["samples"]} samples: float '
                   f'{_pct(r["accuracy_float"])}, reference {_pct(r["accuracy_fixed_reference"])}'
                   f', Lava {_pct(r["accuracy_fixed_lava"])}</p>')
    m = f["mismatches"]
    if isinstance(m, dict):
        cls = "good" if m["total"] == 0 else "bad"
        out.append(f'<p>Spike mismatches reference vs Lava: <span class="{cls}">'
                   f'{m["total"]:,}</span> of {m["spikes_compared"] or 0:,} spikes compared '
                   f'({len(m["per_population"])} populations, {m["samples"]} samples); '
                   f'prediction mismatches {m["prediction_mismatches"]}.</p>')
        worst = sorted(((v, k) for k, v in m["per_population"].items() if v), reverse=True)
        pops = "".join(f'<tr><td>{_e(k)}</td><td class="num">{v:,}</td></tr>'
                       for k, v in m["per_population"].items())
        if worst:
            out.append("<p>Most: " + _e(", ".join(f"{k} {v:,}" for v, k in worst[:4])) + "</p>")
        out.append(f"<details><summary>per population</summary><table>{pops}</table></details>")
    else:
        out.append(f"<p>Spike mismatches reference vs Lava: {_e(str(m))} "
                   "(<code>simulate --compare</code>)</p>")
    q = f["quantization"]
    if isinstance(q, dict):
        out.append(f"<p>Quantization ({q['weight_bits']}-bit weights): "
                   f"{q['zeroed_weights'] or 0:,} of {q['float_synapses'] or 0:,} weights "
                   f"rounded to zero ({_pct(q['zeroed_share'])}), {q['clipped_weights'] or 0:,} "
                   f"weights and {q['clipped_biases'] or 0:,} biases clipped"
                   + (f", decays rounded: {_e(str(q['decay_rounding']))}"
                      if q["decay_rounding"] else "") + ".</p>")
    else:
        out.append(f"<p>Quantization losses: {_e(str(q))}</p>")
    out.extend(_per_layer_table(f.get("per_layer")))
    return _section("fidelity", "Fidelity", out)


def _per_layer_table(per: Any) -> list[str]:
    """Float vs fixed point per layer (simulate's fidelity rows), folded."""
    if not isinstance(per, dict) or not per["rows"]:
        return []
    head = ("population", "vth", "zeroed", "spikes (messages)", "float≠fixed", "max |dv|",
            "ref≠Lava", "wrap/sat")

    def cell(v, fmt="{:,}"):
        return "-" if v is None else fmt.format(v)

    body = "".join(
        "<tr>" + f"<td>{_e(r['population'])}</td>" + "".join(
            f'<td class="num">{c}</td>' for c in (
                vth_cell(r), cell(r["zeroed_weights"]), cell(r["spikes"]),
                cell(r["float_vs_fixed"]), cell(r["max_voltage_error"], "{:.3g}"),
                cell(r["reference_vs_lava"]), overflow_cell(r)))
        + "</tr>" for r in per["rows"])
    ths = "".join(f"<th>{h}</th>" for h in head)
    return [f"<details><summary>float vs fixed point per layer ({per['samples']} samples, "
            f"{_e(per['file'])}; max |dv|: largest membrane error, float units)</summary>"
            f"<table><tr>{ths}</tr>{body}</table></details>"]


def _latency_rows(report: dict) -> list[tuple[str, str, str]]:
    lat = report.get("latency") or {}
    rows = [("latency / sample", f"{report['latency_per_sample_us']:,.6g} µs",
             "estimated (model)")]
    if "per_step_ns" in lat:
        rows.append(("= steps × time per step",
                     f"{lat.get('steps_per_sample')} × {num(lat['per_step_ns'], 1)} ns", ""))
    if lat.get("critical_core") is not None:
        rows.append(("critical core", str(lat["critical_core"]),
                     f"bound: {lat['bound']}" if lat.get("bound") else "the busiest core"))
    elif lat.get("bound"):
        rows.append(("bound", str(lat["bound"]), ""))
    terms = lat.get("critical_terms_ns")
    if isinstance(terms, dict) and terms:
        rows.append(("step terms", f"{num(sum(terms.values()), 1)} ns",
                     ", ".join(f"{k.replace('_', ' ')} {num(v, 0)}" for k, v in terms.items())
                     + " ns (estimated)"))
    return rows


def _cost(report: dict) -> str:
    from .render import _traffic_rows

    rows = []
    for m, uj in report.get("energy_per_sample_uj", {}).items():
        rows.append((f"energy / sample, {m}", f"{uj:,.6g} µJ", "estimated (model)"))
    rows += _latency_rows(report)
    ps = report["per_sample"]
    rows += [("synaptic ops / sample", _count(ps["synops"]), "measured (simulated activity)"),
             ("spikes / sample", _count(ps["spikes"]), "measured (simulated activity)")]
    tm = report.get("traffic_matrix") or {}
    if tm.get("status") == "counted":
        p = tm["per_sample"]
        rows += [("messages / sample", num(p["messages"], 1), "counted (core_pairs)"),
                 ("message hops / sample", num(p["hops"] + p.get("chip_hops", 0), 1),
                  f"counted (mesh model): {num(p['hops'], 0)} tile + "
                  f"{num(p.get('chip_hops', 0), 0)} chip hops"),
                 ("messages between chips / sample", num(p["messages_between_chips"], 1), "")]
    else:
        rows += [(k, v, "counted") for k, v in _traffic_rows(report)[:2]]
    out = ["<table>", _rows(rows), "</table>",
           f'<p class="label">{report["samples"]} samples × {report.get("time_steps", "?")} '
           f'steps (+{report.get("pipeline_depth", 0)} pipeline steps), backend '
           f'{_e(str(report["backend"]))}. Counts measured in simulation; energies and latency '
           "estimated from the cited per-operation figures.</p>"]
    if (oc_rows := op_count_rows(report)):
        out += ['<table class="op-counts">', _rows(oc_rows), "</table>"]
    return _section("cost", "Cost summary", out)


# -------------------------------------------------------------------------- below the fold

def _energy(report: dict) -> str:
    models = list(report.get("energy_per_sample_uj", {}))
    breakdown = report.get("energy_breakdown_pj_per_sample") or {}
    terms: list[str] = []
    for m in models:
        terms += [t for t in breakdown.get(m, {}) if t not in terms]
    out = ["<h3>By term (pJ per sample, linear scale)</h3>"]
    if breakdown:
        head = "".join(f"<th>{_e(m)} [pJ]</th>" for m in models)
        body = "".join(f"<tr><td>{_e(t)}</td>" + "".join(
            f'<td class="num">{num(breakdown.get(m, {}).get(t, 0.0))}</td>' for m in models)
            + "</tr>" for t in terms)
        total = "".join(f'<td class="num">{num(sum(breakdown.get(m, {}).values()))}</td>'
                        for m in models)
        out += [f"<table><tr><th>term</th>{head}</tr>{body}"
                f'<tr class="total"><td>total</td>{total}</tr></table>',
                svg.bar_chart([(m, [(t, float(v)) for t, v in breakdown.get(m, {}).items()])
                               for m in models], terms,
                              "energy per sample [pJ], estimated (linear scale)",
                              "energy per sample by term", "pJ/sample")]
    else:
        out.append("<p>no breakdown in this report</p>")
    layers = report.get("layers") or []
    out += ["<h3>By layer (pJ per sample, linear scale)</h3>",
            svg.bar_chart([(r["name"], [(m, float(r["energy_pj_per_sample"][m]))
                                        for m in models]) for r in layers], models,
                          "energy per sample [pJ], estimated (linear scale)",
                          "energy per sample and layer", "pJ/sample")]
    return _section("energy", "Energy breakdown (estimated)", out)


def _utilization(report: dict) -> str:
    from .render import _binding_text, _deployment_lines

    util = report.get("utilization") or {"cores": []}
    system = report.get("system") or {}

    def tip(row: dict) -> str:
        shares = ", ".join(f"{r.replace('_', ' ')} {100 * s:.1f} %"
                           for r, s in row["shares"].items())
        tile = "" if row["tile"] is None else f" tile ({row['tile'][0]}, {row['tile'][1]})"
        return (f"core {row['core']} ({row['kind']}) chip {row['chip']}{tile}: "
                f"{row['binding'].replace('_', ' ')} binds at {100 * row['max_share']:.1f} %; "
                f"{shares}; populations: {', '.join(row['populations'])}")

    out = [f"<p>One cell per core ({len(util['cores']):,}), laid out by chip and tile "
           "(x east-west, y north-south); colour: the largest share of any per-core limit "
           "(placement.json limits). Hover a cell for every share.</p>",
           svg.ramp_legend("0 %", "100 % of a per-core limit", "purple: over"),
           svg.core_heatmap(util["cores"], system.get("tile_grid"),
                            int(system.get("cores_per_tile") or 1), tip)] \
        if util["cores"] else ["<p>not available (no placement record)</p>"]
    if system.get("per_chip"):
        out += [f"<h3>Chips (compiled): {system['chips_used']} of {system['chips']} used</h3>",
                "<details><summary>what binds each chip's cores</summary><table>"
                "<tr><th>chip</th><th>position</th><th>cores</th><th>binds</th></tr>"]
        out += [f"<tr><td>{c['chip']}</td><td>{_e(str(tuple(c['position'])))}</td>"
                f'<td class="num">{c["cores"]}/{system["cores_per_chip"]}</td>'
                f"<td>{_e(_binding_text(c))}</td></tr>" for c in system["per_chip"]]
        out.append("</table></details>")
    lines = [line for line in _deployment_lines(report) if line]
    if lines:
        out += ["<details><summary>compiled forms (weight sharing, residual, attention)"
                "</summary><pre>", _e("\n".join(lines)), "</pre></details>"]
    return _section("utilization", "Per-core utilization (compiled)", out)


def _order_cores(util: dict) -> list[dict]:
    return sorted(util["cores"], key=lambda c: (c["chip"], c["core"]))


def _binned(keys: list, label_of, n_max: int = _MATRIX_CORES, bins: int = _MATRIX_BINS):
    """(labels, index of each key): one bin per key up to ``n_max`` keys, else ``bins``."""
    n = len(keys)
    if n <= n_max:
        return [label_of([k]) for k in keys], {k: i for i, k in enumerate(keys)}
    index = {k: i * bins // n for i, k in enumerate(keys)}
    groups: list[list] = [[] for _ in range(bins)]
    for k, b in index.items():
        groups[b].append(k)
    return [label_of(g) for g in groups], index


def _matrix_of(pairs: dict, keys: list, label_of, what: str, steps: int) -> str:
    labels, index = _binned(keys, label_of)
    cells: dict[tuple[int, int], list[int]] = {}
    for a, b, m, h in zip(pairs["source"], pairs["destination"], pairs["messages"],
                          pairs["hops"]):
        acc = cells.setdefault((index.get(a, 0), index.get(b, 0)), [0, 0])
        acc[0] += m
        acc[1] += h

    def tip(r: int, c: int, _v: float) -> str:
        m, h = cells[(r, c)]
        return (f"{what} {labels[r]} → {labels[c]}: {m:,} messages ({num(m / steps, 2)}/step),"
                f" {h:,} tile hops")

    binned = "" if len(labels) == len(keys) else f" ({len(keys):,} {what}s in {len(labels)} bins)"
    return (f'<p class="label">{_e(what)}-to-{_e(what)} messages{_e(binned)}; colour: log10 '
            "of messages (totals over the run)</p>"
            + svg.matrix(labels, {k: float(v[0]) for k, v in cells.items()},
                         tip, f"{what}-to-{what} messages"))


def _traffic(report: dict) -> str:
    tm = report.get("traffic_matrix") or {}
    if tm.get("status") != "counted":
        return _section("traffic", "Traffic matrix", [f"<p>{_e(tm.get('status', 'not counted'))}"
                                                      "</p>"])
    steps = max(1, tm["samples"] * tm["time_steps"])
    t = tm["totals"]
    out = [f"<p>{t['messages']:,} messages, {t['hops']:,} tile hops, {t['chip_hops']:,} chip "
           f"hops, {t['messages_between_chips']:,} messages between chips over {tm['samples']} "
           f"samples × {tm['time_steps']} steps (per step: {num(tm['per_step']['messages'], 2)} "
           "messages); one message per spiking source neuron and destination core.</p>"]
    util = report.get("utilization") or {"cores": []}
    cores = _order_cores(util)
    chip_of = {c["core"]: c["chip"] for c in cores}

    def core_label(group: list) -> str:
        if len(group) == 1:
            return str(group[0])
        chips = sorted({chip_of.get(k, 0) for k in group})
        return (f"{len(group)} cores on chip {chips[0]}" if len(chips) == 1 else
                f"{len(group)} cores on chips {chips[0]}-{chips[-1]}")

    out += ["<h3>Core to core</h3>",
            _matrix_of(tm["cores"], [c["core"] for c in cores] or sorted(
                set(tm["cores"]["source"]) | set(tm["cores"]["destination"])),
                core_label, "core", steps)]
    chips = sorted(set(chip_of.values())) or sorted(set(tm["chips"]["source"]))
    if len(chips) > 1:
        out += ["<h3>Chip to chip</h3>",
                _matrix_of(tm["chips"], chips, lambda g: str(g[0]) if len(g) == 1 else
                           f"chips {g[0]}-{g[-1]}", "chip", steps)]
    return _section("traffic", "Traffic matrix (counted on the placement)", out)


def _placement(report: dict) -> str:
    p = report.get("placement") or {"text": "greedy placement (no alternative computed)"}
    out = [f"<p>{_e(p['text'])}</p>"]
    est = p.get("estimates") or {}
    if est:
        methods = list(est)
        keys = [k for k in est[methods[0]] if all(k in est[m] for m in methods)]
        head = "".join(f"<th>{_e(m)}</th>" for m in methods)
        change = p.get("change") or {}
        rows = "".join(f"<tr><td>{_e(k.replace('_', ' '))}</td>" + "".join(
            f'<td class="num">{num(est[m][k], 0 if float(est[m][k]).is_integer() else 2)}</td>'
            for m in methods)
            + f'<td class="num">{_pct(change.get(k))}</td></tr>' for k in keys)
        out.append(f"<table><tr><th>estimate</th>{head}<th>change</th></tr>{rows}</table>")
    if "moved_cores" in p:
        out.append(f"<p>{p['moved_cores']:,} cores sit on another chip or tile than in the "
                   "greedy baseline.</p>")
    bal = p.get("balance") or {}
    if bal.get("work_cap") is not None:
        (c0, c1), (w0, w1) = bal["cores"], bal["busiest_core_work_ns"]
        out.append(f"<p>Per-core work balanced: the partition was re-cut with a cap of "
                   f"{bal['work_cap']:g} × the busiest core's estimated work: {c0:,} → {c1:,} "
                   f"cores, busiest core {num(w0, 0)} → {num(w1, 0)} ns per step "
                   "(estimated).</p>")
    out += _layout_maps(report, p)
    return _section("placement", "Placement: before / after", out)


def _layout_maps(report: dict, p: dict) -> list[str]:
    """Greedy (before) and chosen (after) layouts side by side, each core coloured by the
    position of its first population in program order."""
    base = p.get("baseline") or {}
    util = report.get("utilization") or {"cores": []}
    if not base.get("core_population") or not util["cores"]:
        return []
    order = list(dict.fromkeys(base["core_population"]))
    rank = {name: i / max(1, len(order) - 1) for i, name in enumerate(order)}
    system = report.get("system") or {}
    grid, per_tile = system.get("tile_grid"), int(system.get("cores_per_tile") or 1)
    if not grid:  # no chip assignment: nothing to lay out
        return []
    before = [{"core": i, "chip": c, "tile": t, "name": n, "max_share": rank.get(n, 0.0)}
              for i, (c, t, n) in enumerate(zip(base["core_chip"], base["core_tile"],
                                                base["core_population"]))]
    def first(c: dict) -> str:  # a neuro core's first population, or the attention unit
        return (c["populations"] or [c.get("attention") or "?"])[0]

    after = [{"core": c["core"], "chip": c["chip"], "tile": c["tile"], "name": first(c),
              "max_share": rank.get(first(c), 0.0)} for c in util["cores"]]

    def tip(row: dict) -> str:
        tile = "" if row["tile"] is None else f" tile ({row['tile'][0]}, {row['tile'][1]})"
        return f"core {row['core']} chip {row['chip']}{tile}: {row['name']}"

    maps = [(f"before: greedy ({len(before):,} cores)", before, "layout-before"),
            (f"after: {p.get('method', 'traffic')} ({len(after):,} cores)", after,
             "layout-after")]
    out = ["<p>Each cell a core at its chip and tile; colour: its first population's place "
           "in program order (first layer light, last layer dark).</p>",
           svg.ramp_legend("first layer", "last layer")]
    for title, rows, kind in maps:
        out += [f'<h3>{_e(title)}</h3>',
                svg.core_heatmap(rows, grid, per_tile, tip, width=1080, kind=kind,
                                 label=title)]
    return out


def _sources(report: dict) -> str:
    files = [("verdict, utilization", "placement.json (compile): cores, limits, system"),
             ("fidelity", "simulation_reference.json, simulation_compare.json, "
                          "simulation_lava.json (simulate); placement.json quantization"),
             ("cost, energy", "activity_<backend>.json (simulate) priced with the target's "
                              "TOML (report/energy.py)"),
             ("traffic matrix", "activity_<backend>.json traffic.core_pairs (simulate, "
                                "compile/traffic.py)"),
             ("placement", "placement.json placement record (compile --placement)")]
    out = ["<table>", "<tr><th>section</th><th>from</th></tr>",
           *[f"<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>" for a, b in files], "</table>"]
    for name, cites in (report.get("sources") or {}).items():
        out += [f"<h3>{_e(name)}</h3>", "<ul>", *[f"<li>{_e(c)}</li>" for c in cites], "</ul>"]
    return _section("sources", "Sources", out)


def render_page(report: dict) -> str:
    """The report dict (cost keys plus the deployment keys, either may be partial) as one
    self-contained HTML page with the :data:`SECTIONS` in order."""
    target = str(report.get("target", "?"))
    title = f"nmc-deploy deployment report: {target}"
    meta = (f"{_e(report.get('target_description', ''))} · backend {_e(str(report['backend']))}"
            f" · {report['samples']} samples")
    assumptions = ["<ul>", *[f"<li>{_e(a)}</li>" for a in report.get("assumptions", ())],
                   "</ul>"]
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{_e(title)}</h1>", f'<p class="meta">{meta}</p>', _verdict(report),
             '<div class="top">', _fidelity(report), _cost(report), "</div>",
             _energy(report), _utilization(report), _traffic(report), _placement(report),
             _section("assumptions", "Assumptions", assumptions), _sources(report),
             "</body>", "</html>"]
    return "\n".join(parts) + "\n"
