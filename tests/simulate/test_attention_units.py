"""Attention split into units: the reference simulator and Lava compute the units' sum."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nmc_deploy.compile.attention_split import split_attention
from nmc_deploy.simulate.reference import simulate_reference
from nmc_deploy.targets import load_target


def _split(program, policy="head", **limits):
    target = dataclasses.replace(load_target("loihi2"), **limits)
    return split_attention(program, target, policy)


def _mismatches(a, b):
    return sum(int(np.count_nonzero(a.spikes[k] != b.spikes[k])) for k in a.spikes)


def test_split_per_head_changes_no_spike(tiny_program, digits):
    x = digits.x_test[:8]
    per_head = _split(tiny_program, "head")
    assert all(len(op.units) == op.num_heads for op in per_head.attention)
    whole, split = simulate_reference(tiny_program, x), simulate_reference(per_head, x)
    assert _mismatches(whole, split) == 0 and np.array_equal(whole.logits, split.logits)


def test_key_blocks_add_their_shifted_partials(tiny_program, digits):
    """Key blocks: each unit's weighted partial is shifted by the attention group's
    weight_exp before the sum (as each Lava Process does); with weight_exp >= 0 that is
    exactly the unsplit input."""
    op = tiny_program.attention[0]
    blocked = _split(tiny_program, "head", max_in_axons_per_core=op.head_dim * 7)
    assert len(blocked.attention[0].key_blocks) > 1
    x = digits.x_test[:8]
    whole, split = simulate_reference(tiny_program, x), simulate_reference(blocked, x)
    g = next(g for g in tiny_program.groups if g.kind == "attention")
    assert g.weight_exp >= 0  # the quantizer's choice for attention: partials add exactly
    assert _mismatches(whole, split) == 0 and np.array_equal(whole.logits, split.logits)
    assert split.stats["layers"] == whole.stats["layers"]  # the same attention work


@pytest.mark.lava
@pytest.mark.parametrize("limits", [{}, {"max_in_axons_per_core": 56}],
                         ids=["per-head", "key-blocks"])
def test_reference_equals_lava_on_split_attention(tiny_program, digits, limits):
    from nmc_deploy.simulate.lava.backend import simulate_lava

    program = _split(tiny_program, "head", **limits)
    assert all(len(op.units) >= op.num_heads for op in program.attention)
    x = digits.x_test[:4]
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 500
    assert _mismatches(ref, lav) == 0
    assert np.array_equal(ref.logits, lav.logits)
