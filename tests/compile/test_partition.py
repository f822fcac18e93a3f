"""Placement invariants: every neuron once, every core within the target's limits."""
import numpy as np
import pytest

from nmc_deploy.compile.partition import partition_program
from nmc_deploy.errors import CapacityError
from nmc_deploy.targets import load_target


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
@pytest.mark.parametrize("sharing", [False, True])
def test_placement_puts_every_neuron_once_within_limits(tiny_program, target, sharing):
    tgt = load_target(target)
    placement = partition_program(tiny_program, tgt, weight_sharing=sharing)
    summary = placement.summary(tiny_program)
    for p in tiny_program.populations:
        covered = np.zeros(p.size, int)
        for core in placement.cores:
            for c in core:
                if c.population == p.name:
                    covered[c.start:c.stop] += 1
        assert np.all(covered == 1), p.name
    for c in summary["cores"]:
        assert c["neurons"] <= tgt.max_neurons_per_core
        assert c["synapse_memory_bits"] <= tgt.synapse_memory_bits_per_core
        assert c["in_axons"] <= tgt.max_in_axons_per_core
        assert c["out_axons"] <= tgt.max_out_axons_per_core
        assert len(c["populations"]) <= tgt.max_neuron_groups_per_core
    if not sharing:  # every expanded synapse stored once
        assert sum(c["synapses"] for c in summary["cores"]) == sum(
            g.num_synapses for g in tiny_program.groups if g.kind != "attention")


def test_model_that_does_not_fit_names_the_limit(tiny_program, tmp_path):
    from pathlib import Path

    src = Path(load_target("loihi2").path).read_text()
    small = src.replace("[chip]", "[chip]", 1)
    import re

    small = re.sub(r"(cores\s*=\s*\{\s*value\s*=\s*)128", r"\g<1>2", small)
    path = tmp_path / "tiny.toml"
    path.write_text(small)
    with pytest.raises(CapacityError, match=r"cores \(\d+\) exceeds the cores of target"):
        partition_program(tiny_program, load_target(path))


def _expanded(program):
    import dataclasses

    from nmc_deploy.program.shared_weights import as_csr
    groups = tuple(dataclasses.replace(g, weights=as_csr(g.weights)) for g in program.groups)
    return dataclasses.replace(program, groups=groups)


def test_unshared_mode_places_exactly_like_expanded_matrices(tiny_program):
    from nmc_deploy.program.shared_weights import is_shared

    tgt = load_target("loihi2")
    assert any(is_shared(g.weights) for g in tiny_program.groups)
    off = partition_program(tiny_program, tgt, weight_sharing=False)
    expanded = partition_program(_expanded(tiny_program), tgt, weight_sharing=False)
    assert off == expanded


def test_shared_mode_stores_each_shared_matrix_once_per_core(tiny_program):
    tgt = load_target("loihi2")
    on = partition_program(tiny_program, tgt, weight_sharing=True)
    off = partition_program(tiny_program, tgt, weight_sharing=False)
    assert on.cores_used <= off.cores_used
    stored_on = sum(c.synapses for cs in on.cores for c in cs)
    stored_off = sum(c.synapses for cs in off.cores for c in cs)
    assert stored_on < stored_off
    # every neuron placed exactly once in both modes
    for placement in (on, off):
        seen = {p.name: np.zeros(p.size, int) for p in tiny_program.populations}
        for cs in placement.cores:
            for c in cs:
                seen[c.population][c.start:c.stop] += 1
        assert all(np.all(v == 1) for v in seen.values())
