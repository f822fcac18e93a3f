"""Latency and energy models on hand-computed two-core programs with known traffic."""
from __future__ import annotations

import copy
import math

import pytest

from nmc_deploy.program.activity import Activity
from nmc_deploy.program.placement import PlacementSummary
from nmc_deploy.report.energy import estimate_costs
from nmc_deploy.report.latency import barrier_ns
from nmc_deploy.targets import load_target


def _core(i: int, pop: str, chip: int, tile: list[int]) -> dict:
    return {"core": i, "populations": [{"name": pop, "fraction": 1.0}], "chip": chip,
            "tile": tile}


def one_chip() -> tuple[dict, dict]:
    """Loihi 1, 1 sample x 10 steps. Population a (core 0, tile (0, 0)) fed by layer fa,
    b (core 1, tile (3, 0): 3 east-west hops away) fed by fb; a sends 50 messages to core 1,
    b 20 back to core 0."""
    activity = {
        "backend": "reference", "samples": 1, "time_steps": 10, "pipeline_depth": 0,
        "layers": [{"name": "fa", "kind": "synapses", "synops": 2000, "synapses": 10,
                    "population": "a"},
                   {"name": "fb", "kind": "synapses", "synops": 1000, "synapses": 10,
                    "population": "b"}],
        "populations": [{"name": "a", "neurons": 100, "spikes": 50, "neuron_updates": 1000,
                         "active_updates": 400},
                        {"name": "b", "neurons": 50, "spikes": 20, "neuron_updates": 500,
                         "active_updates": 100}],
        "traffic": {
            "senders": [{"name": "a", "population": "a", "messages": 50,
                         "messages_between_chips": 0, "tile_hops_ew": 150, "tile_hops_ns": 0,
                         "chip_hops": 0},
                        {"name": "b", "population": "b", "messages": 20,
                         "messages_between_chips": 0, "tile_hops_ew": 60, "tile_hops_ns": 0,
                         "chip_hops": 0}],
            "longest_route": {"tile_hops_ew": 3, "tile_hops_ns": 0, "chip_hops": 0},
            "not_counted": [],
            "core_pairs": {"source": [0, 1], "destination": [1, 0], "messages": [50, 20],
                           "hops": [150, 60], "chip_hops": [0, 0]}},
    }
    program = {"target": "loihi1", "cores_used": 2,
               "cores": [_core(0, "a", 0, [0, 0]), _core(1, "b", 0, [3, 0])]}
    return activity, program


# Hand computation for one_chip() on loihi1 (per step = totals / 10 recorded steps):
# core 0: synops 200 x 3.5 = 700; updates 40 x 8.4 + 60 x 5.3 = 336 + 318 = 654;
#         messages 5 sent x 5.1 + 2 received x 16 = 25.5 + 32 = 57.5      busy 1411.5 ns
# core 1: synops 100 x 3.5 = 350; updates 10 x 8.4 + 40 x 5.3 = 84 + 212 = 296;
#         messages 2 sent x 5.1 + 5 received x 16 = 10.2 + 80 = 90.2      busy  736.2 ns
# route: 3 E-W hops x 4.1 = 12.3 ns; barrier: 2 of 32 tiles, 113 + 352 x log2(2)/log2(32)
# = 183.4 ns; step = 1411.5 + 12.3 + 183.4 = 1607.2 ns; sample = 10 steps = 16.072 us.
# Bounds of core 0: memory 700, compute 654, traffic 57.5 + 12.3 + 183.4 = 253.2 -> memory.
ONE_CHIP_TERMS = {"synops": 700.0, "neuron_updates": 654.0, "messages": 57.5, "route": 12.3,
                  "barrier": 183.4}
ONE_CHIP_STEP_NS = 1607.2


def test_two_cores_one_chip_latency_by_hand():
    activity, program = one_chip()
    lat = estimate_costs(activity, program, load_target("loihi1"))["latency"]
    assert lat["critical_terms_ns"] == pytest.approx(ONE_CHIP_TERMS)
    assert lat["per_step_ns"] == pytest.approx(ONE_CHIP_STEP_NS)
    assert lat["per_sample_us"] == pytest.approx(16.072)
    assert lat["critical_core"] == 0 and lat["bound"] == "memory"
    assert lat["bounds_ns"] == pytest.approx({"memory": 700.0, "compute": 654.0,
                                              "traffic": 253.2})
    assert lat["barrier_ns"] == pytest.approx(183.4)
    assert lat["barrier"] == {"tiles": 2, "chips": 1, "tiles_from": "placed tiles"}
    assert lat["route_ns_per_step"] == pytest.approx(12.3)
    core0, core1 = lat["cores"]
    assert core0["messages_sent_per_step"] == 5 and core0["messages_received_per_step"] == 2
    assert core1["terms_ns"] == pytest.approx({"synops": 350.0, "neuron_updates": 296.0,
                                               "messages": 90.2})
    assert core1["busy_ns_per_step"] == pytest.approx(736.2)


def test_two_cores_one_chip_energy_by_hand():
    activity, program = one_chip()
    report = estimate_costs(activity, program, load_target("loihi1"))
    # per sample (1 sample): synops 3000 x 23.6 = 70 800 pJ; updates a 400 x 81 + 600 x 52
    # = 63 600, b 100 x 81 + 400 x 52 = 28 900; spikes 70 x 1.7 = 119; tile hops (150 + 60)
    # x 3.0 = 630 (all east-west); no chip hops; static 104 mW x 1 chip x 16.072 us
    # = 1 671 488 pJ
    static = 104.0 * 16.072 * 1e3
    expected = {"synops": 70800.0, "neuron_updates": 92500.0, "spikes": 119.0,
                "tile_hops": 630.0, "chip_hops": 0.0, "static": static}
    breakdown = report["energy_breakdown_pj_per_sample"]["loihi_davies2018"]
    assert breakdown == pytest.approx(expected)
    assert report["energy_per_sample_uj"]["loihi_davies2018"] == \
        pytest.approx(sum(expected.values()) * 1e-6)
    assert report["static"] == pytest.approx({
        "power_mw_per_chip": 104.0, "chips_powered": 1, "runtime_us_per_sample": 16.072,
        "energy_pj_per_sample": static, "basis": "inferred",
        "source": report["static"]["source"], "split": report["static"]["split"]})
    # static split by core time of synops + updates: a 700 + 654 = 1354, b 350 + 296 = 646
    fa = report["layers"][0]["energy_pj_per_sample"]["loihi_davies2018"]
    assert fa == pytest.approx(47200 + 63600 + 50 * 1.7 + 150 * 3.0 + static * 1354 / 2000)
    fb = report["layers"][1]["energy_pj_per_sample"]["loihi_davies2018"]
    assert fb == pytest.approx(23600 + 28900 + 20 * 1.7 + 60 * 3.0 + static * 646 / 2000)
    # the 45 nm convention beside it: 3000 ACs x 0.9 pJ, nothing else
    assert report["energy_per_sample_uj"]["cmos45nm"] == pytest.approx(2700e-6)
    terms = report["energy_terms"]["loihi_davies2018"]
    assert terms["synops"]["basis"] == ["published"]
    assert terms["chip_hops"]["label"].startswith("assumption")
    assert terms["static"]["label"].startswith("estimated")


def two_chips() -> tuple[dict, dict]:
    """Kapoho Point (Loihi 2 chips), 2 samples x 5 steps + pipeline depth 1. Population a on
    core 0 of chip 0, b on core 1 of chip 1 (same tile position): a's 10 messages each cross
    one chip-to-chip link."""
    activity = {
        "backend": "reference", "samples": 2, "time_steps": 5, "pipeline_depth": 1,
        "layers": [{"name": "enc", "kind": "encoding", "synops": 400, "synapses": 10,
                    "population": "a"},
                   {"name": "fc", "kind": "synapses", "synops": 200, "synapses": 10,
                    "population": "b"}],
        "populations": [{"name": "a", "neurons": 10, "spikes": 10, "neuron_updates": 100,
                         "active_updates": 50},
                        {"name": "b", "neurons": 10, "spikes": 4, "neuron_updates": 100,
                         "active_updates": 20}],
        "traffic": {
            "senders": [{"name": "a", "population": "a", "messages": 10,
                         "messages_between_chips": 10, "tile_hops_ew": 0, "tile_hops_ns": 0,
                         "chip_hops": 10}],
            "longest_route": {"tile_hops_ew": 0, "tile_hops_ns": 0, "chip_hops": 1},
            "not_counted": ["b's output to the host"],
            "core_pairs": {"source": [0], "destination": [1], "messages": [10], "hops": [0],
                           "chip_hops": [10]}},
    }
    program = {"target": "kapoho_point", "cores_used": 2,
               "cores": [_core(0, "a", 0, [0, 0]), _core(1, "b", 1, [0, 0])]}
    return activity, program


def test_two_chips_latency_and_energy_by_hand():
    activity, program = two_chips()
    report = estimate_costs(activity, program, load_target("kapoho_point"))
    lat = report["latency"]
    # per step (10 recorded steps). core 0: synops 40 x 3.5 = 140; updates 5 x 8.4 + 5 x 5.3
    # = 68.5; 1 message sent x 5.1 = 5.1 -> 213.6 ns. core 1: 20 x 3.5 = 70; 2 x 8.4 + 8 x 5.3
    # = 59.2; 1 received x 16 = 16 -> 145.2 ns. Route: 1 chip hop x 150 ns. Barrier on 2
    # chips: 465 + (16 200 - 465) x log2(2) / log2(768) = 2106.63 ns -> traffic-bound.
    barrier = 465 + 15735 / math.log2(768)
    assert barrier == pytest.approx(2106.63, abs=0.01)
    terms = {"synops": 140.0, "neuron_updates": 68.5, "messages": 5.1, "route": 150.0,
             "barrier": barrier}
    assert lat["critical_terms_ns"] == pytest.approx(terms)
    assert lat["critical_core"] == 0 and lat["bound"] == "traffic"
    step = sum(terms.values())                                       # 2470.23 ns
    assert lat["per_step_ns"] == pytest.approx(step)
    assert lat["per_sample_us"] == pytest.approx(6 * step / 1000)    # (T 5 + depth 1) steps
    assert lat["cores"][1]["busy_ns_per_step"] == pytest.approx(145.2)
    # static: 232 mW (Loihi 2, Intel's profiler) x 2 chips powered x 14.82 us per sample
    static = 232.0 * 2 * (6 * step / 1000) * 1e3
    assert report["static"]["chips_powered"] == 2
    assert report["static"]["energy_pj_per_sample"] == pytest.approx(static)
    # per sample (2 samples): synops 600 x 23.6 / 2; updates (50 x 81 + 50 x 52 + 20 x 81
    # + 80 x 52) / 2; spikes 14 x 1.7 / 2; chip hops 10 x 13.5 / 2
    expected = {"synops": 7080.0, "neuron_updates": 6215.0, "spikes": 11.9,
                "tile_hops": 0.0, "chip_hops": 67.5, "static": static}
    assert report["energy_breakdown_pj_per_sample"]["loihi_davies2018"] == \
        pytest.approx(expected)
    layers_pj = sum(r["energy_pj_per_sample"]["loihi_davies2018"] for r in report["layers"])
    assert layers_pj == pytest.approx(sum(expected.values()))


def test_old_activity_without_core_pairs_still_prices():
    activity, program = one_chip()
    del activity["traffic"]["core_pairs"]
    assert Activity.from_json(activity).traffic.core_pairs is None
    report = estimate_costs(activity, program, load_target("loihi1"))
    lat = report["latency"]
    # no message work: core 0 is 700 + 654 = 1354 ns; route and barrier as before
    assert lat["critical_terms_ns"] == pytest.approx({**ONE_CHIP_TERMS, "messages": 0.0})
    assert lat["per_step_ns"] == pytest.approx(1354 + 12.3 + 183.4)
    assert all(c["terms_ns"]["messages"] == 0 for c in lat["cores"])
    assert any("message send/receive work is 0: the activity file has no traffic.core_pairs"
               in a for a in report["assumptions"])
    # no traffic at all: no route either, and said so
    del activity["traffic"]
    bare = estimate_costs(activity, program, load_target("loihi1"))
    assert bare["latency"]["per_step_ns"] == pytest.approx(1354 + 183.4)
    assert "longest_route" not in bare["latency"]
    assert any("message send/receive work is 0 and spike routing time is not modelled" in a
               for a in bare["assumptions"])


def test_barrier_interpolation():
    loihi1 = load_target("loihi1")
    assert barrier_ns(loihi1, 1, 1) == 113.0
    assert barrier_ns(loihi1, 32, 1) == pytest.approx(465.0)     # Davies 2018: 32 tiles
    assert barrier_ns(loihi1, 4, 1) == pytest.approx(113 + 352 * 2 / 5)
    assert barrier_ns(loihi1, 768, 768) == pytest.approx(16200.0)  # Frady 2020: 768 chips
    # Frady 2020 also measured 14.3 us on 256 chips; the log2 law gives 13.6 us (-5 %)
    assert barrier_ns(loihi1, 1, 256) == pytest.approx(465 + 15735 * 8 / math.log2(768))  # 13 598
    grows = [barrier_ns(loihi1, t, 1) for t in (1, 2, 4, 8, 16, 32)]
    assert grows == sorted(grows) and len(set(grows)) == 6


def test_critical_core_moves_with_the_work():
    activity, program = one_chip()
    activity = copy.deepcopy(activity)
    activity["layers"][1]["synops"] = 8000  # b's core now does 800 synops per step
    lat = estimate_costs(activity, program, load_target("loihi1"))["latency"]
    assert lat["critical_core"] == 1 and lat["bound"] == "memory"
    assert lat["critical_terms_ns"]["synops"] == pytest.approx(2800.0)


def test_placement_without_tiles_assumes_packed_tiles():
    activity, program = one_chip()
    for core in program["cores"]:
        del core["tile"], core["chip"]
    summary = PlacementSummary.from_json(program)
    assert all(c.tile is None for c in summary.cores)
    lat = estimate_costs(activity, program, load_target("loihi1"))["latency"]
    assert lat["barrier"]["tiles"] == 1 and lat["barrier_ns"] == 113.0  # 2 cores, 4 per tile
    assert "packed" in lat["barrier"]["tiles_from"]


def test_attention_ops_count_on_the_units_cores():
    """An attention layer into b whose op has two unit cores (ops_per_step 3 : 1): its
    synaptic ops leave b's core and go to the units, 3 : 1. By hand (loihi1, per step):
    attention ops 4000 / 10 = 400 -> unit 2: 300 x 3.5 = 1050 ns, unit 3: 100 x 3.5 = 350 ns;
    core 1 keeps fb's 100 x 3.5 = 350 ns of synops."""
    activity, program = one_chip()
    activity["layers"].append({"name": "att", "kind": "attention", "synops": 4000,
                               "synapses": 0, "population": "b"})
    program["cores"] += [{"core": 2, "kind": "attention", "attention": "att[h0:1]",
                          "populations": [], "chip": 0, "tile": [1, 0], "ops_per_step": 3},
                         {"core": 3, "kind": "attention", "attention": "att[h1:2]",
                          "populations": [], "chip": 0, "tile": [2, 0], "ops_per_step": 1}]
    program["cores_used"] = 4
    rep = estimate_costs(activity, program, load_target("loihi1"))
    rows = {r["core"]: r for r in rep["latency"]["cores"]}
    assert rows[2]["terms_ns"]["synops"] == pytest.approx(1050.0)
    assert rows[3]["terms_ns"]["synops"] == pytest.approx(350.0)
    assert rows[1]["terms_ns"]["synops"] == pytest.approx(350.0)
    assert rows[0]["terms_ns"]["synops"] == pytest.approx(700.0)
