"""Hardware targets: loading, provenance of every number, errors, synapse-memory model."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmc_deploy.errors import CapacityError, TargetError
from nmc_deploy.targets import (
    BASES, ENERGY_FORMULAS, HardwareTarget, load_target, synapse_index_bits,
    synapse_memory_bits, target_names, targets_dir,
)

SHIPPED = ("loihi1", "loihi2")  # chips
SYSTEMS = {"kapoho_point": ("loihi2", 8), "hala_point": ("loihi2", 1152),
           "nahuku32": ("loihi1", 32), "pohoiki_springs": ("loihi1", 768)}


@pytest.fixture(scope="module")
def loihi1() -> HardwareTarget:
    return load_target("loihi1")


@pytest.fixture(scope="module")
def loihi2() -> HardwareTarget:
    return load_target("loihi2")


def _numeric_fields(target: HardwareTarget) -> list[str]:
    return [f.name for f in dataclasses.fields(target)
            if isinstance(getattr(target, f.name), (bool, int, float))]


def _write_variant(tmp_path: Path, old: str, new: str, name: str = "variant.toml") -> Path:
    """A copy of loihi2.toml with one exact line fragment replaced."""
    text = (targets_dir() / "loihi2.toml").read_text(encoding="utf-8")
    if old not in text:
        raise RuntimeError(f"test setup: {old!r} not found in loihi2.toml")
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _line_of(key: str) -> str:
    """The full line defining ``key`` in loihi2.toml."""
    text = (targets_dir() / "loihi2.toml").read_text(encoding="utf-8")
    return next(line for line in text.splitlines() if line.startswith(f"{key} = "))


# ---------------------------------------------------------------------------------------------
# loading and provenance
# ---------------------------------------------------------------------------------------------

def test_shipped_targets_are_listed():
    assert set(SHIPPED) | set(SYSTEMS) <= set(target_names())


@pytest.mark.parametrize("name", SHIPPED + tuple(SYSTEMS))
def test_target_loads_by_name_and_by_path(name):
    by_name = load_target(name)
    by_path = load_target(targets_dir() / f"{name}.toml")
    by_str_path = load_target(str(targets_dir() / f"{name}.toml"))
    assert by_name.name == by_path.name == by_str_path.name == name
    assert by_name.max_neurons_per_core == by_path.max_neurons_per_core
    assert load_target(by_name) is by_name


@pytest.mark.parametrize("name", SHIPPED + tuple(SYSTEMS))
def test_every_number_has_a_source_and_basis(name):
    target = load_target(name)
    numeric = _numeric_fields(target) + ["chip_grid"]
    assert len(numeric) >= 30
    for field_name in numeric:
        source = target.source_of(field_name)
        assert source.basis in BASES, field_name
        assert source.citation.strip(), field_name
        assert source.key.count(".") == 1, field_name
    for model in target.energy_models.values():
        assert set(ENERGY_FORMULAS[model.formula]) <= set(model.coefficients_pj)
        for key, value in model.coefficients_pj.items():
            assert value >= 0
            assert model.sources[key].basis in BASES
            assert model.sources[key].citation.strip()
            assert target.sources[f"energy.{model.name}.{key}"] is model.sources[key]


@pytest.mark.parametrize("name", SHIPPED)
def test_energy_models_of_shipped_targets(name):
    target = load_target(name)
    assert set(target.energy_models) == {"cmos45nm", "loihi_davies2018"}
    cmos = target.energy_models["cmos45nm"]
    assert cmos.formula == "mac_ac"
    assert cmos.coefficients_pj["e_mac_pj"] == 4.6 and cmos.coefficients_pj["e_ac_pj"] == 0.9
    loihi = target.energy_models["loihi_davies2018"]
    assert loihi.formula == "per_event"
    assert loihi.coefficients_pj["e_synop_pj"] == 23.6
    assert loihi.coefficients_pj["e_neuron_update_active_pj"] == 81.0
    assert loihi.coefficients_pj["e_neuron_update_inactive_pj"] == 52.0
    assert loihi.coefficients_pj["e_spike_within_tile_pj"] == 1.7
    # the citations list only what the formula uses
    assert [c.split(" =")[0] for c in loihi.citations()] == list(loihi.used_coefficients)


def test_loihi1_limits_and_provenance(loihi1):
    assert loihi1.max_neurons_per_core == 1024
    assert loihi1.max_in_axons_per_core == loihi1.max_out_axons_per_core == 4096
    assert loihi1.synapse_memory_bits_per_core == 16384 * 64
    assert loihi1.cores_per_chip == 128 and loihi1.max_cores == 128
    assert loihi1.graded_spike_bits == 0
    assert loihi1.weight_sharing is True  # population axons (nengo-loihi)
    assert loihi1.source_of("weight_sharing").basis
    assert loihi1.source_of("max_neurons_per_core").basis == "published"
    assert loihi1.source_of("max_chips").basis == "assumption"
    assert loihi1.energy_models["loihi_davies2018"].sources["e_synop_pj"].basis == "published"


def test_loihi2_limits_and_provenance(loihi2):
    assert loihi2.max_neurons_per_core == 4095
    assert loihi2.max_neuron_groups_per_core == 8
    assert loihi2.max_in_axons_per_core == 16000
    assert loihi2.synapse_memory_bits_per_core == 12000 * 32
    assert loihi2.graded_spike_bits == 24
    assert loihi2.max_synaptic_delay == 62
    assert loihi2.source_of("max_neurons_per_core").basis == "inferred"
    assert loihi2.source_of("time_per_synop_ns").basis == "assumption"
    davies = loihi2.energy_models["loihi_davies2018"]
    assert {s.basis for s in davies.sources.values()} == {"assumption"}


def test_target_is_frozen(loihi2):
    with pytest.raises(dataclasses.FrozenInstanceError):
        loihi2.max_neurons_per_core = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        loihi2.energy_models["x"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        loihi2.sources["x"] = None  # type: ignore[index]


def test_target_pickles_copies_and_hashes(loihi2):
    import copy
    import pickle
    clone = pickle.loads(pickle.dumps(loihi2))
    assert clone == loihi2 and hash(clone) == hash(loihi2)
    assert copy.deepcopy(loihi2) == loihi2
    assert clone.energy_models["cmos45nm"].coefficients_pj["e_mac_pj"] == 4.6
    assert load_target("loihi1") != loihi2


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_unknown_target_name():
    with pytest.raises(TargetError) as excinfo:
        load_target("loihi3")
    assert _one_line(excinfo) == ("target 'loihi3': unknown; choose one of hala_point, "
                                  "kapoho_point, loihi1, loihi2, nahuku32, pohoiki_springs "
                                  "or give a path to a .toml file")


def test_target_name_cannot_escape_the_directory():
    with pytest.raises(TargetError, match="unknown"):
        load_target("../pyproject")


def test_missing_target_file(tmp_path):
    with pytest.raises(TargetError) as excinfo:
        load_target(tmp_path / "nope.toml")
    assert "nope.toml" in _one_line(excinfo) and "no such file" in str(excinfo.value)


def test_invalid_toml_names_the_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[core\nmax_neurons = 3\n', encoding="utf-8")
    with pytest.raises(TargetError) as excinfo:
        load_target(path)
    message = _one_line(excinfo)
    assert "not valid TOML" in message and re.search(r"line 2", message)


def test_missing_key_is_named(tmp_path):
    path = _write_variant(tmp_path, _line_of("max_neurons") + "\n", "")
    with pytest.raises(TargetError) as excinfo:
        load_target(path)
    assert _one_line(excinfo).endswith("missing key 'core.max_neurons'")


def test_missing_energy_coefficient_is_named(tmp_path):
    path = _write_variant(tmp_path, _line_of("e_ac_pj") + "\n", "")
    with pytest.raises(TargetError, match=r"missing key 'energy\.cmos45nm\.e_ac_pj'"):
        load_target(path)


def test_number_without_source(tmp_path):
    path = _write_variant(tmp_path, _line_of("max_neurons"), "max_neurons = 4096")
    with pytest.raises(TargetError) as excinfo:
        load_target(path)
    message = _one_line(excinfo)
    assert "core.max_neurons: number without a source" in message
    assert "value = 4096" in message


def test_value_table_without_source_or_basis(tmp_path):
    path = _write_variant(tmp_path, _line_of("max_neurons"),
                          'max_neurons = { value = 4096, basis = "published" }')
    with pytest.raises(TargetError, match=r"missing key 'core\.max_neurons\.source'"):
        load_target(path)
    path = _write_variant(tmp_path, _line_of("max_neurons"),
                          'max_neurons = { value = 4096, source = "x" }', "b.toml")
    with pytest.raises(TargetError, match=r"missing key 'core\.max_neurons\.basis'"):
        load_target(path)


def test_wrong_types(tmp_path):
    path = _write_variant(tmp_path, "value = 4095,", 'value = "4095",')
    with pytest.raises(TargetError) as excinfo:
        load_target(path)
    assert "core.max_neurons.value: expected an integer, got string" in _one_line(excinfo)
    path = _write_variant(tmp_path, "value = 4095,", "value = 4095.5,", "float.toml")
    with pytest.raises(TargetError, match="expected an integer, got float"):
        load_target(path)
    path = _write_variant(tmp_path, "value = 3.5,", "value = true,", "bool.toml")
    with pytest.raises(TargetError, match="time_per_synop_ns.value: expected a finite number"):
        load_target(path)


def test_bad_basis_and_unknown_key(tmp_path):
    path = _write_variant(tmp_path, 'value = 4095, basis = "inferred"',
                          'value = 4095, basis = "guess"')
    with pytest.raises(TargetError, match="basis 'guess' is not one of published, inferred"):
        load_target(path)
    path = _write_variant(tmp_path, "[core]\n", "[core]\nmax_nuerons = 3\n", "typo.toml")
    with pytest.raises(TargetError, match="unknown key 'core.max_nuerons'"):
        load_target(path)


def test_negative_limit_is_rejected(tmp_path):
    path = _write_variant(tmp_path, "value = 4095,", "value = -1,")
    with pytest.raises(TargetError, match=r"core\.max_neurons \(-1\) is below its minimum"):
        load_target(path)


def test_unknown_energy_formula(tmp_path):
    path = _write_variant(tmp_path, 'formula = "mac_ac"', 'formula = "magic"')
    with pytest.raises(TargetError, match="formula 'magic' is unknown"):
        load_target(path)


def test_custom_target_file_loads(tmp_path):
    path = _write_variant(tmp_path, 'name = "loihi2"', 'name = "my_chip"')
    target = load_target(path)
    assert target.name == "my_chip" and target.path == str(path)


# ---------------------------------------------------------------------------------------------
# systems of chips
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SYSTEMS)
def test_system_is_its_chip_with_system_numbers(name):
    chip_name, chips = SYSTEMS[name]
    system, chip = load_target(name), load_target(chip_name)
    assert system.chip_target == chip_name and chip.chip_target == ""
    assert system.max_chips == chips and math.prod(system.chip_grid) >= chips
    assert system.max_cores == chips * system.cores_per_chip > chip.max_cores
    # per-core numbers, formats, mesh and energy are the chip's, with the chip's sources
    for f in ("max_neurons_per_core", "synapse_words_per_core", "weight_bits", "tiles_x",
              "tiles_y", "cores_per_tile", "time_per_synop_ns"):
        assert getattr(system, f) == getattr(chip, f)
        assert system.source_of(f) == chip.source_of(f)
    assert system.energy_models == chip.energy_models
    assert system.source_of("max_chips").key == "system.chips"
    assert system.source_of("max_chips").basis == "published"
    assert system.source_of("chip_grid").key == "system.chip_grid"


def test_system_figures():
    hala = load_target("hala_point")
    assert hala.cores_per_chip * hala.max_chips == 140_544  # Intel's total
    assert hala.source_of("cores_per_chip").basis == "inferred"
    assert load_target("kapoho_point").max_cores == 1024
    springs = load_target("pohoiki_springs")
    assert springs.max_chips == 24 * 32 and springs.barrier_system_ns == 16_200.0
    assert springs.source_of("barrier_system_ns").key == "system.barrier_ns"
    assert springs.barrier_system_chips == 768  # the system's barrier spans all its chips
    assert springs.barrier_ns == load_target("loihi1").barrier_ns == 113.0  # one tile


def test_chip_mesh_holds_its_cores(loihi1, loihi2):
    assert loihi1.tiles_x * loihi1.tiles_y * loihi1.cores_per_tile == 128
    assert loihi2.tiles_x * loihi2.tiles_y * loihi2.cores_per_tile == 128
    assert loihi1.chip_grid == loihi2.chip_grid == (1,)
    assert loihi1.source_of("time_per_tile_hop_ew_ns").basis == "published"
    hops = loihi1.energy_models["loihi_davies2018"]
    assert {"e_tile_hop_ew_pj", "e_tile_hop_ns_pj"} <= set(hops.used_coefficients)


def _system_file(tmp_path, body: str, name: str = "sys.toml") -> Path:
    path = tmp_path / name
    path.write_text('name = "my_board"\ndescription = "two chips"\n' + body, encoding="utf-8")
    return path


_GRID = 'chip_grid = { value = [2, 1], basis = "assumption", source = "x" }\n'
_CHIPS = 'chips = { value = 2, basis = "assumption", source = "x" }\n'


def test_custom_system_file_names_a_chip_file(tmp_path):
    chip = _write_variant(tmp_path, 'name = "loihi2"', 'name = "my_chip"', "my_chip.toml")
    target = load_target(_system_file(tmp_path, f'chip_target = "{chip.name}"\n[system]\n'
                                      + _CHIPS + _GRID))
    assert target.name == "my_board" and target.chip_target == "my_chip"
    assert target.max_chips == 2 and target.chip_grid == (2, 1)


@pytest.mark.parametrize("body, message", [
    ('chip_target = "loihi2"\n[system]\n' + _GRID, "missing key 'system.chips'"),
    ('chip_target = "loihi2"\n[system]\n' + _CHIPS + _GRID.replace("[2, 1]", "[1, 1]"),
     r"chip grid \[1, 1\] holds fewer than 128 cores per chip or 2 chips"),
    ('chip_target = "loihi2"\n[system]\n' + _CHIPS + _GRID.replace("[2, 1]", "[2, 1.5]"),
     "system.chip_grid.value: expected a list of 1 to 3 integers"),
    ('chip_target = "loihi2"\n[system]\n' + _CHIPS + _GRID + "cores = 3\n",
     "unknown key 'system.cores'"),
    ('chip_target = "loihi2"\n[core]\n[system]\n' + _CHIPS + _GRID, "unknown key 'core'"),
    ('chip_target = "kapoho_point"\n[system]\n' + _CHIPS + _GRID,
     "chip_target 'kapoho_point' is a system"),
    ('chip_target = "loihi9"\n[system]\n' + _CHIPS + _GRID, "target 'loihi9': unknown"),
])
def test_bad_system_file_is_one_line(tmp_path, body, message):
    with pytest.raises(TargetError) as excinfo:
        load_target(_system_file(tmp_path, body))
    assert re.search(message, _one_line(excinfo))


# ---------------------------------------------------------------------------------------------
# synapse memory model
# ---------------------------------------------------------------------------------------------

def _reference_bits(counts, target, *, sparse, span=None) -> int:
    """Loop version of nengo-loihi ``SynapseConfig.bits_per_axon`` summed over axons."""
    counts = [int(c) for c in counts]
    span = max(counts, default=0) if span is None else span
    entry = target.weight_bits + (synapse_index_bits(span, target) if sparse else 0)
    bits = 0
    for n in counts:
        stored = n if sparse else (span if n > 0 else 0)
        for i in range(0, stored, target.synapse_group_max):
            g = min(stored - i, target.synapse_group_max)
            group_bits = target.synapse_group_header_bits + g * entry
            bits += target.synapse_word_bits * math.ceil(group_bits / target.synapse_word_bits)
    return bits


def test_one_axon_100_synapses_dense_groups_of_63(loihi1):
    # the nengo-loihi packing with 63-synapse groups: 63 + 37 synapses
    target = dataclasses.replace(loihi1, synapse_group_max=63)
    words = math.ceil((10 + 63 * 8) / 64) + math.ceil((10 + 37 * 8) / 64)  # 9 + 5
    assert words == 14
    assert synapse_memory_bits([100], target, sparse=False) == words * 64


def test_one_axon_100_synapses_shipped_loihi1(loihi1):
    # shipped groups of 64: 64 + 36 synapses; 8-bit weights, 10-bit header, 64-bit words
    dense_words = math.ceil((10 + 64 * 8) / 64) + math.ceil((10 + 36 * 8) / 64)  # 9 + 5
    assert synapse_memory_bits([100], loihi1, sparse=False) == dense_words * 64
    # sparse with a span of 1000 neurons: 10-bit index -> 18 bits per synapse
    sparse_words = math.ceil((10 + 64 * 18) / 64) + math.ceil((10 + 36 * 18) / 64)  # 19 + 11
    assert synapse_memory_bits([100], loihi1, sparse=True, span=1000) == sparse_words * 64


def test_worked_examples_from_the_research_notes(loihi1, loihi2):
    # docs lava-and-loihi.md §2.1: 1000->1000 dense = 141 000 words; 10 % sparse with index
    # = 30 000 words; 256->200 dense = 7 424 words (64-bit words)
    assert synapse_memory_bits(np.full(1000, 1000), loihi1, sparse=False) == 141_000 * 64
    assert synapse_memory_bits(np.full(1000, 100), loihi1, sparse=True, span=1000) \
        == 30_000 * 64
    assert synapse_memory_bits(np.full(256, 200), loihi1, sparse=False) == 7_424 * 64
    # Loihi 2, 784 -> 50 dense: 13 words of 32 bit per axon (ceil(410 / 32))
    assert synapse_memory_bits(np.full(784, 50), loihi2, sparse=False) == 784 * 13 * 32


def test_dense_stores_the_full_span_and_skips_silent_axons(loihi1):
    # two routed axons, each storing a full row of 20 entries: 10 + 160 bits -> 3 words
    assert synapse_memory_bits([3, 0, 5], loihi1, sparse=False, span=20) == 2 * 3 * 64
    assert synapse_memory_bits([0, 0], loihi1, sparse=False) == 0
    assert synapse_memory_bits([], loihi1, sparse=True) == 0


def test_index_bits_rule(loihi1):
    assert synapse_index_bits(1, loihi1) == 6
    assert synapse_index_bits(64, loihi1) == 6
    assert synapse_index_bits(65, loihi1) == 7
    assert synapse_index_bits(1000, loihi1) == 10
    assert synapse_index_bits(4096, loihi1) == 12
    with pytest.raises(CapacityError, match=r"destination span \(4097\)"):
        synapse_index_bits(4097, loihi1)


def test_bad_counts(loihi1):
    from nmc_deploy.errors import LoweringError
    with pytest.raises(LoweringError, match=">= 0"):
        synapse_memory_bits([-1, 2], loihi1, sparse=True)
    with pytest.raises(LoweringError, match="smaller than the largest"):
        synapse_memory_bits([5], loihi1, sparse=False, span=4)


counts_st = st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(counts=counts_st, sparse=st.booleans(), name=st.sampled_from(SHIPPED))
def test_vectorized_matches_loop(counts, sparse, name):
    target = load_target(name)
    span = max(counts) + 7
    got = synapse_memory_bits(np.array(counts), target, sparse=sparse, span=span)
    assert got == _reference_bits(counts, target, sparse=sparse, span=span)
    assert got % target.synapse_word_bits == 0


@settings(max_examples=60, deadline=None)
@given(counts=counts_st, axon=st.integers(min_value=0, max_value=29),
       extra=st.integers(min_value=1, max_value=100), sparse=st.booleans())
def test_memory_is_monotone_in_synapse_count(counts, axon, extra, sparse):
    target = load_target("loihi1")
    more = list(counts)
    more[axon % len(more)] += extra
    span = max(more)
    assert synapse_memory_bits(more, target, sparse=sparse, span=span) \
        >= synapse_memory_bits(counts, target, sparse=sparse, span=span)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=2000), axons=st.integers(min_value=1, max_value=20),
       name=st.sampled_from(SHIPPED))
def test_sparse_is_never_cheaper_than_dense_for_full_rows(n, axons, name):
    target = load_target(name)
    assert target.synapse_index_bits_min > 0
    counts = [n] * axons
    sparse = synapse_memory_bits(counts, target, sparse=True, span=n)
    dense = synapse_memory_bits(counts, target, sparse=False)
    assert sparse >= dense


# ------------------------------------------------------------------ the record a build keeps

@pytest.mark.parametrize("name", SHIPPED + tuple(SYSTEMS))
def test_a_recorded_target_equals_the_loaded_one(name):
    from nmc_deploy.targets import load_target_record, target_record

    target = load_target(name)
    record = target_record(target)
    assert set(record) == ({"name", "file", "toml", "chip_toml"} if name in SYSTEMS
                           else {"name", "file", "toml"})
    assert load_target_record(record, "target.json") == target


def test_a_recorded_system_with_its_own_chip_file_outlives_both_files(tmp_path):
    """A user's system over a user's chip file: the record keeps both texts."""
    from nmc_deploy.targets import load_target_record, target_record

    chip = (targets_dir() / "loihi2.toml").read_text().replace('name = "loihi2"', 'name = "mychip"')
    (tmp_path / "mychip.toml").write_text(chip)
    system = (targets_dir() / "kapoho_point.toml").read_text().replace(
        'chip_target = "loihi2"', 'chip_target = "mychip.toml"')
    assert "mychip.toml" in system
    (tmp_path / "sys.toml").write_text(system)
    target = load_target(tmp_path / "sys.toml")
    record = target_record(target)
    (tmp_path / "sys.toml").unlink()
    (tmp_path / "mychip.toml").unlink()
    again = load_target_record(record, "target.json")
    assert again == target and again.chip_target == "mychip" and again.max_chips == 8


def test_a_bad_record_is_one_line():
    from nmc_deploy.targets import load_target_record

    with pytest.raises(TargetError, match="b/target.json: no target text recorded"):
        load_target_record({"name": "x", "file": "/gone.toml"}, "b/target.json")
    with pytest.raises(TargetError, match="not valid TOML"):
        load_target_record({"file": "/gone.toml", "toml": "name = "}, "b/target.json")
    with pytest.raises(TargetError, match="/gone.toml: missing key"):
        load_target_record({"file": "/gone.toml", "toml": 'name = "x"'}, "b/target.json")


def test_shipped_targets_are_found_as_package_data_of_an_installed_copy(tmp_path):
    """An installed wheel has nmc_deploy/hw_targets/*.toml and no <repo>/hw_targets:
    targets_dir() finds the package data (the pip-install test checks the real wheel)."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    pkg = tmp_path / "site" / "nmc_deploy"
    shutil.copytree(root / "nmc_deploy", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "hw_targets", pkg / "hw_targets")
    code = ("from nmc_deploy.targets import targets_dir, load_target, target_names\n"
            "print(targets_dir()); print(target_names()); print(load_target('loihi2').path)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"),
                                          "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(pkg / "hw_targets")
    assert eval(lines[1]) == sorted(SHIPPED + tuple(SYSTEMS))
    assert lines[2] == str(pkg / "hw_targets" / "loihi2.toml")
