"""The deployment sections of a report, checked by hand on tiny placement dicts."""
from __future__ import annotations

import copy

import pytest

from nmc_deploy.report.deployment import (NOT_RUN, deployment_sections, fidelity,
                                          placement_record, traffic_matrix, utilization,
                                          verdict)

LIMITS = {"max_neurons_per_core": 100, "synapse_memory_bits_per_core": 1000,
          "max_in_axons_per_core": 50, "max_out_axons_per_core": 40,
          "max_neuron_groups_per_core": 4}


def _placement(chips=(0, 0)) -> dict:
    """Two cores: core 0 bound by neurons (80 of 100), core 1 by synapse memory (900 of 1000)
    on a system of 2 chips of 4 cores."""
    return {
        "target": "duo", "cores_used": 2, "chips_used": len(set(chips)), "limits": dict(LIMITS),
        "cores": [
            {"core": 0, "kind": "neuro", "chip": chips[0], "tile": [0, 0], "neurons": 80,
             "synapse_memory_bits": 100, "in_axons": 10, "out_axons": 20,
             "populations": [{"name": "a", "neurons": 80, "fraction": 1.0}]},
            {"core": 1, "kind": "neuro", "chip": chips[1], "tile": [1, 0], "neurons": 30,
             "synapse_memory_bits": 900, "in_axons": 20, "out_axons": 4,
             "populations": [{"name": "b", "neurons": 20, "fraction": 1.0},
                             {"name": "c", "neurons": 10, "fraction": 0.5}]}],
        "system": {"name": "duo", "chip": "mono", "chips": 2, "cores_per_chip": 4,
                   "tile_grid": [2, 2], "cores_per_tile": 1, "chips_used": len(set(chips))},
        "quantization": {"weight_bits": 8, "vth_mant": 1023, "zeroed_weights": 5,
                         "clipped_weights": 1, "clipped_biases": 0, "float_synapses": 200,
                         "decay_rounding": {}},
    }


def test_verdict_counts_cores_chips_and_the_binding_resource():
    placement = _placement()
    before = copy.deepcopy(placement)
    v = verdict(placement)
    assert placement == before                                  # input untouched
    assert v["fits"] and v["cores_used"] == 2 and v["cores_available"] == 8
    assert v["chips_used"] == 1 and v["chips"] == 2
    assert v["bound"] == {"neurons": 1, "synapse_memory_bits": 1}
    assert v["binding"] == "neurons"                            # tie: RESOURCES order
    assert v["tightest"] == {"core": 1, "resource": "synapse_memory_bits", "share": 0.9}
    assert v["text"] == ("fits on duo: 2 of 8 cores on 1 of 2 chips; binding resource: "
                         "neurons (1 of 2 cores)")


def test_verdict_says_does_not_fit_when_a_core_is_over_its_limit():
    placement = _placement()
    placement["cores"][0]["out_axons"] = 60                     # 60 of 40: 150 %
    v = verdict(placement)
    assert not v["fits"] and v["text"].startswith("does not fit on duo")
    assert v["problems"] == ["core 0: out axons at 150.0 % of its limit"]
    assert v["bound"] == {"synapse_memory_bits": 1, "out_axons": 1}
    assert not verdict(_placement(), {"status": "fail"})["fits"]


def test_utilization_gives_every_share_of_every_core():
    rows = utilization(_placement())["cores"]
    assert [r["core"] for r in rows] == [0, 1]
    assert rows[0]["shares"] == {"neurons": 0.8, "synapse_memory_bits": 0.1, "in_axons": 0.2,
                                 "out_axons": 0.5, "neuron_groups": 0.25}
    assert rows[1]["binding"] == "synapse_memory_bits" and rows[1]["max_share"] == 0.9
    assert rows[1]["populations"] == ["b", "c"] and rows[1]["tile"] == [1, 0]


PAIRS = {"source": [0, 0, 1, 1], "destination": [0, 1, 0, 1], "messages": [7, 5, 3, 2],
         "hops": [0, 5, 3, 0], "chip_hops": [0, 5, 3, 0]}


def test_traffic_matrix_sums_equal_core_pairs_and_aggregate_per_chip():
    tm = traffic_matrix(PAIRS, {0: 0, 1: 1}, samples=2, time_steps=4)
    assert tm["status"] == "counted" and tm["cores"] == PAIRS
    assert tm["totals"] == {"messages": 17, "hops": 8, "chip_hops": 8,
                            "messages_between_chips": 8}
    assert tm["chips"] == {"source": [0, 0, 1, 1], "destination": [0, 1, 0, 1],
                           "messages": [7, 5, 3, 2], "hops": [0, 5, 3, 0],
                           "chip_hops": [0, 5, 3, 0]}
    assert tm["per_sample"]["messages"] == 8.5 and tm["per_step"]["hops"] == 1.0
    one = traffic_matrix(PAIRS, {0: 0, 1: 0}, samples=2, time_steps=4)  # both on chip 0
    assert one["chips"] == {"source": [0], "destination": [0], "messages": [17], "hops": [8],
                            "chip_hops": [8]}
    assert one["totals"]["messages_between_chips"] == 0
    assert traffic_matrix(None, {}, 1, 1)["status"].startswith("not counted")


def test_fidelity_takes_the_largest_run_and_says_what_was_not_run():
    sims = {"reference": {"dataset": "digits", "samples": 360, "accuracy_float": 0.98,
                          "accuracy_fixed_reference": 0.97},
            "compare": {"dataset": "digits", "samples": 50, "accuracy_float": 1.0,
                        "accuracy_fixed_reference": 1.0, "accuracy_fixed_lava": 0.96,
                        "spike_mismatches_per_population": {"a": 0, "b": 3},
                        "spikes_compared": 1000, "prediction_mismatches": 1}}
    f = fidelity(sims, _placement()["quantization"])
    assert f["accuracy"]["float"] == {"value": 0.98, "samples": 360, "run": "reference",
                                      "file": "simulation_reference.json"}
    assert f["accuracy"]["fixed_lava"]["samples"] == 50
    assert f["mismatches"]["total"] == 3 and f["mismatches"]["per_population"]["b"] == 3
    assert f["quantization"]["zeroed_share"] == pytest.approx(5 / 200)
    bare = fidelity({"reference": {"samples": 2, "accuracy_float": None,
                                   "accuracy_fixed_reference": None}}, None)
    assert bare["accuracy"] == {"float": "no labels", "fixed_reference": "no labels",
                                "fixed_lava": NOT_RUN}
    assert bare["mismatches"] == NOT_RUN and bare["quantization"] == NOT_RUN
    assert f["per_layer"] == NOT_RUN and bare["per_layer"] == NOT_RUN  # no fidelity records


def test_fidelity_per_layer_rows_come_from_the_largest_run():
    row = {"population": "a", "kind": "spikes", "vth_mant": 96, "choice": "auto",
           "zeroed_weights": 3,
           "entries": 40, "spikes": 9, "float_vs_fixed": 2, "max_voltage_error": 0.25,
           "reference_vs_lava": None, "u_wraps": 0, "v_saturations": 0}
    sims = {"reference": {"samples": 360, "fidelity": {
                "populations": [row], "float_vs_fixed": 2,
                "predictions_agree": {"float_vs_fixed": 359}}},
            "compare": {"samples": 50, "fidelity": {"populations": [], "float_vs_fixed": 0}}}
    per = fidelity(sims, None)["per_layer"]
    assert per["run"] == "reference" and per["samples"] == 360
    assert per["rows"] == [row] and per["predictions_agree"] == {"float_vs_fixed": 359}


def test_placement_record_before_and_after():
    assert placement_record(_placement())["text"] == "greedy placement (no alternative computed)"
    placement = _placement(chips=(0, 1))
    placement["placement"] = {
        "method": "traffic", "seed": 3, "rates": "measured",
        "estimates": {"greedy": {"messages_per_step": 10.0, "message_hops_per_step": 40.0},
                      "traffic": {"messages_per_step": 10.0, "message_hops_per_step": 10.0}},
        "baseline": {"core_chip": [0, 0], "core_tile": [[0, 0], [1, 0]]}}
    rec = placement_record(placement)
    assert rec["method"] == "traffic" and rec["seed"] == 3
    assert rec["change"] == {"messages_per_step": 0.0, "message_hops_per_step": -0.75}
    assert rec["moved_cores"] == 1                              # core 1 moved to chip 1


def test_deployment_sections_has_every_key():
    out = deployment_sections(_placement(), {}, PAIRS, samples=1, time_steps=1)
    assert set(out) == {"verdict", "fidelity", "utilization", "traffic_matrix", "placement"}
    assert out["traffic_matrix"]["totals"]["messages_between_chips"] == 0
