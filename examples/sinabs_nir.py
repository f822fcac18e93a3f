"""A NIR file from another tool: a sinabs network, exported with sinabs' own ``to_nir``,
compiled with ``--convention sinabs`` and simulated; its float simulation must reproduce
sinabs' own output spikes.

    python examples/sinabs_nir.py OUT_DIR [--samples 64] [--steps 40] [--seed 0] [--quick]

The network (random weights, seeded): ``Linear(20, 32) -> IAF -> Linear(32, 10) -> IAF``
with sinabs' layer defaults: ``MultiSpike`` (floor(v/θ) spikes per step, lowered as a Loihi 2
graded payload), subtract reset and no ``min_v_mem``. ``--convention sinabs`` assumes what
``sinabs.from_nir`` builds from the file (MultiSpike, and ``min_v_mem = -θ`` on IF), so the
clamp the original layers do not have is switched off with ``--v-min none``
(docs/interop.md). Inputs are random spikes. Writes into OUT_DIR ``sinabs.nir`` (the tool's file), ``spikes.npy``
``(B, T, 20)``, ``sinabs_outputs.npy`` (sinabs' own output spikes, ``(B, T, 10)``),
``build/`` and ``summary.json``; prints the spikes that differ between sinabs and our float
simulation (0) and between float and fixed point. The same with the CLI::

    nmc-deploy compile OUT_DIR/sinabs.nir --convention sinabs --v-min none -o build
    nmc-deploy simulate build --input OUT_DIR/spikes.npy

Needs torch, nir and sinabs (``make venv`` installs them).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import nir
import numpy as np
import torch

import nmc_deploy as nd

N_IN, N_HIDDEN, N_OUT = 20, 32, 10


def build_net(seed: int) -> torch.nn.Sequential:
    """The sinabs network: two IAF layers with sinabs' defaults (MultiSpike, subtract
    reset, no min_v_mem)."""
    import sinabs.layers as sl

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def linear(n_in, n_out, mean, scale):
        m = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(mean + scale * rng.standard_normal((n_out, n_in))))
            m.bias.copy_(torch.from_numpy(0.05 * rng.standard_normal(n_out)))
        return m

    def iaf():
        return sl.IAF()

    return torch.nn.Sequential(linear(N_IN, N_HIDDEN, 0.1, 0.4), iaf(),
                               linear(N_HIDDEN, N_OUT, 0.05, 0.4), iaf())


def export_nir(net: torch.nn.Sequential, path: Path) -> None:
    """sinabs' exporter, then nir.write (sinabs leaves torch tensors in the nodes: they are
    written as numpy arrays)."""
    import sinabs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = sinabs.to_nir(net, torch.zeros(1, 1, N_IN))

    def as_numpy(g):
        for node in g.nodes.values():
            if isinstance(node, nir.NIRGraph):
                as_numpy(node)
                continue
            for f in dataclasses.fields(node):
                value = getattr(node, f.name, None)
                if isinstance(value, torch.Tensor):
                    setattr(node, f.name, value.detach().double().numpy())
    as_numpy(graph)
    nir.write(str(path), graph)


def run_sinabs(net: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    """sinabs' own run on ``x`` (B, T, N_IN): the output layer's spikes (B, T, N_OUT)."""
    with torch.no_grad():
        for m in net:
            if hasattr(m, "reset_states"):
                m.reset_states()
        return net(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.uint8)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="16 samples of 30 steps")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.steps = 16, 30
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    net = build_net(args.seed)
    export_nir(net, out / "sinabs.nir")
    rng = np.random.default_rng(args.seed + 1)
    x = (rng.random((args.samples, args.steps, N_IN)) < 0.3).astype(np.uint8)
    theirs = run_sinabs(net, x)
    np.save(out / "spikes.npy", x)
    np.save(out / "sinabs_outputs.npy", theirs)
    print(f"sinabs: {int(theirs.sum()):,} output spikes on {args.samples} samples of "
          f"{args.steps} steps -> {out / 'sinabs.nir'}")

    build = nd.compile(out / "sinabs.nir", target="loihi2", out=out / "build",
                       convention="sinabs", v_min="none")
    timing = next((line for line in build.log if line.startswith("timing:")), "")
    print(f"compile: {build.neurons} neurons, {build.synapses} synapses, {build.cores_used} "
          f"cores; {timing}")
    sim = nd.simulate(build, inputs=out / "spikes.npy")
    flt, fixed = sim.outputs["float"], sim.outputs["reference"]
    summary = {"samples": args.samples, "steps": args.steps,
               "sinabs_output_spikes": int(theirs.sum()),
               "float_vs_sinabs": int(np.count_nonzero(flt != theirs)),
               "fixed_vs_float": int(np.count_nonzero(fixed != flt)),
               "output_entries": int(theirs.size), "cores_used": build.cores_used}
    print(f"float vs sinabs: {summary['float_vs_sinabs']} of {theirs.size:,} output entries "
          f"differ; fixed point vs float: {summary['fixed_vs_float']}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
