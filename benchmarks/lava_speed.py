"""Lava vs reference speed on the compiled program of a build directory.

Usage: .venv/bin/python benchmarks/lava_speed.py BUILD_DIR [N_SAMPLES]
"""
import sys
import time

from nmc_deploy.program import load_program
from nmc_deploy.data import load_dataset


def main():
    program = load_program(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    x = load_dataset(program.metadata.get("dataset", "digits")).x_test[:n]
    from nmc_deploy.simulate.reference import simulate_reference

    t0 = time.perf_counter()
    simulate_reference(program, x)
    t_ref = time.perf_counter() - t0
    from nmc_deploy.simulate.lava.backend import simulate_lava

    t0 = time.perf_counter()
    res = simulate_lava(program, x)
    t_lava = time.perf_counter() - t0
    steps = res.stats["lava_steps"]
    print("| backend | samples | Lava steps | seconds | ms/step |\n|---|---|---|---|---|")
    print(f"| reference | {n} | - | {t_ref:.2f} | - |")
    print(f"| lava | {n} | {steps} | {t_lava:.2f} | {1000 * t_lava / steps:.1f} |")


if __name__ == "__main__":
    main()
