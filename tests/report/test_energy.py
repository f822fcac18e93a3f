"""Energy and latency estimates, checked against hand-computed values."""
from __future__ import annotations

import copy
import json
import random

import pytest

from nmc_deploy.errors import InputFileError
from nmc_deploy.report.energy import ESTIMATED, MEASURED, estimate_costs
from nmc_deploy.targets import load_target


def tiny_activity() -> dict:
    """2 samples x 4 steps; an input population fed by no layer, two LIF populations."""
    return {
        "backend": "reference", "samples": 2, "time_steps": 4, "pipeline_depth": 2,
        "layers": [
            {"name": "enc", "kind": "encoding", "synops": 1000, "synapses": 300,
             "population": "lif1"},
            {"name": "fc1", "kind": "synapses", "synops": 400, "synapses": 200,
             "population": "lif2"},
            {"name": "attn", "kind": "attention", "synops": 100, "synapses": 0,
             "population": "lif2"},
        ],
        "populations": [
            {"name": "inp", "neurons": 10, "spikes": 30, "neuron_updates": 80,
             "active_updates": 0},
            {"name": "lif1", "neurons": 20, "spikes": 50, "neuron_updates": 160,
             "active_updates": 120},
            {"name": "lif2", "neurons": 10, "spikes": 20, "neuron_updates": 80,
             "active_updates": 40},
        ],
    }


def tiny_program(target: str = "loihi1") -> dict:
    """lif1 on core 0; lif2 split 3/4 on core 1 and 1/4 on core 0; inp stays on the host."""
    def core(i, pops):
        return {"core": i, "populations": pops, "neurons": 0, "synapses": 0,
                "synapse_memory_bits": 0, "in_axons": 0, "out_axons": 0}
    return {"target": target, "cores_used": 2, "cores": [
        core(0, [{"name": "lif1", "neurons": 20, "fraction": 1.0},
                 {"name": "lif2", "neurons": 2, "fraction": 0.25}]),
        core(1, [{"name": "lif2", "neurons": 8, "fraction": 0.75}]),
    ]}


@pytest.fixture(scope="module")
def loihi1():
    return load_target("loihi1")


@pytest.fixture()
def report(loihi1):
    return estimate_costs(tiny_activity(), tiny_program(), loihi1)


def _layer(report, name):
    return next(row for row in report["layers"] if row["name"] == name)


def test_counts_per_sample(report):
    ps = report["per_sample"]
    assert ps["synops"] == 750            # (1000 + 400 + 100) / 2
    assert ps["macs_encoding"] == 500     # 1000 / 2
    assert ps["acs"] == 250               # (400 + 100) / 2
    assert ps["attention_ops"] == 50
    assert ps["spikes"] == 50             # (30 + 50 + 20) / 2
    assert ps["neuron_updates"] == 160    # (80 + 160 + 80) / 2
    assert report["samples"] == 2 and report["cores_used"] == 2
    assert report["target"] == "loihi1" and report["backend"] == "reference"


def test_cmos45nm_by_hand(report):
    # E_MAC 4.6 pJ on the encoding layer's MACs, E_AC 0.9 pJ on everything else
    total_pj = 4.6 * 1000 + 0.9 * (400 + 100)                       # 5050 pJ, 2 samples
    assert report["energy_per_sample_uj"]["cmos45nm"] == pytest.approx(total_pj / 2 * 1e-6)
    assert _layer(report, "enc")["energy_pj_per_sample"]["cmos45nm"] == pytest.approx(2300.0)
    assert _layer(report, "fc1")["energy_pj_per_sample"]["cmos45nm"] == pytest.approx(180.0)
    assert _layer(report, "attn")["energy_pj_per_sample"]["cmos45nm"] == pytest.approx(45.0)
    assert _layer(report, "inp")["energy_pj_per_sample"]["cmos45nm"] == 0.0


# latency of tiny_program on loihi1 (see test_latency_by_hand): core 0 is busiest with
# (1000/8 + 0.25 x 500/8) x 3.5 + (120/8 + 0.25 x 40/8) x 8.4 + (40/8 + 0.25 x 40/8) x 5.3
# = 661.8125 ns; barrier 113 ns (2 cores, no tiles recorded: packed on 1 tile); 6 steps
STEP_NS = 661.8125 + 113.0
SAMPLE_US = 6 * STEP_NS / 1000                                  # 4.648875 us
STATIC_PJ = 104.0 * 1 * SAMPLE_US * 1e3                         # 104 mW x 1 chip: 483 483 pJ
# the static split: per population its synops + update time per step on its cores
BUSY = {"lif1": 125 * 3.5 + 15 * 8.4 + 5 * 5.3,                 # 590 ns
        "lif2": 62.5 * 3.5 + 5 * 8.4 + 5 * 5.3, "inp": 0.0}     # 287.25 ns; inp on the host


def test_loihi_davies2018_by_hand(report):
    synops = 23.6 * 1500
    updates = 81 * (0 + 120 + 40) + 52 * (80 + 40 + 40)
    spikes = 1.7 * 100
    total_pj = synops + updates + spikes                            # 56 850 pJ, 2 samples
    assert report["energy_per_sample_uj"]["loihi_davies2018"] == \
        pytest.approx(total_pj / 2e6 + STATIC_PJ * 1e-6)
    breakdown = report["energy_breakdown_pj_per_sample"]["loihi_davies2018"]
    assert breakdown == pytest.approx({"synops": synops / 2, "neuron_updates": updates / 2,
                                       "spikes": spikes / 2, "static": STATIC_PJ})
    assert report["static"]["energy_pj_per_sample"] == pytest.approx(STATIC_PJ)
    assert report["static"]["chips_powered"] == 1
    assert report["static"]["power_mw_per_chip"] == 104.0
    assert report["static"]["basis"] == "inferred"
    share = {k: v / sum(BUSY.values()) for k, v in BUSY.items()}
    # enc: own synops + all of lif1 (its only feeder), static included
    lif1 = 81 * 120 + 52 * 40 + 1.7 * 50
    assert _layer(report, "enc")["energy_pj_per_sample"]["loihi_davies2018"] \
        == pytest.approx((23.6 * 1000 + lif1) / 2 + share["lif1"] * STATIC_PJ)
    # fc1 and attn share lif2 in proportion 400 : 100
    lif2 = 81 * 40 + 52 * 40 + 1.7 * 20
    assert _layer(report, "fc1")["energy_pj_per_sample"]["loihi_davies2018"] \
        == pytest.approx((23.6 * 400 + 0.8 * lif2) / 2 + 0.8 * share["lif2"] * STATIC_PJ)
    assert _layer(report, "attn")["energy_pj_per_sample"]["loihi_davies2018"] \
        == pytest.approx((23.6 * 100 + 0.2 * lif2) / 2 + 0.2 * share["lif2"] * STATIC_PJ)
    # the host-fed input population gets its own row (no core time: no static share)
    inp = _layer(report, "inp")
    assert inp["kind"] == "population" and inp["synops_per_sample"] == 0
    assert inp["energy_pj_per_sample"]["loihi_davies2018"] \
        == pytest.approx((52 * 80 + 1.7 * 30) / 2)
    # the 45 nm convention stays compute-only
    assert report["energy_breakdown_pj_per_sample"]["cmos45nm"]["static"] == 0.0
    terms = report["energy_terms"]
    assert terms["loihi_davies2018"]["static"]["basis"] == ["inferred"]
    assert terms["cmos45nm"]["static"]["label"] == "not priced (0)"


def test_encoding_is_a_mac_only_in_cmos45nm(loihi1):
    base = estimate_costs(tiny_activity(), tiny_program(), loihi1)
    activity = tiny_activity()
    activity["layers"][0]["kind"] = "synapses"
    as_ac = estimate_costs(activity, tiny_program(), loihi1)
    diff_uj = base["energy_per_sample_uj"]["cmos45nm"] - as_ac["energy_per_sample_uj"]["cmos45nm"]
    assert diff_uj == pytest.approx((4.6 - 0.9) * 1000 / 2 * 1e-6)
    assert base["energy_per_sample_uj"]["loihi_davies2018"] \
        == as_ac["energy_per_sample_uj"]["loihi_davies2018"]


def test_latency_by_hand(report):
    steps = 2 * 4                                   # recorded steps: samples x T
    # core 0: all of lif1 + 1/4 of lif2; core 1: 3/4 of lif2 (per-step averages)
    core0 = (1000 / steps + 0.25 * 500 / steps) * 3.5 \
        + (120 / steps + 0.25 * 40 / steps) * 8.4 + (40 / steps + 0.25 * 40 / steps) * 5.3
    core1 = 0.75 * 500 / steps * 3.5 + 0.75 * 40 / steps * 8.4 + 0.75 * 40 / steps * 5.3
    step_ns = 113.0 + max(core0, core1)
    assert step_ns == pytest.approx(STEP_NS)
    assert report["latency"]["per_step_ns"] == pytest.approx(step_ns)
    assert report["latency"]["critical_core"] == 0
    assert report["latency"]["steps_per_sample"] == 6
    assert report["latency_per_sample_us"] == pytest.approx((4 + 2) * step_ns / 1000)
    assert "estimated" in report["latency_model"]
    assert report["labels"]["latency_per_sample_us"] == ESTIMATED


def test_layers_sum_to_total(report):
    for model, total_uj in report["energy_per_sample_uj"].items():
        layers_pj = sum(row["energy_pj_per_sample"][model] for row in report["layers"])
        assert layers_pj == pytest.approx(total_uj * 1e6, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_layers_sum_to_total_random(seed, loihi1):
    rng = random.Random(seed)
    pops = [{"name": f"p{i}", "neurons": 10, "spikes": rng.randint(0, 500),
             "neuron_updates": 400, "active_updates": rng.randint(0, 400)} for i in range(4)]
    layers = [{"name": f"l{i}", "kind": rng.choice(["encoding", "synapses", "attention"]),
               "synops": rng.choice([0, rng.randint(0, 10**6)]), "synapses": 5,
               "population": f"p{rng.randint(0, 3)}"} for i in range(7)]
    activity = {"backend": "reference", "samples": 3, "time_steps": 5, "pipeline_depth": 1,
                "layers": layers, "populations": pops}
    program = {"target": "loihi1", "cores_used": 1, "cores": [
        {"core": 0, "populations": [{"name": p["name"], "neurons": 10, "fraction": 1.0}
                                    for p in pops]}]}
    report = estimate_costs(activity, program, loihi1)
    for model, total_uj in report["energy_per_sample_uj"].items():
        layers_pj = sum(row["energy_pj_per_sample"][model] for row in report["layers"])
        assert layers_pj == pytest.approx(total_uj * 1e6, rel=1e-9)


def test_layers_without_synops_split_their_population_equally(loihi1):
    activity = tiny_activity()
    activity["layers"][1]["synops"] = 0
    activity["layers"][2]["synops"] = 0
    report = estimate_costs(activity, tiny_program(), loihi1)
    fc1 = _layer(report, "fc1")["energy_pj_per_sample"]["loihi_davies2018"]
    attn = _layer(report, "attn")["energy_pj_per_sample"]["loihi_davies2018"]
    assert fc1 == pytest.approx(attn) and fc1 > 0


def test_report_is_json_able_and_labelled(report):
    assert json.loads(json.dumps(report)) == report
    assert report["labels"]["per_sample"] == MEASURED
    assert report["labels"]["energy_per_sample_uj"] == ESTIMATED
    assert set(report["sources"]) == {"cmos45nm", "loihi_davies2018", "latency", "static"}
    assert any("Davies" in c for c in report["sources"]["loihi_davies2018"])
    assert any("Horowitz" in c for c in report["sources"]["cmos45nm"])
    assert any("host-fed" in a for a in report["assumptions"])


def test_missing_pipeline_depth_is_stated(loihi1):
    activity = tiny_activity()
    del activity["pipeline_depth"]
    report = estimate_costs(activity, tiny_program(), loihi1)
    assert report["pipeline_depth"] == 0
    assert any("pipeline_depth not recorded" in a for a in report["assumptions"])


def test_loihi2_marks_borrowed_coefficients():
    report = estimate_costs(tiny_activity(), tiny_program("loihi2"), load_target("loihi2"))
    assert any("basis 'assumption'" in a for a in report["assumptions"])


@pytest.mark.parametrize("mutate, match", [
    (lambda a, p: a["layers"][0].update(population="nope"), "destination population 'nope'"),
    (lambda a, p: a["layers"][0].update(kind="conv"), "kind 'conv' is not one of"),
    (lambda a, p: a.update(samples=0), r"'samples' \(0\) is below 1"),
    (lambda a, p: a["populations"][1].update(active_updates=999), "exceeds neuron_updates"),
    (lambda a, p: a["populations"][0].pop("spikes"), "missing key 'spikes'"),
    (lambda a, p: p.update(target="loihi2"), "compiled for target 'loihi2'"),
    (lambda a, p: p["cores"][0]["populations"].append({"name": "ghost", "fraction": 1.0}),
     "population 'ghost', which has no recorded activity"),
    (lambda a, p: p["cores"][0]["populations"][0].update(fraction=1.5), "fraction"),
])
def test_malformed_inputs(mutate, match, loihi1):
    activity, program = copy.deepcopy(tiny_activity()), copy.deepcopy(tiny_program())
    mutate(activity, program)
    with pytest.raises(InputFileError, match=match):
        estimate_costs(activity, program, loihi1)


def _with_traffic(activity: dict) -> dict:
    """lif1 sends 60 messages (10 between chips) with 20 E-W, 30 N-S tile hops and 10 chip
    hops; attention unit 'att' sends 5 messages, 4 E-W hops, carried by lif2."""
    def sender(name, population, counts):
        return {"name": name, "population": population,
                **dict(zip(("messages", "messages_between_chips", "tile_hops_ew",
                            "tile_hops_ns", "chip_hops"), counts))}
    senders = [sender("lif1", "lif1", (60, 10, 20, 30, 10)), sender("att", "lif2", (5, 0, 4, 0, 0))]
    activity["traffic"] = {"senders": senders, "not_counted": ["host input"],
                           "longest_route": {"tile_hops_ew": 3, "tile_hops_ns": 2,
                                             "chip_hops": 1}}
    return activity


def test_hops_are_priced_into_their_population(loihi1, report):
    hops = estimate_costs(_with_traffic(tiny_activity()), tiny_program(), loihi1)
    breakdown = hops["energy_breakdown_pj_per_sample"]["loihi_davies2018"]
    ew, ns, chip = 3.0, 4.0, 13.5  # Davies 2018 Table 2; chip hop: assumption (Qiao 2019)
    assert breakdown["tile_hops"] == pytest.approx((ew * (20 + 4) + ns * 30) / 2)
    assert breakdown["chip_hops"] == pytest.approx(chip * 10 / 2)
    assert hops["energy_breakdown_pj_per_sample"]["cmos45nm"]["tile_hops"] == 0
    # the longest route adds its hop times once per step (no core_pairs: no message work)
    route_ns = 3 * 4.1 + 2 * 6.5 + 1 * 150.0
    assert hops["latency"]["route_ns_per_step"] == pytest.approx(route_ns)
    assert hops["latency"]["per_step_ns"] == pytest.approx(
        report["latency"]["per_step_ns"] + route_ns)
    static_more = 104.0 * 6 * route_ns  # pJ (mW x ns): 104 mW for 6 steps' longer route
    assert breakdown["static"] - report["static"]["energy_pj_per_sample"] == \
        pytest.approx(static_more)
    before = report["energy_per_sample_uj"]["loihi_davies2018"]
    assert hops["energy_per_sample_uj"]["loihi_davies2018"] - before == pytest.approx(
        (breakdown["tile_hops"] + breakdown["chip_hops"] + static_more) * 1e-6)
    # lif1's hops go to enc (lif1's only feeder); the attention unit's to lif2's feeders
    enc_more = _layer(hops, "enc")["energy_pj_per_sample"]["loihi_davies2018"] - \
        _layer(report, "enc")["energy_pj_per_sample"]["loihi_davies2018"]
    lif1_static_share = BUSY["lif1"] / sum(BUSY.values())
    assert enc_more == pytest.approx((ew * 20 + ns * 30 + chip * 10) / 2
                                     + lif1_static_share * static_more)
    for model, total_uj in hops["energy_per_sample_uj"].items():
        layers_pj = sum(row["energy_pj_per_sample"][model] for row in hops["layers"])
        assert layers_pj == pytest.approx(total_uj * 1e6, rel=1e-9)
    assert "longest route" in hops["latency_model"]
    traffic = hops["traffic"]
    assert traffic["per_step"]["messages"] == (60 + 5) / 8
    assert traffic["per_sample"]["messages_between_chips"] == 5
    assert hops["labels"]["traffic"].startswith("counted")
    assert any("chip hops priced" in a for a in hops["assumptions"])
    assert any("no traffic.core_pairs" in a for a in hops["assumptions"])
    assert any(c.startswith("e_tile_hop_ns_pj = 4 pJ") for c in hops["sources"]["loihi_davies2018"])
    assert "time_per_tile_hop_ew_ns = 4.1 ns" in " ".join(hops["sources"]["latency"])


def test_without_traffic_no_hops_and_said_so(report):
    assert "hops" not in report["energy_breakdown_pj_per_sample"]["loihi_davies2018"]
    assert "traffic" not in report
    assert any("Mesh traffic was not counted" in a for a in report["assumptions"])
