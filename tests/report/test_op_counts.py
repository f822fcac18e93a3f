"""The report's two named op counts (report/op_counts.py), by hand on a tiny activity."""
from __future__ import annotations

import copy
import json

import pytest

from nmc_deploy.report.energy import estimate_costs
from nmc_deploy.report.op_counts import HARDWARE_EVENTS_LABEL, op_count_rows
from nmc_deploy.report.page import render_page
from nmc_deploy.report.render import render_table
from nmc_deploy.targets import load_target
from test_energy import tiny_activity, tiny_program

NB = {"Effective_ACs": 1200.0, "Effective_MACs": 340.5, "Dense": 9000.0,
      "ActivationSparsity": 0.8125, "MembraneUpdates": 77.0, "samples": 2, "batch_size": 1,
      "label": "NeuroBench 2.3.0 definitions on the float model"}


@pytest.fixture(scope="module")
def loihi1():
    return load_target("loihi1")


def _activity_with_relay() -> dict:
    act = copy.deepcopy(tiny_activity())
    act["populations"].append({"name": "rel", "kind": "relay", "neurons": 4, "spikes": 6,
                               "neuron_updates": 32, "active_updates": 10})
    act["layers"].append({"name": "sel", "kind": "tokens", "synops": 8, "synapses": 0,
                          "population": "rel"})
    return act


def test_hardware_events_by_hand(loihi1):
    prog = copy.deepcopy(tiny_program())
    prog["cores"][1]["populations"].append({"name": "rel", "neurons": 4, "fraction": 1.0})
    hw = estimate_costs(_activity_with_relay(), prog, loihi1)["op_counts"]["hardware_events"]
    assert hw["label"] == HARDWARE_EVENTS_LABEL
    assert hw["synaptic_events"] == (1000 + 400 + 100 + 8) / 2
    assert (hw["encoding_macs"], hw["synapse_acs"]) == (500, 200)
    assert (hw["attention_products"], hw["token_selector_ops"]) == (50, 4)
    assert hw["spike_messages"] == (30 + 50 + 20) / 2   # the relay's payloads are not spikes
    assert hw["graded_payloads"] == 3
    assert hw["neuron_updates"] == (80 + 160 + 80 + 32) / 2


def test_neurobench_named_when_missing_and_when_given(loihi1):
    missing = estimate_costs(tiny_activity(), tiny_program(), loihi1)["op_counts"]["neurobench"]
    assert missing["available"] is False and "float torch model" in missing["reason"]
    assert missing["label"] == NB["label"]
    given = estimate_costs(tiny_activity(), tiny_program(), loihi1, neurobench=NB)
    nb = given["op_counts"]["neurobench"]
    assert nb["available"] and nb["Effective_MACs"] == 340.5 and nb["Dense"] == 9000.0
    assert "note" not in nb  # same sample count as the activity
    other = estimate_costs(tiny_activity(), tiny_program(), loihi1,
                           neurobench={**NB, "samples": 5})["op_counts"]["neurobench"]
    assert "5 samples" in other["note"]
    json.dumps(given)  # JSON-able


def test_both_counts_in_table_and_page(loihi1):
    for neurobench in (None, NB):
        report = estimate_costs(tiny_activity(), tiny_program(), loihi1, neurobench=neurobench)
        rows = op_count_rows(report)
        table, page = render_table(report), render_page(report)
        assert "hardware synaptic events / sample" in table and HARDWARE_EVENTS_LABEL in table
        assert "NeuroBench" in table and "NeuroBench" in page and "op-counts" in page
    assert rows[0][1] == "1,200 + 340"  # ACs + MACs, rounded for display
    assert op_count_rows({}) == []


def test_label_and_keys_agree_with_the_counting_module():
    """report/op_counts.py keeps its own copy (the report must stay torch-free)."""
    import importlib

    counting = importlib.import_module("nmc_deploy.models.op_counts")
    from nmc_deploy.report import op_counts as reporting

    assert reporting.NEUROBENCH_LABEL == counting.NEUROBENCH_LABEL
    assert tuple(reporting.NEUROBENCH_KEYS) == tuple(counting.NEUROBENCH_KEYS)
