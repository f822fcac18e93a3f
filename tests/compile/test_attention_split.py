"""compile/attention_split.py: attention ops split into units that each fit one core."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nmc_deploy.compile.attention_split import plan_attention_units
from nmc_deploy.errors import CapacityError
from nmc_deploy.loihi.attention import attention_counts
from nmc_deploy.program import AttentionOp


def _op(heads=4, head_dim=8, n_tokens=16):
    return AttentionOp("a", "q", "k", "v", num_heads=heads, dim=heads * head_dim,
                       n_tokens=n_tokens)


def _coverage(op, units):
    """(heads, queries, keys) -> how many units compute that term."""
    cover = np.zeros((op.num_heads, op.n_tokens, op.n_tokens), int)
    for u in units:
        cover[u.head_start:u.head_stop, u.q_start:u.q_stop, u.k_start:u.k_stop] += 1
    return cover


@settings(max_examples=60, deadline=None)
@given(heads=st.integers(1, 6), head_dim=st.integers(1, 12), n_tokens=st.integers(1, 40),
       max_in=st.integers(3, 3000), max_out=st.integers(1, 3000),
       policy=st.sampled_from(["fit", "head"]))
def test_units_cover_every_term_once_and_fit(heads, head_dim, n_tokens, max_in, max_out, policy):
    op = _op(heads, head_dim, n_tokens)
    try:
        units = plan_attention_units(op, max_in, max_out, policy)
    except CapacityError as exc:
        assert "max_in_axons_per_core" in str(exc)
        assert min(max_in // (3 * head_dim), max_out // head_dim) < 1
        return
    assert np.all(_coverage(op, units) == 1)
    assert all(u.in_axons <= max_in and u.out_axons <= max_out for u in units)
    if policy == "head":
        assert all(u.heads == 1 for u in units)
    # one key partition for the whole op: contiguous blocks from 0 to n_tokens
    keys = sorted({(u.k_start, u.k_stop) for u in units})
    assert keys[0][0] == 0 and keys[-1][1] == n_tokens
    assert all(a[1] == b[0] for a, b in zip(keys, keys[1:]))


def test_fit_packs_heads_and_head_policy_splits_them():
    op = _op(heads=4, head_dim=8, n_tokens=16)  # one head: 384 in, 128 out
    assert len(plan_attention_units(op, 16000, 16000, "fit")) == 1
    assert len(plan_attention_units(op, 800, 16000, "fit")) == 2  # 2 heads per unit
    units = plan_attention_units(op, 16000, 16000, "head")
    assert [(u.head_start, u.head_stop) for u in units] == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_paper_shapes():
    # Spikformer-4-384 (12 heads of 32, 64 tokens): one head per unit needs 6144 in-axons
    op = _op(heads=12, head_dim=32, n_tokens=64)
    units = plan_attention_units(op, 16000, 16000)
    assert all(u.k_stop - u.k_start == 64 for u in units) and sum(u.heads for u in units) == 12
    # Spikformer-8-512 (8 heads of 64, 196 tokens): k and v of one head need 25088 axons
    op = _op(heads=8, head_dim=64, n_tokens=196)
    units = plan_attention_units(op, 16000, 16000)
    assert len({(u.k_start, u.k_stop) for u in units}) > 1
    assert max(u.in_axons for u in units) <= 16000
    assert np.all(_coverage(op, units) == 1)


def test_no_head_fits_is_one_line():
    with pytest.raises(CapacityError, match="reduce the head width"):
        plan_attention_units(_op(heads=1, head_dim=100, n_tokens=4), 200, 1000)


def test_unit_partials_sum_to_the_op():
    """Units' partial counts (keys outside the block zeroed) add up to the whole op."""
    rng = np.random.default_rng(0)
    op = _op(heads=2, head_dim=3, n_tokens=10)
    units = plan_attention_units(op, 2 * 3 * 5 + 3 * 4, 1000)  # forces key blocks
    assert len({(u.k_start, u.k_stop) for u in units}) > 1
    q, k, v = (rng.random((5, op.dim * op.n_tokens)) < 0.4 for _ in range(3))
    full, _ = attention_counts(q, k, v, op.num_heads, op.dim, op.n_tokens)
    total = np.zeros_like(full)
    token = np.arange(op.dim * op.n_tokens) % op.n_tokens
    for u in units:
        keep = (token >= u.k_start) & (token < u.k_stop)
        c, _ = attention_counts(q, k * keep, v * keep, op.num_heads, op.dim, op.n_tokens)
        out = u.outputs(op.dim, op.n_tokens)
        total[:, out] += c[:, out]
    assert np.array_equal(total, full)


def test_json_round_trip():
    op = _op(heads=2, head_dim=4, n_tokens=8)
    units = plan_attention_units(op, 50, 1000)
    split = AttentionOp(**{**op.to_json(), "units": ()}).__class__.from_json(
        {**op.to_json(), "units": [u.to_json() for u in units]})
    assert split.units == units and split.key_blocks == tuple(sorted(
        {(u.k_start, u.k_stop) for u in units}))
