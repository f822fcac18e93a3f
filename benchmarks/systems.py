"""Systems of chips: cores, chips, what binds them and the spike traffic of a Spikformer.

A random Spikformer whose every layer fires (the test factory ``make_active_spikformer``:
32 x 32 x 3 input, 64 tokens, depth 2, embedding D) is lowered, quantized, its attention
split into units that fit a core and placed on each target (shared weights, the target's
default); a target it does not fit refuses it in
one line. On the ones it fits, 4 random images run on the reference simulator and their
spikes are routed on the placement (compile/traffic.py). Prints a markdown table.

Usage: .venv/bin/python benchmarks/systems.py D TARGET [TARGET ...]
       e.g. benchmarks/systems.py 64 loihi2 kapoho_point loihi1 nahuku32
"""
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_active_spikformer  # noqa: E402
from nmc_deploy.compile.attention_split import split_attention  # noqa: E402
from nmc_deploy.compile.lower import lower_graph  # noqa: E402
from nmc_deploy.compile.partition import partition_program  # noqa: E402
from nmc_deploy.compile.quantize import quantize_program  # noqa: E402
from nmc_deploy.compile.schedule import schedule_program  # noqa: E402
from nmc_deploy.compile.traffic import count_traffic, sender_events  # noqa: E402
from nmc_deploy.errors import NmcDeployError  # noqa: E402
from nmc_deploy.export.spikformer import export_spikformer  # noqa: E402
from nmc_deploy.models.spikformer import SpikformerConfig  # noqa: E402
from nmc_deploy.program import PlacementSummary  # noqa: E402
from nmc_deploy.simulate.reference import simulate_reference  # noqa: E402
from nmc_deploy.targets import load_target  # noqa: E402

SAMPLES = 4


def main():
    dim, targets = int(sys.argv[1]), sys.argv[2:]
    cfg = SpikformerConfig(img_size=32, in_channels=3, num_classes=10, embed_dim=dim,
                           num_heads=4, depth=2, mlp_ratio=4, time_steps=4,
                           sps_channels=(dim // 8, dim // 4, dim // 2, dim),
                           sps_pool=(False, False, True, True))
    graph = export_spikformer(make_active_spikformer(cfg, 0),
                              {"dataset": "cifar10", "input_levels": 255})
    x = np.random.default_rng(0).integers(0, 256, (SAMPLES, 3, 32, 32))
    print(f"Spikformer D={dim}, depth 2, 64 tokens, T=4 (random weights, every layer firing); "
          f"{SAMPLES} random images\n")
    print("| target | cores | chips | binds (cores of chip 0) | place s | msgs/step | "
          "between chips | tile hops E-W / N-S per step | chip hops/step | longest route "
          "(E-W, N-S; chips) | traffic s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(graph)
        for name in targets:
            target = load_target(name)
            program = split_attention(quantize_program(fp, schedule_program(fp), target=target),
                                      target)  # as compile_graph: units that fit a core
            t0 = time.perf_counter()
            try:
                placement = partition_program(program, target)
            except NmcDeployError as exc:
                print(f"| {name} | refused: {exc} |")
                continue
            t_place = time.perf_counter() - t0
            summary = PlacementSummary.from_json(placement.summary(program))
            run = simulate_reference(program, x)
            t0 = time.perf_counter()
            traffic = count_traffic(program, summary, *sender_events(program, run))
            t_traffic = time.perf_counter() - t0
            steps = SAMPLES * program.time_steps
            per = {k: traffic.total(k) / steps for k in
                   ("messages", "messages_between_chips", "tile_hops_ew", "tile_hops_ns",
                    "chip_hops")}
            first, route = summary.system.per_chip[0], traffic.longest_route
            print(f"| {name} | {placement.cores_used} | {summary.chips_used} | "
                  f"{first.binding} ({first.binding_cores}/{first.cores}) | {t_place:.1f} | "
                  f"{per['messages']:,.0f} | {per['messages_between_chips']:,.0f} | "
                  f"{per['tile_hops_ew']:,.0f} / {per['tile_hops_ns']:,.0f} | "
                  f"{per['chip_hops']:,.0f} | {route['tile_hops_ew']}, {route['tile_hops_ns']}; "
                  f"{route['chip_hops']} | {t_traffic:.1f} |")


if __name__ == "__main__":
    main()
