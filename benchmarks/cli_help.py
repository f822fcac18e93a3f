"""Time `nmc-deploy --help` and every subcommand's --help (fresh interpreter each, 3 runs).

Usage: .venv/bin/python benchmarks/cli_help.py   -> markdown table on stdout
"""
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [[], ["train"], ["export"], ["compile"], ["simulate"], ["report"], ["demo"]]


def main():
    exe = shutil.which("nmc-deploy") or str(Path(sys.executable).with_name("nmc-deploy"))
    print("| command | median s | max s |\n|---|---|---|")
    for cmd in COMMANDS:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([exe, *cmd, "--help"], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        print(f"| `nmc-deploy {' '.join(cmd + ['--help'])}` | {statistics.median(times):.3f} "
              f"| {max(times):.3f} |")


if __name__ == "__main__":
    main()
