"""A pruned model: train a small digits Spikformer, prune 90 % of its block weights with L1
pruning (L1P), then compile, simulate and price the dense and the pruned model side by side.

    python examples/pruned_digits.py OUT_DIR [--epochs 30] [--sparsity 0.9]
                                     [--prune-epochs 5] [--samples N] [--quick]

``--quick``: 5 training epochs, 1 fine-tuning epoch, 40 test images (~40 s; the test suite
runs it). Writes ``dense.pt``, ``pruned.pt`` and ``summary.json`` into OUT_DIR and prints one
row per model: float and fixed-point accuracy, nonzero synapses, cores on Loihi 2, synaptic
operations and the estimated energy per sample (45 nm convention; Loihi per-event figures,
where static power x runtime dominates: docs/cost-model.md). The CLI does the same with ``nmc-deploy prune
dense.pt --method l1p --sparsity 0.9 -o pruned.pt`` and ``export``/``compile``/``simulate``/
``report`` on each (docs/pruning.md; the measured table is in docs/results-pruning.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import nmc_deploy as nd


def deploy(checkpoint: Path, samples: int | None) -> dict:
    """Export, compile (in memory), simulate and report one checkpoint."""
    build = nd.compile(nd.export(checkpoint), target="loihi2")
    sim = nd.simulate(build, samples=samples)
    rep = nd.report(build, sim)
    return {"accuracy_float": sim.accuracy["float"], "accuracy_fixed": sim.accuracy["fixed"],
            "synapses": build.synapses, "cores_used": build.cores_used,
            "synops_per_sample": rep.synops_per_sample,
            "energy_per_sample_uj": dict(rep.energy_per_sample_uj)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--prune-epochs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="5 + 1 epochs, 40 test images")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.prune_epochs, args.samples = 5, 1, 40
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    nd.train(out / "dense.pt", epochs=args.epochs, seed=args.seed)
    pruning = nd.prune(out / "dense.pt", out / "pruned.pt", method="l1p",
                       sparsity=args.sparsity, epochs=args.prune_epochs, seed=args.seed)
    before, after = pruning["before"], pruning["after"]
    print(f"prune (L1P {args.sparsity:.0%}): nonzero weights {before['nonzeros']:,} -> "
          f"{after['nonzeros']:,}")
    rows = {"dense": deploy(out / "dense.pt", args.samples),
            "pruned": deploy(out / "pruned.pt", args.samples)}
    print(f"{'model':8} {'float %':>8} {'fixed %':>8} {'synapses':>10} {'cores':>6} "
          f"{'synops/sample':>14} {'E 45nm µJ':>10} {'E Loihi µJ':>11}  (energies estimated)")
    for name, r in rows.items():
        print(f"{name:8} {100 * r['accuracy_float']:8.2f} {100 * r['accuracy_fixed']:8.2f} "
              f"{r['synapses']:10,} {r['cores_used']:6} {r['synops_per_sample']:14,.0f} "
              f"{r['energy_per_sample_uj']['cmos45nm']:10.3f} "
              f"{r['energy_per_sample_uj']['loihi_davies2018']:11.2f}")
    summary = {"sparsity": args.sparsity, "samples": args.samples,
               "nonzeros": [before["nonzeros"], after["nonzeros"]], **rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
