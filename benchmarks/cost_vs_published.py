"""The cost model against a published Loihi 2 measurement: PilotNet LIF (lava-dl).

Intel's lava-dl tutorial ``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb`` runs the
PilotNet LIF network (``network.net``: input 200x66x3, five 3x3 convolutions, four dense
layers) on one Loihi 2 chip (Oheo Gulch), one frame held as the input layer's bias, reset
every 16 steps, and prints Intel's profiler results (throughput, total / static / dynamic
power, energy per inference) and the compiler's per-core distribution (74 cores).

lava-dl's own hardware test data (``tests/lava/lib/dl/netx/gts/pilotnet_lif/``: the same
``network.net`` byte for byte, a PilotNet frame ``image.npy`` and every layer's spike raster
over 24 steps: the ground truth lava-dl's Loihi 2 hardware test compares the chip's states
with, bit for bit) give the workload: this script counts, from the first 16
steps (one reset interval = one inference), per layer the synaptic operations (input spikes x
nonzero weights they reach), spikes and neuron updates; per core (the compiler's split: each
layer cut into slabs along its width, as printed) its share; and the messages between cores
(one per spike and destination core, from the convolution geometry), then prices them with
``estimate_costs`` on the ``loihi2`` target and prints the comparison (markdown) and
writes ``docs/data/cost_vs_published.json``.

Usage: .venv/bin/python benchmarks/cost_vs_published.py GTS_DIR
       GTS_DIR: a lava-dl checkout's tests/lava/lib/dl/netx/gts/pilotnet_lif (lava-nc/lava-dl
       @d825ac5; network.net, image.npy, input.npy, conv-{0..4}.npy, fc-{0..2}.npy)
"""
import json
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's nmc_deploy

from nmc_deploy.report.energy import estimate_costs  # noqa: E402
from nmc_deploy.targets import load_target  # noqa: E402

STEPS = 16  # reset_interval of the benchmark: one inference
# Intel's profiler output, pilotnet_snn/benchmark.ipynb at lava-nc/lava-dl @b9e3691
# (2023-01-10; @baa23ad and @76c8fbb printed 413.76 and 415.51 fps, 1.070 and 0.562 mJ)
MEASURED = {"source": "lava-nc/lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb "
                      "@b9e3691 (Loihi 2, oheogulch, 1 chip, 74 cores)",
            "fps": 408.91, "total_power_w": 0.679234, "static_power_w": 0.232078,
            "dynamic_power_w": 0.447156, "total_energy_mj": 1.661103,
            "dynamic_energy_mj": 1.093544,
            "other_runs": {"baa23ad": {"fps": 413.76, "dynamic_energy_mj": 1.070673,
                                       "total_energy_mj": 1.818389},
                           "76c8fbb": {"fps": 415.51, "dynamic_energy_mj": 0.562239,
                                       "total_energy_mj": 0.990769}}}
# (name, h5 layer, raster, output (W, H, C), stride (W, H), pad (W, H), cores, slab width):
# shapes as netx prints them; cores and slabs from the compiler's per-core distribution
# printed in the same notebook (e.g. 'Conv(4, 32, 24)' on 25 cores).
LAYERS = [
    ("input", 0, "input", (200, 66, 3), None, None, 13, 16),
    ("conv0", 1, "conv-0", (99, 32, 24), (2, 2), (0, 0), 25, 4),
    ("conv1", 2, "conv-1", (49, 15, 36), (2, 2), (0, 0), 13, 4),
    ("conv2", 3, "conv-2", (24, 7, 48), (2, 2), (0, 0), 3, 8),
    ("conv3", 4, "conv-3", (22, 4, 64), (1, 2), (0, 1), 3, 8),
    ("conv4", 5, "conv-4", (20, 2, 64), (1, 1), (0, 0), 2, 16),
    ("fc0", 7, "fc-0", (100,), None, None, 12, None),
    ("fc1", 8, "fc-1", (50,), None, None, 1, None),
    ("fc2", 9, "fc-2", (10,), None, None, 1, None),
    ("fc3", 10, None, (1,), None, None, 1, None),
]
MESH_X = 16  # loihi2.toml: 16 x 8 tiles, one core each; cores placed in layer order


def conv_synops_per_column(spikes, mask, stride, pad, out_w, out_h):
    """Per output column ox: synaptic ops over the steps (spikes (W, H, C, T) x the nonzero
    weights they reach; mask (out, in, kW, kH))."""
    fan = mask.sum(axis=0)  # (in, kW, kH): outputs each input tap reaches
    s = np.pad(spikes.astype(np.int64), ((pad[0], pad[0]), (pad[1], pad[1]), (0, 0), (0, 0)))
    per_col = np.zeros(out_w)
    for kx in range(fan.shape[1]):
        for ky in range(fan.shape[2]):
            win = s[kx:kx + stride[0] * out_w:stride[0], ky:ky + stride[1] * out_h:stride[1]]
            per_col += np.einsum("xyct,c->x", win[:out_w, :out_h], fan[:, kx, ky])
    return per_col


def slabs(width, slab, cores):
    return [(i * slab, min(width, (i + 1) * slab)) for i in range(cores)]


def main():
    gts = Path(sys.argv[1])
    net = h5py.File(gts / "network.net", "r")["layer"]
    rasters = {name: np.load(gts / f"{raster}.npy")[..., :STEPS].astype(bool)
               for name, _, raster, *_ in LAYERS if raster}
    rasters["fc3"] = np.zeros((1, STEPS), bool)  # the readout layer does not spike
    core_of, cores, core_id = {}, [], 0
    for name, _, _, shape, _, _, n_cores, slab in LAYERS:
        neurons = int(np.prod(shape))
        ranges = slabs(shape[0], slab, n_cores) if slab else \
            [(neurons * i // n_cores, neurons * (i + 1) // n_cores) for i in range(n_cores)]
        per_col = neurons // shape[0] if slab else 1
        for lo, hi in ranges:
            cores.append({"core": core_id, "chip": 0, "tile": [core_id % MESH_X,
                                                              core_id // MESH_X],
                          "populations": [{"name": name,
                                           "fraction": (hi - lo) * per_col / neurons}]})
            core_of.setdefault(name, []).append((core_id, lo, hi))
            core_id += 1
    layers, pairs = [], {}
    for (src, *_), (dst, h5i, _, shape, stride, pad, _, slab) in zip(LAYERS, LAYERS[1:]):
        w = net[str(h5i)]["weight"][()]
        s = rasters[src]
        if stride:  # conv: h5 weight (out, in, kH, kW) -> mask (out, in, kW, kH)
            mask = (w != 0).transpose(0, 1, 3, 2)
            per_col = conv_synops_per_column(s, mask, stride, pad, shape[0], shape[1])
            synops = per_col.sum()
            col_spikes = s.sum(axis=(1, 2, 3))
            for a, alo, ahi in core_of[src]:  # messages: spike x destination slabs it reaches
                for x in range(alo, ahi):
                    lo = max(0, -(-(x + pad[0] - 2) // stride[0]))
                    hi = min(shape[0] - 1, (x + pad[0]) // stride[0])
                    for b, blo, bhi in core_of[dst]:
                        if lo <= hi and blo <= hi and lo < bhi:
                            pairs[(a, b)] = pairs.get((a, b), 0) + int(col_spikes[x])
        else:  # dense (after flatten): every spike reaches its column's nonzero weights
            spikes = s.reshape(-1, STEPS).sum(axis=1)
            synops = spikes.sum() * (w != 0).sum(axis=0).mean()
            for a, alo, ahi in core_of[src]:
                frac = (ahi - alo) / (s.shape[0] if len(s.shape) == 2 else s.shape[0])
                sent = int(round(spikes.sum() * frac))
                for b, *_ in core_of[dst]:
                    pairs[(a, b)] = pairs.get((a, b), 0) + sent
        layers.append({"name": f"{src}->{dst}", "kind": "synapses", "synops": int(round(synops)),
                       "synapses": int((w != 0).sum()), "population": dst})
    pops = [{"name": name, "neurons": int(np.prod(shape)), "spikes": int(rasters[name].sum()),
             "neuron_updates": int(np.prod(shape)) * STEPS,
             "active_updates": int(np.prod(shape)) * STEPS}
            for name, _, _, shape, *_ in LAYERS]
    tiles = {c["core"]: c["tile"] for c in cores}
    keys = sorted(pairs)
    hops = [abs(tiles[a][0] - tiles[b][0]) + abs(tiles[a][1] - tiles[b][1]) for a, b in keys]
    ew = [abs(tiles[a][0] - tiles[b][0]) for a, b in keys]
    ns = [abs(tiles[a][1] - tiles[b][1]) for a, b in keys]
    msgs = [pairs[k] for k in keys]
    traffic = {
        "senders": [{"name": "all", "population": "input", "messages": sum(msgs),
                     "messages_between_chips": 0,
                     "tile_hops_ew": int(np.dot(msgs, ew)), "tile_hops_ns": int(np.dot(msgs, ns)),
                     "chip_hops": 0}],
        "longest_route": {"tile_hops_ew": max(ew), "tile_hops_ns": max(ns), "chip_hops": 0},
        "not_counted": ["host input (the frame is the input layer's bias)"],
        "core_pairs": {"source": [a for a, _ in keys], "destination": [b for _, b in keys],
                       "messages": msgs, "hops": [m * h for m, h in zip(msgs, hops)],
                       "chip_hops": [0] * len(keys)}}
    activity = {"backend": "lava-dl Loihi 2 spike rasters (tests/.../gts/pilotnet_lif)",
                "samples": 1, "time_steps": STEPS, "pipeline_depth": 0, "layers": layers,
                "populations": pops, "traffic": traffic}
    program = {"target": "loihi2", "cores_used": len(cores), "cores": cores}
    report = estimate_costs(activity, program, load_target("loihi2"))
    write(report, activity, program)


def write(report, activity, program):
    lat, model = report["latency"], "loihi_davies2018"
    br = report["energy_breakdown_pj_per_sample"][model]
    dyn_mj = sum(v for k, v in br.items() if k != "static") * 1e-9
    static_mj = br["static"] * 1e-9
    step_us_meas = 1e6 / MEASURED["fps"] / STEPS
    ours = {"step_us": lat["per_step_ns"] / 1000, "fps": 1e6 / lat["per_sample_us"],
            "dynamic_energy_mj": dyn_mj, "static_energy_mj": static_mj,
            "total_energy_mj": dyn_mj + static_mj,
            "static_energy_mj_at_measured_runtime": MEASURED["static_power_w"] / MEASURED["fps"]
            * 1e3}
    per_sample = report["per_sample"]
    print(f"workload per inference ({STEPS} steps): synops {per_sample['synops']:,.0f}, spikes "
          f"{per_sample['spikes']:,.0f}, neuron updates {per_sample['neuron_updates']:,.0f}, "
          f"messages {report['traffic']['per_sample']['messages']:,.0f}; cores "
          f"{report['cores_used']}; critical core {lat['critical_core']} ("
          f"{program['cores'][lat['critical_core']]['populations']}, {lat['bound']}-bound), "
          f"terms {({k: round(v, 1) for k, v in lat['critical_terms_ns'].items()})} ns")
    print("| quantity | measured (Loihi 2) | model (loihi2 target) | model / measured |")
    print("|---|---|---|---|")
    rows = [("time per step [us]", step_us_meas, ours["step_us"]),
            ("inferences per second", MEASURED["fps"], ours["fps"]),
            ("dynamic energy per inference [mJ]", MEASURED["dynamic_energy_mj"],
             ours["dynamic_energy_mj"]),
            ("static energy per inference [mJ]",
             MEASURED["total_energy_mj"] - MEASURED["dynamic_energy_mj"],
             ours["static_energy_mj"]),
            ("total energy per inference [mJ]", MEASURED["total_energy_mj"],
             ours["total_energy_mj"])]
    for name, meas, est in rows:
        print(f"| {name} | {meas:.4g} | {est:.4g} | {est / meas:.2f} |")
    print("dynamic breakdown [mJ]: " + ", ".join(
        f"{k} {v * 1e-9:.4g}" for k, v in br.items() if k != "static"))
    out = Path(__file__).resolve().parents[1] / "docs" / "data" / "cost_vs_published.json"
    out.write_text(json.dumps({"measured": MEASURED, "model": ours,
                               "breakdown_pj": br, "latency": {
                                   k: lat[k] for k in ("per_step_ns", "critical_core", "bound",
                                                       "critical_terms_ns", "barrier_ns",
                                                       "route_ns_per_step")},
                               "per_sample": per_sample,
                               "layers": activity["layers"]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
