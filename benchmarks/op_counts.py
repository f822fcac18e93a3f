"""The two op counts of a trained digits model (and of it pruned), with NeuroBench's own.

    python benchmarks/op_counts.py CHECKPOINT [--build BUILD_DIR] [--samples N] [--out FILE]

* ours: :func:`nmc_deploy.models.op_counts.count_neurobench_ops` on the checkpoint's float
  model over the first N digits test images, one sample per call (as ``simulate`` does);
* NeuroBench 2.3.0 itself (``Benchmark`` with SynapticOperations, ActivationSparsity,
  MembraneUpdates; our LIF classes registered as activation modules), batch size 1, same
  images: the numbers must be equal (NeuroBench reports 0 MembraneUpdates for neurons that
  are not snnTorch's; docs/op-counts.md);
* the same two on the model pruned by one-shot L1 magnitude at 50 % (block matrices);
* with ``--build``: the hardware-event count of that build's ``activity_reference.json``
  (what the energy model prices), per sample.

Writes JSON (``--out``) and prints a markdown table (docs/op-counts.md holds a run).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmc_deploy.data import load_dataset  # noqa: E402
from nmc_deploy.models.checkpoint import load_checkpoint  # noqa: E402
from nmc_deploy.models.lif import SLIF, MultiStepLIF  # noqa: E402
from nmc_deploy.models.op_counts import count_neurobench_ops  # noqa: E402
from nmc_deploy.models.train import images_to_float  # noqa: E402
from nmc_deploy.prune.l1p import prune_one_shot  # noqa: E402

KEYS = ("Effective_ACs", "Effective_MACs", "Dense", "ActivationSparsity", "MembraneUpdates")


def neurobench_counts(model, x) -> dict:
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import (ActivationSparsity, MembraneUpdates,
                                             SynapticOperations)
    from neurobench.models import TorchModel
    from torch.utils.data import DataLoader, TensorDataset

    nb = TorchModel(model)
    nb.add_activation_module(MultiStepLIF)
    nb.add_activation_module(SLIF)
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=1)
    res = Benchmark(nb, loader, [], [], [[], [SynapticOperations, ActivationSparsity,
                                              MembraneUpdates]]).run(quiet=True)
    nb.cleanup_hooks()
    return {**res.pop("SynapticOperations"), **res}


def hardware_events(build: Path) -> dict:
    from nmc_deploy.program import load_activity
    from nmc_deploy.report.op_counts import op_counts_section

    return op_counts_section(load_activity(build, "reference"), None)["hardware_events"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--build", type=Path)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    model, _ = load_checkpoint(args.checkpoint)
    data = load_dataset("digits")
    x = images_to_float(data.x_test[:args.samples], data.levels)
    pruned = copy.deepcopy(model)
    prune_one_shot(pruned, 0.5)
    ckpt = args.checkpoint.resolve()
    root = Path(__file__).resolve().parents[1]
    result = {"checkpoint": str(ckpt.relative_to(root) if ckpt.is_relative_to(root) else ckpt),
              "samples": len(x), "models": {}}
    for name, m in (("digits", model), ("digits, L1 50 %", pruned)):
        t0 = time.perf_counter()
        ours = count_neurobench_ops(m, x, batch_size=1, per_layer=True)
        t1 = time.perf_counter()
        theirs = neurobench_counts(m, x)
        t2 = time.perf_counter()
        result["models"][name] = {"ours": ours, "neurobench": theirs,
                                  "seconds": {"ours": t1 - t0, "neurobench": t2 - t1}}
    if args.build is not None:
        result["hardware_events"] = hardware_events(args.build)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
    print(f"{len(x)} digits test samples, per sample\n")
    print("| model | count | " + " | ".join(KEYS) + " |")
    print("|---|---|" + "---:|" * len(KEYS))
    for name, r in result["models"].items():
        for who in ("ours", "neurobench"):
            cells = [f"{r[who][k]:.4f}" if k == "ActivationSparsity" else f"{r[who][k]:,.1f}"
                     for k in KEYS]
            print(f"| {name} | {who} | " + " | ".join(cells) + " |")
    if "hardware_events" in result:
        print("\nhardware events (build's activity_reference.json):")
        for k, v in result["hardware_events"].items():
            print(f"  {k}: {v if isinstance(v, str) else f'{v:,.1f}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
