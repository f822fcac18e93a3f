"""Run the whole demo (what `make demo` runs) and print its summary as a markdown table.

Usage: .venv/bin/python benchmarks/demo_pipeline.py [OUT_DIR]
"""
import json
import subprocess
import sys
import time
from pathlib import Path


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_bench")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nmc_deploy.cli", "demo", "--out", str(out)], check=True)
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    print("| quantity | value |\n|---|---|")
    for k, v in s.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}: {vv:.4g}" for kk, vv in v.items())
        print(f"| {k} | {v} |")
    print(f"| wall seconds (this script) | {wall:.1f} |")


if __name__ == "__main__":
    main()
