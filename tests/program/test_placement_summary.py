"""program/placement.py: the typed placement summary is the placement.json compile writes."""
from __future__ import annotations

import json
import warnings

import pytest

from nmc_deploy.errors import InputFileError
from nmc_deploy.fileio import json_default
from nmc_deploy.program import (CoreShare, CoreSummary, FormCosts, LowRankForms,
                                PlacementSummary, load_placement_summary, load_program,
                                summarize_cores, summarize_form, summarize_placement)
from nmc_deploy.program.placement import (ResidualCosts, ResidualForms, WeightSharingForms,
                                          summarize_residual, summarize_sharing)
from nmc_deploy.targets import load_target


def _compile(graph, tmp_path, target: str, **kw):
    from nmc_deploy.nirio import write_nir
    from nmc_deploy.pipeline import compile_model

    write_nir(graph, tmp_path / "m.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_model(tmp_path / "m.nir", target, tmp_path / "b", log=lambda m: None, **kw)
    return tmp_path / "b"


def _placement(build, target: str):
    """The program of a build and its placement, recomputed from the written program."""
    from nmc_deploy.compile.mesh import layout_cores
    from nmc_deploy.compile.partition import partition_program

    program = load_program(build)
    tgt = load_target(target)
    return program, layout_cores(partition_program(program, tgt), program, tgt)


def _sharing(written: str, placement) -> WeightSharingForms:
    """The sharing record compile wrote; its written form is the recomputed placement."""
    forms = WeightSharingForms.from_json(json.loads(written)["weight_sharing"], "weight_sharing")
    assert forms.forms[forms.written] == summarize_sharing(placement)
    return forms


def _residual(written: str, program, placement) -> ResidualForms | None:
    """The residual-forms record compile wrote (None: no stream read by a population, e.g.
    every block matrix a low-rank relay); its written form is the recomputed one."""
    data = json.loads(written)
    if "residual" not in data:
        return None
    forms = ResidualForms.from_json(data["residual"], "residual")
    assert forms.forms[forms.written] == summarize_residual(program, placement)
    return forms


def _dumped(summary: PlacementSummary) -> str:
    """As compile_model writes it (fileio.write_json_atomic: indent 1, numpy values)."""
    return json.dumps(summary.to_json(), indent=1, default=json_default)


def test_summary_is_compiles_placement_json(tiny_graph, tmp_path):
    build = _compile(tiny_graph, tmp_path, "loihi2")
    written = (build / "placement.json").read_text()
    program, placement = _placement(build, "loihi2")
    summary = summarize_placement(placement, program,
                                  weight_sharing=_sharing(written, placement),
                                  residual=_residual(written, program, placement))
    assert _dumped(summary) == written
    assert json.dumps(placement.summary(program), indent=1) == \
        json.dumps(summarize_cores(placement, program).to_json(), indent=1)
    assert any(c.kind == "attention" for c in summary.cores)  # loihi2: attention units
    # reading the file gives the same record; writing that again gives the same bytes
    loaded = load_placement_summary(build)
    assert loaded == summary
    assert _dumped(loaded) == written
    # blocked populations carry their placement order (chunk slices are order positions)
    assert summary.orders and summary.orders == placement.orders
    assert '"orders"' in written
    name, order = next(iter(summary.orders.items()))
    share = next(s for c in summary.cores for s in c.populations if s.name == name)
    assert list(summary.neuron_index(name, share.start, share.stop)) == \
        list(order.neurons(share.start, share.stop))


def test_attention_on_host_round_trips(tiny_graph, tmp_path):
    build = _compile(tiny_graph, tmp_path, "loihi1")
    written = (build / "placement.json").read_text()
    program, placement = _placement(build, "loihi1")
    summary = summarize_placement(placement, program,
                                  weight_sharing=_sharing(written, placement),
                                  residual=_residual(written, program, placement))
    assert summary.attention_on_host and _dumped(summary) == written
    assert _dumped(PlacementSummary.from_json(json.loads(written))) == written


@pytest.fixture(scope="module")
def dsp_graph():
    from conftest import make_tiny_spikformer
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.prune.dsp import factorize_model

    model = factorize_model(make_tiny_spikformer(), energy=0.6).eval()
    return export_spikformer(model, {"dataset": "digits", "input_levels": 16})


@pytest.mark.parametrize("target, low_rank", [("loihi2", "relay"), ("loihi1", "fused")])
def test_low_rank_forms(dsp_graph, tmp_path, target, low_rank):
    build = _compile(dsp_graph, tmp_path, target, low_rank=low_rank)
    written = (build / "placement.json").read_text()
    program, placement = _placement(build, target)
    forms = LowRankForms.from_json(json.loads(written)["low_rank"], "low_rank")
    assert forms.written == low_rank and forms.target == target
    assert forms.forms[low_rank] == summarize_form(program, placement)
    if target == "loihi1":  # no graded spikes: the relay form is not deployable
        assert isinstance(forms.forms["relay"], str) and "graded" in forms.forms["relay"]
    else:
        assert isinstance(forms.forms["fused"], FormCosts)
    summary = summarize_placement(placement, program, low_rank=forms,
                                  weight_sharing=_sharing(written, placement),
                                  residual=_residual(written, program, placement))
    assert _dumped(summary) == written
    assert _dumped(PlacementSummary.from_json(json.loads(written))) == written


@pytest.mark.parametrize("target, residual", [("loihi2", "relay"), ("loihi1", "fan-in")])
def test_residual_forms(tiny_graph, tmp_path, target, residual):
    build = _compile(tiny_graph, tmp_path, target, residual=residual)
    written = (build / "placement.json").read_text()
    program, placement = _placement(build, target)
    forms = _residual(written, program, placement)
    assert forms.written == residual and forms.target == target and forms.relays == 2
    if target == "loihi1":  # no graded spikes: the relay form is not deployable
        assert isinstance(forms.forms["relay"], str) and "graded" in forms.forms["relay"]
        return
    fan, relay = forms.forms["fan-in"], forms.forms["relay"]
    assert isinstance(fan, ResidualCosts) and relay.relay_neurons > 0
    assert relay.groups < fan.groups and relay.synapses < fan.synapses
    assert relay.pipeline_depth == fan.pipeline_depth + 2
    summary = summarize_placement(placement, program, weight_sharing=_sharing(written, placement),
                                  residual=forms)
    assert _dumped(summary) == written
    assert _dumped(PlacementSummary.from_json(json.loads(written))) == written


def test_partial_summary_keeps_only_its_keys():
    data = {"target": "loihi1", "cores": [{"core": 0, "populations": [
        {"name": "a", "neurons": 3, "fraction": 1.0}]}]}
    summary = PlacementSummary.from_json(data)
    assert summary.cores_used == 1  # absent: the number of cores
    assert summary.cores == (CoreSummary(0, (CoreShare("a", 1.0, neurons=3),)),)
    assert summary.to_json() == {**data, "cores_used": 1}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("target"), "program_summary: missing key 'target'"),
    (lambda d: d.update(cores={}), "program_summary: 'cores' must be a list"),
    (lambda d: d["cores"][0].pop("core"), "program_summary: cores[0]: missing key 'core'"),
    (lambda d: d["cores"][0]["populations"][0].update(fraction=2),
     "program_summary: cores[0].populations[0]: 'fraction' must be a number in [0, 1], got 2"),
    (lambda d: d.update(cores_used=-1), "program_summary: 'cores_used' (-1) is below 0"),
    (lambda d: d.update(limits=[]), "program_summary: 'limits' must be a dict"),
    (lambda d: d.update(attention_on_host=[1]),
     "program_summary: 'attention_on_host' must be a list of strings"),
])
def test_bad_summary_is_one_line(mutate, message):
    data = {"target": "loihi1", "cores_used": 1, "cores": [{"core": 0, "populations": [
        {"name": "a", "fraction": 1.0}]}]}
    mutate(data)
    with pytest.raises(InputFileError) as exc:
        PlacementSummary.from_json(data, "program_summary")
    assert str(exc.value) == message


def _small_chip_system(tmp_path) -> str:
    """A system of 4 chips of 2 Loihi 2 cores each (files in tmp_path): tiny programs span
    chips."""
    import re

    from nmc_deploy.targets import targets_dir

    chip = re.sub(r"(\ncores\s*=\s*\{\s*value\s*=\s*)128", r"\g<1>2",
                  (targets_dir() / "loihi2.toml").read_text()).replace(
        'name = "loihi2"', 'name = "two_core_chip"')
    (tmp_path / "two_core_chip.toml").write_text(chip)
    (tmp_path / "board.toml").write_text(
        'name = "board"\ndescription = "4 chips of 2 cores"\nchip_target = "two_core_chip.toml"\n'
        '[system]\nchips = { value = 4, basis = "assumption", source = "test" }\n'
        'chip_grid = { value = [2, 2], basis = "assumption", source = "test" }\n')
    return str(tmp_path / "board.toml")


def test_system_record_round_trips(tiny_graph, tmp_path):
    target = _small_chip_system(tmp_path)
    build = _compile(tiny_graph, tmp_path, target)
    written = (build / "placement.json").read_text()
    program, placement = _placement(build, target)
    summary = summarize_placement(placement, program,
                                  weight_sharing=_sharing(written, placement),
                                  residual=_residual(written, program, placement))
    assert _dumped(summary) == written
    loaded = load_placement_summary(build)
    assert loaded == summary and _dumped(loaded) == written
    data = json.loads(written)
    assert data["chips_used"] == loaded.chips_used == 2 == -(-data["cores_used"] // 2)
    system = loaded.system
    assert (system.name, system.chip, system.chips, system.cores_per_chip) == \
        ("board", "two_core_chip", 4, 2)
    assert system.chip_grid == (2, 2) and system.chip_grid == tuple(data["system"]["chip_grid"])
    assert [c.chip for c in loaded.cores] == [placement.chips.core_chip[i]
                                              for i in range(loaded.cores_used)]
    assert sum(c.cores for c in system.per_chip) == loaded.cores_used
    for chip in system.per_chip:
        assert chip.binding in chip.utilization and 1 <= chip.binding_cores <= chip.cores
        assert sum(chip.bound.values()) == chip.cores  # every core bound by one limit
        assert next(iter(chip.bound.items())) == (chip.binding, chip.binding_cores)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["system"].pop("chips_used"), "program_summary: system: missing key 'chips_used'"),
    (lambda d: d["system"].update(chip_grid=[2, -1]),
     "program_summary: system: 'chip_grid' (-1) is below 0"),
    (lambda d: d["cores"][0].update(tile=[0, "a"]),
     "program_summary: cores[0]: 'tile' must be an integer, got 'a'"),
])
def test_bad_system_record_is_one_line(mutate, message):
    data = {"target": "t", "cores_used": 1, "chips_used": 1,
            "cores": [{"core": 0, "chip": 0, "tile": [0, 0], "populations": []}],
            "system": {"name": "t", "chip": "c", "chips": 2, "cores_per_chip": 1,
                       "chip_grid": [2], "tile_grid": [1, 1], "cores_per_tile": 1,
                       "chips_used": 1, "per_chip": []}}
    assert PlacementSummary.from_json(json.loads(json.dumps(data))).to_json() == data
    mutate(data)
    with pytest.raises(InputFileError) as exc:
        PlacementSummary.from_json(data, "program_summary")
    assert str(exc.value) == message
