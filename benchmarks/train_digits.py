"""Train the "digits" Spikformer preset for several seeds; print a markdown table.

Usage::

    .venv/bin/python benchmarks/train_digits.py [--seeds 0 1 2] [--epochs N] [--num-threads K]

Each row is one full training run (wall time measured around ``train_model`` only) and the
float test accuracy on the 360-image test split. The 1-minute load average before and after
each run is printed too: other processes on the machine slow training down.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from nmc_deploy.data import load_dataset
from nmc_deploy.models.spikformer import PRESETS
from nmc_deploy.models.train import DEFAULT_EPOCHS, NUM_THREADS, evaluate_model, train_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS["digits"])
    parser.add_argument("--num-threads", type=int, default=NUM_THREADS,
                        help="Sets torch threads while training.")
    parser.add_argument("--progress", action="store_true", help="Shows a tqdm bar per run.")
    args = parser.parse_args(argv)

    data = load_dataset("digits")
    cfg = PRESETS["digits"]
    print(f"preset digits: {cfg}", file=sys.stderr)
    rows = []
    for seed in args.seeds:
        load_before = os.getloadavg()[0]
        start_s = time.perf_counter()
        model, history = train_model(cfg, data, epochs=args.epochs, seed=seed,
                                     progress=args.progress, num_threads=args.num_threads)
        seconds = time.perf_counter() - start_s
        load_after = os.getloadavg()[0]
        acc = evaluate_model(model, data.x_test, data.y_test, data.levels)
        rows.append((seed, args.epochs, seconds, acc, load_before, load_after))
        print(f"seed {seed}: {acc:.4f} in {seconds:.1f} s", file=sys.stderr)

    print(f"Spikformer preset `digits` on scikit-learn digits (train {len(data.y_train)}, "
          f"test {len(data.y_test)}); torch {torch.__version__}, "
          f"{args.num_threads} training thread(s), {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print()
    print("| seed | epochs | seconds | float test accuracy | load avg (before/after) |")
    print("|---:|---:|---:|---:|---:|")
    for seed, epochs, seconds, acc, lb, la in rows:
        print(f"| {seed} | {epochs} | {seconds:.1f} | {acc * 100:.2f} % | {lb:.1f} / {la:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
