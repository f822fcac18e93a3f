"""program/activity.py: the typed activity reads what the reference simulator writes, gives it
back key for key, and rejects a malformed file with the report's one-line messages."""
from __future__ import annotations

import copy
import json
import warnings

import pytest

from nmc_deploy.errors import InputFileError
from nmc_deploy.program import (LAYER_KINDS, Activity, LayerActivity, PopulationActivity,
                                TokenSelectorActivity)
from nmc_deploy.simulate.reference import simulate_reference


def _as_written(stats: dict) -> dict:
    """The activity dict as ``run_simulation`` writes it (and reads back through JSON)."""
    return json.loads(json.dumps({**stats, "dataset": "digits"}, indent=1))


@pytest.fixture(scope="module")
def reference_activity(tiny_program, digits) -> dict:
    return _as_written(simulate_reference(tiny_program, digits.x_test[:3], record=False).stats)


@pytest.fixture(scope="module")
def token_activity(digits) -> dict:
    from conftest import make_token_spikformer
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.export.spikformer import export_spikformer

    graph = export_spikformer(make_token_spikformer(), {"dataset": "digits", "input_levels": 16})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(lower_graph(graph))
    x = digits.x_test[:3]
    stats = dict(simulate_reference(program, x, record=False).stats)
    full = simulate_reference(program, x, record=False, token_selection=False)
    stats["synops_without_token_selection"] = int(sum(e["synops"] for e in full.stats["layers"]))
    return _as_written(stats)


def test_round_trip_of_reference_activity(reference_activity):
    activity = Activity.from_json(reference_activity, "activity")
    assert activity.to_json() == reference_activity
    assert json.dumps(activity.to_json(), indent=1) == json.dumps(reference_activity, indent=1)
    assert activity.backend == "reference" and activity.samples == 3
    assert activity.dataset == "digits" and activity.token_selectors is None
    assert all(isinstance(ly, LayerActivity) and ly.kind in LAYER_KINDS
               for ly in activity.layers)
    assert all(isinstance(p, PopulationActivity) for p in activity.populations)
    first = activity.populations[0]
    assert activity.population(first.name) is first


def test_round_trip_with_token_selectors(token_activity):
    activity = Activity.from_json(token_activity, "activity")
    assert json.dumps(activity.to_json(), indent=1) == json.dumps(token_activity, indent=1)
    assert activity.token_selectors and all(isinstance(s, TokenSelectorActivity)
                                            for s in activity.token_selectors)
    assert activity.synops_without_token_selection >= sum(ly.synops for ly in activity.layers)


def test_relay_kind_and_optional_fields_round_trip(reference_activity):
    data = copy.deepcopy(reference_activity)
    pop = data["populations"][0]
    data["populations"][0] = {"name": pop.pop("name"), "kind": "relay", **pop}
    del data["pipeline_depth"], data["u_wraps"], data["v_saturations"], data["dataset"]
    data["token_selectors"] = []
    activity = Activity.from_json(data)
    assert activity.populations[0].graded and not activity.populations[1].graded
    assert activity.pipeline_depth is None and activity.token_selectors == ()
    assert json.dumps(activity.to_json()) == json.dumps(data)


def _base() -> dict:
    return {"backend": "reference", "samples": 2, "time_steps": 4, "pipeline_depth": 1,
            "layers": [{"name": "enc", "kind": "encoding", "synops": 10, "synapses": 3,
                        "population": "a"}],
            "populations": [{"name": "a", "neurons": 4, "spikes": 2, "neuron_updates": 32,
                             "active_updates": 8}]}


_SELECTOR = {"name": "sel", "evaluated_tokens": 4, "kept_tokens": 2, "predictor_macs": 8,
             "lut_lookups": 4}

# one case per check of the activity: (mutation, the exact message)
BAD = [
    (lambda a: "no dict", "activity: expected a dict"),
    (lambda a: a.pop("backend") and a, "activity: missing key 'backend'"),
    (lambda a: a.update(backend=1) or a, "activity: 'backend' must be a string, got 1"),
    (lambda a: a.update(samples=0) or a, "activity: 'samples' (0) is below 1"),
    (lambda a: a.update(time_steps=2.5) or a, "activity: 'time_steps' must be an integer, got 2.5"),
    (lambda a: a.update(time_steps="4") or a,
     "activity: 'time_steps' must be an integer, got '4'"),
    (lambda a: a.update(pipeline_depth=-1) or a, "activity: 'pipeline_depth' (-1) is below 0"),
    (lambda a: a.pop("populations") and a, "activity: missing key 'populations'"),
    (lambda a: a.update(populations={}) or a, "activity: 'populations' must be a list"),
    (lambda a: a["populations"][0].pop("name") and a,
     "activity: populations[0]: missing key 'name'"),
    (lambda a: a["populations"][0].pop("spikes") and a,
     "activity: population 'a': missing key 'spikes'"),
    (lambda a: a["populations"][0].update(active_updates=33) or a,
     "activity: population 'a': active_updates (33) exceeds neuron_updates (32)"),
    (lambda a: a["populations"].append(dict(a["populations"][0])) or a,
     "activity: population 'a' is listed twice"),
    (lambda a: a.pop("layers") and a, "activity: missing key 'layers'"),
    (lambda a: a["layers"][0].pop("name") and a, "activity: layers[0]: missing key 'name'"),
    (lambda a: a["layers"][0].update(kind="conv") or a,
     "activity: layer 'enc': kind 'conv' is not one of encoding, synapses, attention, tokens"),
    (lambda a: a["layers"][0].update(synops=-1) or a,
     "activity: layer 'enc': 'synops' (-1) is below 0"),
    (lambda a: a["layers"][0].update(synapses="3") or a,
     "activity: layer 'enc': 'synapses' must be an integer, got '3'"),
    (lambda a: a["layers"][0].update(population="nope") or a,
     "activity: layer 'enc': destination population 'nope' is not in activity['populations']"),
    (lambda a: a.update(token_selectors="sel") or a, "activity: 'token_selectors' must be a list"),
    (lambda a: a.update(token_selectors=[{**_SELECTOR, "kept_tokens": None}]) or a,
     "activity: token_selectors[0]: 'kept_tokens' must be an integer, got None"),
    (lambda a: a.update(token_selectors=[_SELECTOR], synops_without_token_selection=-5) or a,
     "activity: 'synops_without_token_selection' (-5) is below 0"),
]


@pytest.mark.parametrize("mutate, message", BAD, ids=[m for _, m in BAD])
def test_bad_activity_is_one_line(mutate, message):
    with pytest.raises(InputFileError) as exc:
        Activity.from_json(mutate(_base()), "activity")
    assert str(exc.value) == message


def test_where_prefixes_messages():
    data = _base()
    data["samples"] = 0
    with pytest.raises(InputFileError, match=r"^run\.json: 'samples' \(0\) is below 1$"):
        Activity.from_json(data, "run.json")


def test_integral_floats_are_counts():
    data = _base()
    data["samples"] = 2.0
    assert Activity.from_json(data).samples == 2
