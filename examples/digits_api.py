"""Digits end to end through the Python API: train a small Spikformer on sklearn's 8x8
digits, export it to NIR, compile it for one Loihi 2 chip, simulate the fixed-point program
(and the float graph) on the test split, and price the run.

    python examples/digits_api.py OUT_DIR [--epochs 30] [--samples N] [--lava N] [--quick]

``--quick`` trains 3 epochs and simulates 40 test images (~20 s; the test suite runs it);
``--lava N`` also runs the first N images on Lava and counts spike mismatches against the
reference simulator (0 expected). Writes into OUT_DIR: ``model.pt``, ``model.nir``,
``build/`` (the CLI's build files), ``report.html`` and ``summary.json``; prints one line
per stage. The same with the CLI: ``nmc-deploy demo --out OUT_DIR``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import nmc_deploy as nd


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--samples", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--lava", type=int, default=0, help="images to run on Lava too")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="3 epochs, 40 test images")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.samples = 3, 40
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    meta = nd.train(out / "model.pt", epochs=args.epochs, seed=args.seed)
    print(f"train: float test accuracy {meta['accuracy_float']:.4f} ({args.epochs} epochs)")
    graph = nd.export(out / "model.pt", out / "model.nir")
    print(f"export: {len(graph.nodes)} nodes -> {out / 'model.nir'}")
    build = nd.compile(graph, target="loihi2", out=out / "build")
    print(f"compile: {build.neurons:,} neurons, {build.synapses:,} synapses on "
          f"{build.cores_used} cores of {build.target.name}")
    sim = nd.simulate(build, samples=args.samples)
    acc = sim.accuracy
    print(f"simulate: {sim.samples} images, accuracy float {acc['float']:.4f}, fixed point "
          f"{acc['fixed']:.4f}")
    summary = {"accuracy_train_float": meta["accuracy_float"], "samples": sim.samples,
               "accuracy_float": acc["float"], "accuracy_fixed": acc["fixed"],
               "cores_used": build.cores_used, "neurons": build.neurons,
               "synapses": build.synapses}
    if args.lava:
        lava = nd.simulate(build, samples=args.lava, compare=True)
        print(f"lava: {lava.spike_mismatches} of {lava.spikes_compared:,} spikes differ from "
              f"the reference ({lava.samples} images)")
        summary["lava_spike_mismatches"] = lava.spike_mismatches
        sim = nd.simulate(build, samples=args.samples)  # the report prices the full run
    rep = nd.report(build, sim)
    (out / "report.html").write_text(rep.render("html"), encoding="utf-8")
    energy = ", ".join(f"{k} {v:.3g} µJ" for k, v in rep.energy_per_sample_uj.items())
    print(f"report: fits {rep.fits}, {rep.synops_per_sample:,.0f} synaptic ops per sample, "
          f"energy per sample (estimated) {energy}, latency {rep.latency_per_sample_us:,.0f} "
          f"µs -> {out / 'report.html'}")
    summary.update(energy_per_sample_uj=dict(rep.energy_per_sample_uj),
                   latency_per_sample_us=rep.latency_per_sample_us,
                   synops_per_sample=rep.synops_per_sample)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
