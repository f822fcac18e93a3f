"""Blocked placement order (compile/order.py) and its use by the partitioner."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from nmc_deploy.compile.order import OrderLayout, choose_order, merge_ranges
from nmc_deploy.program.placement import BlockOrder
from nmc_deploy.targets import load_target, synapse_memory_bits


@st.composite
def orders(draw):
    channels = draw(st.integers(1, 12))
    positions = draw(st.integers(1, 9))
    cuts = draw(st.sets(st.integers(1, channels - 1), max_size=channels - 1)) if channels > 1 \
        else set()
    return BlockOrder(positions, (0, *sorted(cuts), channels))


@settings(max_examples=150, deadline=None)
@given(order=orders(), data=st.data())
def test_order_is_a_permutation_and_runs_are_unions_of_rectangles(order, data):
    perm = order.neurons()
    assert np.array_equal(np.sort(perm), np.arange(order.size))
    b0 = data.draw(st.integers(0, order.size - 1))
    b1 = data.draw(st.integers(b0 + 1, order.size))
    rects = OrderLayout(order, order.bounds[-1], order.positions).rects(b0, b1)
    cells = [c * order.positions + n for c0, c1, n0, n1 in rects
             for c in range(c0, c1) for n in range(n0, n1)]
    assert len(cells) == len(set(cells)) == b1 - b0  # disjoint
    assert set(cells) == set(order.neurons(b0, b1).tolist())
    assert len(rects) <= 5


@settings(max_examples=60, deadline=None)
@given(channels=st.integers(1, 7), positions=st.integers(1, 6), data=st.data())
def test_flat_layout_rectangles_cover_the_flat_range(channels, positions, data):
    size = channels * positions
    b0 = data.draw(st.integers(0, size - 1))
    b1 = data.draw(st.integers(b0 + 1, size))
    rects = OrderLayout(None, channels, positions).rects(b0, b1)
    cells = {c * positions + n for c0, c1, n0, n1 in rects
             for c in range(c0, c1) for n in range(n0, n1)}
    assert cells == set(range(b0, b1))


def test_merge_ranges():
    assert merge_ranges([(5, 7), (0, 2), (1, 3), (7, 9)]) == [(0, 3), (5, 9)]
    assert merge_ranges([]) == []


def test_choose_order_keeps_blocks_within_the_memory_budget():
    tgt = load_target("loihi2")
    rng = np.random.default_rng(3)
    kernel = (rng.random((300, 200)) < 0.3).astype(np.int64)
    prefix = np.vstack([np.zeros((1, 200), np.int64), np.cumsum(kernel, axis=0)])
    counts_of = [lambda lo, hi: prefix[hi] - prefix[lo]]
    order = choose_order(300, 64, counts_of, tgt, fraction=0.5)
    assert order is not None and order.bounds[0] == 0 and order.bounds[-1] == 300
    budget = 0.5 * tgt.synapse_memory_bits_per_core

    def mem(lo, hi):
        c = prefix[hi] - prefix[lo]
        return synapse_memory_bits(c[c > 0], tgt, sparse=True,
                                   span=min((hi - lo) * 64, tgt.max_neurons_per_core))

    for lo, hi in zip(order.bounds, order.bounds[1:]):
        assert mem(lo, hi) <= budget or hi - lo == 1
        if hi < 300:  # greedy: one more channel would not fit
            assert mem(lo, hi + 1) > budget
    # one channel per block is the flat order, and one position needs no order
    assert choose_order(300, 64, counts_of, tgt, fraction=1e-6) is None
    assert choose_order(300, 1, counts_of, tgt) is None


def test_block_order_json_round_trip_and_refusals():
    from nmc_deploy.errors import InputFileError

    order = BlockOrder(5, (0, 3, 7))
    assert BlockOrder.from_json(order.to_json(), "x") == order
    for bad in ({"positions": 5, "channel_bounds": [1, 3]},
                {"positions": 5, "channel_bounds": [0, 3, 3]},
                {"positions": 0, "channel_bounds": [0, 3]}):
        with pytest.raises(InputFileError):
            BlockOrder.from_json(bad, "x")


def _token_chain(c_in=48, c_mid=96, c_out=64, tokens=32, seed=0):
    """A program input -> a (TokenShared) -> b (TokenShared): b's neurons are cut in a
    blocked order."""
    from nmc_deploy.program import INPUT, Population, Program, Readout, SynapseGroup
    from nmc_deploy.program.shared_weights import TokenShared

    rng = np.random.default_rng(seed)

    def kernel(o, i):
        k = rng.integers(-100, 100, (o, i)) * (rng.random((o, i)) < 0.5)
        return sp.csr_matrix(k.astype(np.int32))

    def pop(name, c, depth):
        return Population(name=name, shape=(c, tokens), kind="lif", du=4095, dv=0, vth=10,
                          bias_mant=0, bias_exp=0, depth=depth, scale=64.0, layer=name)

    def group(name, src, dst, w):
        return SynapseGroup(name=name, source=src, target=dst, weights=w, weight_exp=0,
                            num_message_bits=0, delay=0, layer=name, kind="synapses")

    pops = (pop("a", c_mid, 1), pop("b", c_out, 2))
    groups = (group("in_a", INPUT, "a", TokenShared(kernel(c_mid, c_in), tokens)),
              group("a_b", "a", "b", TokenShared(kernel(c_out, c_mid), tokens)))
    readout = Readout({"b": sp.csr_matrix((2, c_out * tokens))}, np.zeros(2), 1.0, 2)
    return Program(pops, groups, (), readout, (c_in, tokens), 1, 4)


def _small_target(**kw):
    return dataclasses.replace(load_target("hala_point"), **kw)


def test_blocked_partition_reaches_fewer_cores_than_the_flat_cut():
    """a's neurons reach fewer cores of b in the blocked order than with the same chunk sizes
    cut in the flat order."""
    from nmc_deploy.compile.partition import _out_degrees, partition_program

    program = _token_chain()
    tgt = _small_target(max_neurons_per_core=256, synapse_words_per_core=600)
    placement = partition_program(program, tgt)
    assert "b" in placement.orders and len(placement.orders["b"].bounds) > 2
    got = _out_degrees(program, placement.cores, orders=placement.orders)["a"]
    sizes = [c.neurons for cs in placement.cores for c in cs if c.population == "b"]
    flat_core = np.repeat(np.arange(len(sizes)), sizes)  # the same cuts, flat order
    w = program.groups[1].weights.tocsr().tocoo()
    flat_pairs = {(c, flat_core[r]) for r, c in zip(w.row, w.col)}
    flat_deg = np.bincount([c for c, _ in flat_pairs], minlength=got.size)
    assert got.max() < flat_deg.max() and got.sum() < flat_deg.sum()


@pytest.mark.parametrize("seed", range(6))
def test_out_degrees_in_blocked_orders_equal_a_brute_force_count(seed):
    """On random programs of convolutions, pools and token layers (merged, lagged, sparse,
    CSR and recurrent groups), cut in blocked orders: every neuron's out-degree is the
    number of distinct cores its expanded synapses reach."""
    from nmc_deploy.compile.partition import _out_degrees, core_maps, partition_program
    from nmc_deploy.program.shared_weights import as_csr
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(  # the simulator tests' random programs
        "reference_shared_programs",
        Path(__file__).parents[1] / "simulate" / "test_reference_shared.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    program = mod.random_shared_program(seed)
    tgt = _small_target(max_neurons_per_core=40, synapse_words_per_core=400)
    placement = partition_program(program, tgt)
    assert placement.orders, "some population is blocked"
    _, core_of = core_maps(program, placement.cores, placement.orders)
    got = _out_degrees(program, placement.cores, orders=placement.orders)
    for p in program.populations:
        want = [set() for _ in range(p.size)]
        for g in program.groups:
            if g.source == p.name:
                w = as_csr(g.weights).tocoo()
                for r, c in zip(w.row, w.col):
                    want[c].add(core_of[g.target][r])
        assert np.array_equal(got[p.name], [len(s) for s in want]), p.name


def test_blocked_chunks_tile_the_order_and_end_on_rows():
    from nmc_deploy.compile.partition import partition_program

    program = _token_chain(seed=1)
    tgt = _small_target(max_neurons_per_core=200, synapse_words_per_core=600)
    placement = partition_program(program, tgt)
    order = placement.orders["b"]
    chunks = sorted((c for cs in placement.cores for c in cs if c.population == "b"),
                    key=lambda c: c.start)
    assert chunks[0].start == 0 and chunks[-1].stop == order.size
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    rows = {int(b) * order.positions + k * (int(e) - int(b))
            for b, e in zip(order.bounds, order.bounds[1:]) for k in range(order.positions + 1)}
    assert all(c.stop in rows for c in chunks)


def test_a_neuron_below_the_limit_is_placed_whatever_the_rounds_headroom():
    """Later rounds cut chunks below the out-axon limit (headroom); one neuron whose
    out-degree lies between that and the limit still gets a chunk of its own."""
    from nmc_deploy.compile.partition import _chunk_population
    from nmc_deploy.compile.shared_costs import SharedCosts

    program = _token_chain(c_in=4, c_mid=2, c_out=2, tokens=2)
    tgt = load_target("loihi1")
    p = program.populations[0]
    outdeg = np.array([1, 3900, 1, 1])
    chunks = _chunk_population(p, [], tgt, outdeg, True, SharedCosts(),
                               max_out=int(0.94 * tgt.max_out_axons_per_core))
    assert [(c.start, c.stop) for c in chunks] == [(0, 1), (1, 2), (2, 4)]


def test_renumbered_copy_leaves_the_cached_matrix_alone():
    from nmc_deploy.compile.shared_costs import SharedCosts
    from nmc_deploy.program.shared_weights import ConvShared

    rng = np.random.default_rng(5)
    w = ConvShared(rng.integers(-9, 9, (4, 2, 3, 3)).astype(np.int32), (2, 5, 5), (1, 1),
                   (1, 1))
    costs = SharedCosts()
    before = costs.csc(w).copy()
    order = BlockOrder(25, (0, 3, 4))
    m = costs.csc_in_order(w, order)
    assert (costs.csc(w) != before).nnz == 0
    position = np.empty(order.size, np.int64)
    position[order.neurons()] = np.arange(order.size)
    want = sp.csc_matrix(before, copy=True)
    want = sp.csc_matrix((np.ones(want.nnz), position[want.indices], want.indptr),
                         shape=want.shape)
    assert (m != want).nnz == 0 and m.has_sorted_indices
