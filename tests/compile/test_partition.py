"""Placement invariants: every neuron once, every core within the target's limits."""
import numpy as np
import pytest

from nmc_deploy.compile.partition import partition_program
from nmc_deploy.errors import CapacityError
from nmc_deploy.targets import load_target


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_placement_puts_every_neuron_once_within_limits(tiny_program, target):
    tgt = load_target(target)
    placement = partition_program(tiny_program, tgt)
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
    with pytest.raises(CapacityError, match=r"cores \(\d+\) exceed the cores of target"):
        partition_program(tiny_program, load_target(path))
