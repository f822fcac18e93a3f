"""Placement invariants: every neuron once, every core within the target's limits."""
import numpy as np
import scipy.sparse as sp
import pytest

from nmc_deploy.compile.partition import partition_program
from nmc_deploy.errors import CapacityError
from nmc_deploy.targets import load_target


# reference counts of the input positions a convolution's output positions read: the direct
# loop over kernel taps (the partitioner uses cached and separable forms of it)
def _conv_used(w, out: np.ndarray) -> np.ndarray:
    """(H, W) bool: the input positions that any of the ``out`` (flat) positions reads."""
    ho, wo = w.out_hw
    out = out.reshape(ho, wo)
    H, W = w.in_shape[1:]
    used = np.zeros((H, W), bool)
    vy, vx = w._valid(0), w._valid(1)
    for a in range(w.kernel.shape[2]):
        for b in range(w.kernel.shape[3]):
            (oy, iy), (ox, ix) = vy[a], vx[b]
            if len(oy) and len(ox):
                used[iy[:, None], ix[None, :]] |= out[oy[:, None], ox[None, :]]
    return used


def _output_positions(w, start, stop) -> np.ndarray:
    """(Ho * Wo,) bool: the output positions of rows ``[start, stop)`` of the (C, Ho, Wo)
    layout (a range within one channel, or wrapping into the next)."""
    per = w.out_hw[0] * w.out_hw[1]
    out = np.zeros(per, bool)
    if stop - start >= per:
        out[:] = True
    else:
        a, b = start % per, (stop - 1) % per + 1
        if a < b:
            out[a:b] = True
        else:
            out[a:] = True
            out[:b] = True
    return out


def _conv_input_positions(w, start, stop) -> int:
    """Input positions (population axons) whose kernel reaches output rows [start, stop)."""
    return int(_conv_used(w, _output_positions(w, start, stop)).sum())


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


@pytest.mark.parametrize("neurons", [4095, 100])
def test_out_degrees_equal_a_brute_force_count(tiny_program, neurons):
    """Every neuron's out-axons are the distinct cores its synapses (and attention units)
    reach, counted here from the expanded matrices."""
    import dataclasses

    from nmc_deploy.compile.attention_split import split_attention
    from nmc_deploy.compile.partition import _out_degrees
    from nmc_deploy.program.shared_weights import as_csr

    tgt = dataclasses.replace(load_target("loihi2"), max_neurons_per_core=neurons)
    program = split_attention(tiny_program, tgt, "head")
    placement = partition_program(program, tgt)
    core_of = {p.name: np.full(p.size, -1) for p in program.populations}
    for i, cs in enumerate(placement.cores):
        for c in cs:
            core_of[c.population][c.start:c.stop] = i
    want = {p.name: [set() for _ in range(p.size)] for p in program.populations}
    for g in program.groups:
        if g.kind == "attention" or g.source not in core_of:
            continue
        w = as_csr(g.weights).tocoo()
        for r, c in zip(w.row, w.col):
            want[g.source][c].add(core_of[g.target][r])
    for op in program.attention:
        for j, u in enumerate(op.units):
            for name, lo, hi in ((op.q, u.q_start, u.q_stop), (op.k, u.k_start, u.k_stop),
                                 (op.v, u.k_start, u.k_stop)):
                for i in u.reads(lo, hi, op.n_tokens):
                    want[name][i].add(("unit", op.name, j))
    got = _out_degrees(program, placement.cores)
    assert any(len(cs) > 1 for cs in placement.cores) or placement.cores_used > 10
    for name, sets in want.items():
        assert np.array_equal(got[name], [len(s) for s in sets]), name


def test_cached_conv_input_positions_equal_the_direct_count():
    from hypothesis import given, settings, strategies as st

    from nmc_deploy.compile.shared_costs import SharedCosts
    from nmc_deploy.program.shared_weights import ConvShared

    @settings(max_examples=40, deadline=None)
    @given(h=st.integers(3, 9), k=st.integers(1, 3), stride=st.integers(1, 2),
           pad=st.integers(0, 1), data=st.data())
    def check(h, k, stride, pad, data):
        w = ConvShared(np.ones((2, 1, k, k), np.int32), (1, h, h), (stride, stride), (pad, pad))
        n = w.shape[0]
        start = data.draw(st.integers(0, n - 1))
        stop = data.draw(st.integers(start + 1, n))
        assert SharedCosts().positions(w, start, stop) == _conv_input_positions(w, start, stop)

    check()


def _random_runs(rng, size, per_run):
    cuts = np.sort(rng.choice(np.arange(1, size), size=size // per_run, replace=False))
    return np.repeat(np.arange(len(cuts) + 1), np.diff(np.r_[0, cuts, size])), len(cuts) + 2


def _flat_cores(order, core_at):
    """Core of each flat neuron from the core of each order position."""
    if order is None:
        return core_at
    flat = np.empty_like(core_at)
    flat[order.neurons()] = core_at
    return flat


@pytest.mark.parametrize("blocked", [False, True])
def test_conv_outdegree_bound_holds_and_uses_positions(blocked):
    """The position-aware bound for large convolutions never undercounts the exact
    out-degree and is below the channel-only bound once runs are smaller than a plane, in
    the flat and in a blocked placement order."""
    from nmc_deploy.compile.partition import csc_pairs, conv_outdegree
    from nmc_deploy.program.placement import BlockOrder
    from nmc_deploy.program.shared_weights import ConvShared

    rng = np.random.default_rng(0)
    for groups, k, stride, pad in [(1, 3, 1, 1), (2, 3, 2, 0), (1, 1, 1, 0)]:
        kernel = rng.integers(-3, 4, (4, 4 // groups, k, k)) * (rng.random((4, 4 // groups, k, k)) < .6)
        w = ConvShared(kernel.astype(np.int32), (4, 7, 7), (stride, stride), (pad, pad),
                       groups=groups)
        n_out = w.shape[0]
        per, hw = w.out_hw[0] * w.out_hw[1], 49
        order = BlockOrder(per, (0, 3, 4)) if blocked else None
        core_at, n_cores = _random_runs(rng, n_out, 5)
        core_of = _flat_cores(order, core_at)
        exact = np.bincount(csc_pairs(sp.csc_matrix(w.tocsr()), core_of, n_cores, False)
                            // n_cores, minlength=w.shape[1])
        bound = conv_outdegree(w, core_at, order=order)
        assert np.all(bound >= exact)
        dense = np.abs(w.tocsr()).toarray() > 0  # (outputs, inputs)
        ch_of_out = np.arange(n_out) // per
        ch_feeds = np.zeros((4, 4), bool)  # (out channel, in channel) any tap, any position
        for o in range(4):
            ch_feeds[o] = dense[ch_of_out == o].reshape(-1, 4, hw).any(axis=(0, 2))
        channel_only = np.zeros(w.shape[1], int)
        for run in range(n_cores - 1):
            chans = np.unique(ch_of_out[core_of == run])
            channel_only += np.repeat(ch_feeds[chans].any(axis=0), hw)
        assert np.all(bound <= channel_only)
        assert np.any(bound < channel_only) or k == 1


@pytest.mark.parametrize("bounds", [None, "blocks"])
def test_token_reach_equals_the_pair_lists(bounds):
    """Counting runs per source from their rectangles equals the distinct pairs of the
    expanded matrix, in the flat and in blocked placement orders, with pairs on flagged
    cores coming back as pairs instead."""
    from nmc_deploy.compile.order import OrderLayout, token_reach
    from nmc_deploy.compile.partition import csc_pairs
    from nmc_deploy.compile.shared_costs import SharedCosts
    from nmc_deploy.program.placement import BlockOrder
    from nmc_deploy.program.shared_weights import TokenShared

    rng = np.random.default_rng(1)
    for n_tokens, c_out, c_in in [(5, 7, 3), (16, 4, 6), (3, 20, 2)]:
        kernel = (sp.random(c_out, c_in, density=0.4, random_state=rng, format="csr") * 10
                  ).astype(np.int32)
        kernel.eliminate_zeros()
        w = TokenShared(kernel, n_tokens)
        order = None
        if bounds:
            cuts = np.sort(rng.choice(np.arange(1, c_out), size=min(2, c_out - 1), replace=False))
            order = BlockOrder(n_tokens, (0, *map(int, cuts), c_out))
        size = c_out * n_tokens
        core_at, n_cores = _random_runs(rng, size, 4)
        exact = csc_pairs(sp.csc_matrix(w.tocsr()), _flat_cores(order, core_at), n_cores, False)
        want = np.bincount(exact // n_cores, minlength=c_in * n_tokens)
        layout = OrderLayout(order, c_out, n_tokens)
        prefix = SharedCosts().prefix(w)
        deg, flagged = token_reach(prefix, layout, core_at, n_cores, np.zeros(n_cores, bool))
        assert flagged.size == 0 and np.array_equal(deg, want)
        flag = np.zeros(n_cores, bool)
        flag[::2] = True
        deg, flagged = token_reach(prefix, layout, core_at, n_cores, flag)
        assert np.array_equal(deg + np.bincount(flagged // n_cores, minlength=deg.size), want)
        assert np.unique(flagged).size == flagged.size  # distinct
        assert set(flagged) == set(exact[flag[exact % n_cores]])


def test_separable_input_positions_equal_the_direct_count():
    """Large convolutions count the input positions of an output range from row and column
    read maps (exact: every tap pairs with every other); equal to the direct tap loop."""
    from hypothesis import given, settings, strategies as st

    from nmc_deploy.compile.shared_costs import SharedCosts
    from nmc_deploy.program.shared_weights import ConvShared

    @settings(max_examples=80, deadline=None)
    @given(h=st.integers(3, 11), w_=st.integers(3, 11), k=st.integers(1, 3),
           stride=st.integers(1, 2), pad=st.integers(0, 1), dil=st.integers(1, 2),
           data=st.data())
    def check(h, w_, k, stride, pad, dil, data):
        if (h + 2 * pad - dil * (k - 1) - 1) < 0 or (w_ + 2 * pad - dil * (k - 1) - 1) < 0:
            return
        w = ConvShared(np.ones((2, 1, k, k), np.int32), (1, h, w_), (stride, stride),
                       (pad, pad), (dil, dil))
        n = w.shape[0]
        start = data.draw(st.integers(0, n - 1))
        stop = data.draw(st.integers(start + 1, n))
        per = w.out_hw[0] * w.out_hw[1]
        a, b = start % per, (stop - 1) % per + 1
        spans = [(0, per)] if stop - start >= per else [(a, b)] if a < b else [(a, per), (0, b)]
        got = SharedCosts()._separable_used(w, spans)
        want = _conv_used(w, _output_positions(w, start, stop)).ravel()
        assert np.array_equal(got, want)

    check()
