"""Render builds' deployment reports in headless Chromium and keep the screenshots in docs/.

For each build: ``nmc-deploy report BUILD --format html`` (through ``pipeline.make_report``),
then Debian's Chromium (``/usr/bin/chromium``) takes two screenshots at 1280 px width: the
first 900 px (what a reader sees without scrolling) and the whole page (window as tall as
the page, the blank bottom trimmed). It also measures, in a copy of the page with one
added script (the report itself has none), where the bottom of the ``verdict``,
``fidelity`` and ``cost`` sections falls, and fails if any is below the fold.

Usage: .venv/bin/python benchmarks/report_screenshot.py --digits BUILD [--4-384 BUILD]
           [--out docs] [--chromium /usr/bin/chromium]
Writes docs/report-digits.png, docs/report-digits-full.png (and report-4-384*.png) and
prints one markdown row per build (sections' bottoms in px, page height, file sizes).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmc_deploy.pipeline import make_report  # noqa: E402

WIDTH, FOLD = 1280, 900
ABOVE_FOLD = ("verdict", "fidelity", "cost")
_MEASURE = """<script>
window.addEventListener('load', () => {
  const out = {};
  for (const s of document.querySelectorAll('section')) {
    out[s.id] = Math.round(s.getBoundingClientRect().bottom + window.scrollY);
  }
  out.page = document.documentElement.scrollHeight;
  const pre = document.createElement('pre'); pre.id = 'measured';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


def chromium(binary: str, *args: str) -> str:
    """Run headless Chromium; its stdout (stderr's D-Bus noise is dropped)."""
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def measure(binary: str, page: Path) -> dict:
    """Bottom (px from the page top) of every section and the page height at 1280 px."""
    import json

    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"),
                     encoding="utf-8")
    dom = chromium(binary, f"--window-size={WIDTH},{FOLD}", "--virtual-time-budget=5000",
                   "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom)
    if not found:
        raise SystemExit(f"{page}: could not measure the page's sections")
    return json.loads(found.group(1).replace("&quot;", '"'))


def trim(path: Path) -> None:
    """Cut the blank (white) rows off the bottom of a screenshot."""
    img = Image.open(path).convert("RGB")
    bbox = Image.eval(img, lambda v: 255 - v).getbbox()
    if bbox:
        img.crop((0, 0, img.width, min(img.height, bbox[3] + 20))).save(path, optimize=True)


def shoot(binary: str, build: Path, name: str, out: Path, work: Path) -> dict:
    page = work / f"report-{name}.html"
    with contextlib.redirect_stdout(io.StringIO()):
        make_report(build, "html", page)
    where = measure(binary, page)
    fold, full = out / f"report-{name}.png", out / f"report-{name}-full.png"
    chromium(binary, f"--window-size={WIDTH},{FOLD}", f"--screenshot={fold}", page.as_uri())
    chromium(binary, f"--window-size={WIDTH},{where['page'] + 40}", f"--screenshot={full}",
             page.as_uri())
    trim(full)
    late = [s for s in ABOVE_FOLD if where.get(s, FOLD + 1) > FOLD]
    return {"name": name, "html_bytes": page.stat().st_size, "where": where, "late": late,
            "fold": fold, "full": full}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--digits", type=Path, required=True, help="a digits build directory")
    ap.add_argument("--4-384", dest="b4384", type=Path, help="a 4-384 build directory")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args(argv)
    builds = [("digits", args.digits)] + ([("4-384", args.b4384)] if args.b4384 else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in builds:
            rows.append(shoot(args.chromium, build, name, args.out, Path(tmp)))
    print("| build | HTML | verdict / fidelity / cost bottom (px) | page height (px) | "
          "screenshots |")
    print("|---|---|---|---|---|")
    for r in rows:
        w = r["where"]
        print(f"| {r['name']} | {r['html_bytes'] / 1e3:,.0f} kB | "
              f"{' / '.join(str(w.get(s)) for s in ABOVE_FOLD)} | {w['page']:,} | "
              f"{r['fold'].name} ({r['fold'].stat().st_size / 1e3:,.0f} kB), "
              f"{r['full'].name} ({r['full'].stat().st_size / 1e3:,.0f} kB) |")
    late = [f"{r['name']}: {', '.join(r['late'])}" for r in rows if r["late"]]
    if late:
        print(f"below the fold ({FOLD} px): " + "; ".join(late), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
