"""Inline SVG charts of the report page: linear bar charts, the core heatmap, traffic matrices.

Each function returns one ``<svg>`` element as text (no scripts, fonts or external assets);
every mark carries a ``<title>`` tooltip. Colours: one per series (:data:`COLOURS`), and a
sequential ramp (:func:`ramp`) for shares and message counts.
"""
from __future__ import annotations

import html
import math
from typing import Sequence

__all__ = ["COLOURS", "num", "count", "tick", "ramp", "bar_chart", "core_heatmap", "matrix",
           "ramp_legend"]

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
# the ramp's stops (share 0 -> 1): pale yellow, orange, dark red; above 1: purple
_RAMP = ((255, 247, 188), (254, 153, 41), (204, 76, 2), (102, 37, 6))
OVER = "#6a3d9a"
_e = html.escape


def num(x: float, decimals: int = 3) -> str:
    """``1,234.500``-style fixed point; scientific notation for very large or small values."""
    x = float(x)
    if x == 0:
        return "0"
    if not math.isfinite(x) or abs(x) >= 1e15 or abs(x) < 10.0 ** -decimals:
        return f"{x:.3e}"
    return f"{x:,.{decimals}f}"


def count(x: float) -> str:
    """Counts per sample: integers without decimals, fractions with two."""
    x = float(x)
    return num(x, 0) if x.is_integer() else num(x, 2)


def tick(x: float) -> str:
    """Compact axis label: ``0``, ``2,500``, ``1e7``, ``2.5e-3``."""
    if x == 0:
        return "0"
    if 1 <= abs(x) < 1e6 and float(x).is_integer():
        return f"{x:,.0f}"
    text = f"{x:.3g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def ramp(t: float) -> str:
    """Colour of a value ``t`` in [0, 1] on the sequential ramp (``OVER`` above 1)."""
    if t > 1.0 + 1e-9:
        return OVER
    t = min(max(t, 0.0), 1.0) * (len(_RAMP) - 1)
    i = min(int(t), len(_RAMP) - 2)
    f = t - i
    rgb = [round(a + (b - a) * f) for a, b in zip(_RAMP[i], _RAMP[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _nice_step(span: float) -> float:
    """A 1/2/5 x 10^k step that cuts ``span`` into about five intervals."""
    raw = span / 5.0
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * power:
            return m * power
    return 10.0 * power


def bar_chart(groups: Sequence[tuple[str, Sequence[tuple[str, float]]]], series: Sequence[str],
              axis: str, label: str, unit: str, width: int = 1000) -> str:
    """Horizontal grouped bars on a linear axis starting at 0.

    ``groups``: (group label, [(series name, value), ...]); one ``<rect class="bar">`` per
    value, coloured by its series (``series`` fixes the colours and the legend, drawn with
    circles so every rect is a bar), the value printed after the bar.
    """
    values = [v for _, vs in groups for _, v in vs]
    vmax = max([v for v in values if v > 0], default=1.0)
    step = _nice_step(vmax)
    top_value = step * math.ceil(vmax / step)
    ticks = [step * i for i in range(int(round(top_value / step)) + 1)]
    longest = max((len(g) for g, _ in groups), default=4)
    label_w = min(320, 24 + 7 * longest)
    plot_w = width - label_w - 130
    bar_h, gap, top, bottom = 13, 8, 34, 46
    heights = [len(vs) * bar_h + gap for _, vs in groups]
    plot_h = max(1, sum(heights))
    height = top + plot_h + bottom
    colour = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(series)}

    def x_of(v: float) -> float:
        return plot_w * max(v, 0.0) / top_value

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">']
    x = label_w
    for s in series:
        svg.append(f'<circle cx="{x + 6}" cy="14" r="6" fill="{colour[s]}"/>'
                   f'<text x="{x + 16}" y="18">{_e(s)}</text>')
        x += 30 + 7 * len(s)
    x0, y_axis = label_w, top + plot_h
    for t in ticks:
        xt = x0 + x_of(t)
        svg.append(f'<line x1="{xt:.1f}" y1="{top}" x2="{xt:.1f}" y2="{y_axis}" stroke="#ddd"/>'
                   f'<text x="{xt:.1f}" y="{y_axis + 15}" text-anchor="middle">{_e(tick(t))}'
                   "</text>")
    svg.append(f'<line x1="{x0}" y1="{y_axis}" x2="{x0 + plot_w}" y2="{y_axis}" stroke="#333"/>'
               f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{y_axis}" stroke="#333"/>'
               f'<text x="{x0 + plot_w / 2:.1f}" y="{y_axis + 35}" text-anchor="middle">'
               f"{_e(axis)}</text>")
    y = top + gap / 2
    for (name, vs), h in zip(groups, heights):
        svg.append(f'<text x="{label_w - 6}" y="{y + len(vs) * bar_h / 2 + 4:.1f}" '
                   f'text-anchor="end">{_e(name)}</text>')
        for i, (s, v) in enumerate(vs):
            yb = y + i * bar_h
            svg.append(f'<rect class="bar" x="{x0}" y="{yb:.1f}" width="{x_of(v):.2f}" '
                       f'height="{bar_h - 2}" fill="{colour.get(s, COLOURS[0])}"><title>'
                       f"{_e(name)}, {_e(s)}: {_e(num(v))} {_e(unit)}</title></rect>"
                       f'<text class="val" x="{x0 + x_of(v) + 4:.1f}" y="{yb + bar_h - 3:.1f}">'
                       f"{_e(num(v))}</text>")
        y += h
    svg.append("</svg>")
    return "\n".join(svg)


def ramp_legend(low: str, high: str, note: str = "", width: int = 360) -> str:
    """A horizontal colour ramp from ``low`` to ``high`` (a ``<linearGradient>``)."""
    stops = "".join(f'<stop offset="{i / 10:.1f}" stop-color="{ramp(i / 10)}"/>'
                    for i in range(11))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="34" '
            f'viewBox="0 0 {width} 34" role="img" aria-label="colour scale">'
            f'<defs><linearGradient id="rampgrad">{stops}</linearGradient></defs>'
            f'<rect x="0" y="2" width="{width - 120}" height="12" fill="url(#rampgrad)"/>'
            f'<text x="0" y="28">{_e(low)}</text>'
            f'<text x="{width - 120}" y="28" text-anchor="end">{_e(high)}</text>'
            f'<text x="{width - 112}" y="12">{_e(note)}</text></svg>')


def core_heatmap(cores: Sequence[dict], tile_grid: Sequence[int] | None, cores_per_tile: int,
                 tooltip, width: int = 1080, kind: str = "core",
                 label: str = "per-core utilization") -> str:
    """One ``<rect class="core">`` per core at its chip and tile, coloured by ``max_share``.

    ``cores``: the ``utilization.cores`` rows (chip, tile, max_share). Each used chip is a
    grey block of ``tile_grid`` tiles (x east-west, y north-south); a tile's cores split it
    into a small grid. Without a tile grid, or with cores without a tile, the cores are laid
    out in index order on one block.
    ``tooltip(row)`` gives each cell's ``<title>`` text; ``kind`` is the cells' class and
    ``label`` the picture's aria-label.
    """
    if not tile_grid or len(tile_grid) < 2 or any(c.get("tile") is None for c in cores):
        # no chip assignment: one block, by index
        tx = max(1, min(64, len(cores)))
        ty = max(1, math.ceil(len(cores) / tx))
        cores = [dict(c, chip=0, tile=[i % tx, i // tx]) for i, c in enumerate(cores)]
        cores_per_tile = 1
    else:
        tx, ty = int(tile_grid[0]), int(tile_grid[1])
    chips = sorted({c["chip"] for c in cores})
    sub = max(1, math.ceil(math.sqrt(max(1, cores_per_tile))))
    pad, label_h = 10, 16
    cols, lines = tx * sub, ty * sub
    for cell in (26, 20, 16, 12, 10, 8, 6, 5, 4, 3):  # the largest cell that keeps it short
        per_row = max(1, (width + pad) // (cols * cell + pad))
        if math.ceil(len(chips) / per_row) * (lines * cell + label_h + pad) <= 640:
            break
    chip_w, chip_h = cols * cell, lines * cell
    rows = math.ceil(len(chips) / per_row) if chips else 1
    height = rows * (chip_h + label_h + pad)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">']
    tile_w = sub * cell  # the chip's tiles as a faint grid (one pattern, not one rect each)
    svg.append(f'<defs><pattern id="tiles-{kind}" width="{tile_w}" height="{tile_w}" '
               f'patternUnits="userSpaceOnUse"><rect width="{tile_w}" height="{tile_w}" '
               'fill="#eeeeee" stroke="#d8d8d8" stroke-width="1"/></pattern></defs>')
    origin = {}
    for i, chip in enumerate(chips):
        x0 = (i % per_row) * (chip_w + pad)
        y0 = (i // per_row) * (chip_h + label_h + pad) + label_h
        origin[chip] = (x0, y0)
        svg.append(f'<text x="{x0}" y="{y0 - 4}">chip {chip}</text>'
                   f'<rect class="chip" x="{x0}" y="{y0}" width="{chip_w}" height="{chip_h}" '
                   f'fill="url(#tiles-{kind})" transform="translate(0 0)"/>')
    slot: dict[tuple, int] = {}
    for row in cores:
        x0, y0 = origin[row["chip"]]
        t = (row["chip"], int(row["tile"][0]), int(row["tile"][1]))
        k = slot.get(t, 0)
        slot[t] = k + 1
        x = x0 + (t[1] * sub + k % sub) * cell
        y = y0 + (t[2] * sub + (k // sub) % sub) * cell
        svg.append(f'<rect class="{kind}" x="{x}" y="{y}" width="{max(1, cell - 1)}" '
                   f'height="{max(1, cell - 1)}" fill="{ramp(row["max_share"])}">'
                   f"<title>{_e(tooltip(row))}</title></rect>")
    svg.append("</svg>")
    return "\n".join(svg)


def matrix(labels: Sequence[str], cells: dict[tuple[int, int], float], tooltip, axis: str,
           size: int = 520) -> str:
    """A square heatmap: row = source, column = destination; colour = log10 of the value.

    ``cells`` maps (row, column) to a positive value; only those are drawn (one
    ``<rect class="cell">`` each). ``tooltip(row, col, value)`` gives the ``<title>``.
    """
    n = max(1, len(labels))
    cell = max(2.0, (size - 60) / n)
    side = 60 + cell * n
    vmax = max(cells.values(), default=1.0)
    vmin = min((v for v in cells.values() if v > 0), default=1.0)
    lo, hi = math.log10(max(vmin, 1e-12)), math.log10(max(vmax, 1e-12))

    def shade(v: float) -> str:
        return ramp(1.0 if hi <= lo else (math.log10(v) - lo) / (hi - lo))

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{side:.0f}" height="{side:.0f}" '
           f'viewBox="0 0 {side:.0f} {side:.0f}" role="img" aria-label="{_e(axis)}">',
           f'<rect x="60" y="60" width="{cell * n:.1f}" height="{cell * n:.1f}" fill="#f7f7f7" '
           'stroke="#999"/>',
           f'<text x="{60 + cell * n / 2:.1f}" y="14" text-anchor="middle">destination</text>',
           f'<text x="12" y="{60 + cell * n / 2:.1f}" text-anchor="middle" '
           f'transform="rotate(-90 12 {60 + cell * n / 2:.1f})">source</text>']
    if n <= 40:
        for i, name in enumerate(labels):
            c = 60 + (i + 0.5) * cell
            svg.append(f'<text class="small" x="{c:.1f}" y="54" text-anchor="middle">'
                       f"{_e(name)}</text>"
                       f'<text class="small" x="56" y="{c + 3:.1f}" text-anchor="end">'
                       f"{_e(name)}</text>")
    for (r, c), v in sorted(cells.items()):
        if v <= 0:
            continue
        svg.append(f'<rect class="cell" x="{60 + c * cell:.1f}" y="{60 + r * cell:.1f}" '
                   f'width="{cell:.1f}" height="{cell:.1f}" fill="{shade(v)}">'
                   f"<title>{_e(tooltip(r, c, v))}</title></rect>")
    svg.append("</svg>")
    return "\n".join(svg)
