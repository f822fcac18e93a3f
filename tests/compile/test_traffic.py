"""compile/traffic.py: messages, tile hops and chip hops of a placed program, by hand."""
import re
import warnings

import numpy as np
import pytest

from factories import chain_graph, mesh_target as _target
from nmc_deploy.compile.partition import partition_program
from nmc_deploy.compile.traffic import count_traffic, sender_events
from nmc_deploy.program import Activity, PlacementSummary
from nmc_deploy.targets import load_target


@pytest.fixture(scope="module")
def chain_program():
    """input -> 4 LIF (lif0) -> 2 LIF (lif1): all 8 weights positive and nonzero."""
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program

    graph = chain_graph(np.random.default_rng(3), sizes=(16, 4, 2), weight_mean=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(lower_graph(graph))
    assert [p.size for p in program.populations] == [4, 2]
    assert all(g.weights.nnz == 8 for g in program.groups if g.source != "input")
    return program


# Placement with 2 neurons per core: core 0 = lif0[0:2], core 1 = lif0[2:4], core 2 = lif1.
# lif0 neuron n sends each spike to core 2 (lif1) only; events of lif0 = [1, 2, 3, 4].
#  a) 2 cores per chip on a 2 x 1 mesh, chips in a row: cores 0, 1 on chip 0 at tiles (0,0),
#     (1,0); core 2 on chip 1 at tile (0,0): every message crosses one chip link; the
#     messages of neurons 2, 3 (core 1) also move one tile east-west: 3 + 4 = 7 tile hops.
#  b) the same with a 1 x 2 mesh: the 7 tile hops are north-south.
#  c) 4 cores on one chip, 2 x 2 mesh in snake order: tiles (0,0), (1,0), (1,1); core 0 ->
#     core 2 is 1 + 1 hops, core 1 -> core 2 is 1 north-south hop: E-W 1 + 2 = 3,
#     N-S 1 + 2 + 3 + 4 = 10, no chip hops.
@pytest.mark.parametrize("layout, expected", [
    (dict(tiles=(2, 1), cores_per_chip=2, chips=2, grid=(2,)), (10, 10, 7, 0, 10, (1, 0, 1))),
    (dict(tiles=(1, 2), cores_per_chip=2, chips=2, grid=(2,)), (10, 10, 0, 7, 10, (0, 1, 1))),
    (dict(tiles=(2, 2), cores_per_chip=4, chips=1, grid=(1,)), (10, 0, 3, 10, 0, (1, 1, 0))),
])
def test_hops_by_hand(chain_program, tmp_path, layout, expected):
    target = _target(tmp_path, **layout)
    placement = partition_program(chain_program, target)
    assert [[(c.population, c.start, c.stop) for c in cs] for cs in placement.cores] == \
        [[("lif0", 0, 2)], [("lif0", 2, 4)], [("lif1", 0, 2)]]
    summary = PlacementSummary.from_json(placement.summary(chain_program))
    events = {"lif0": np.array([1, 2, 3, 4]), "lif1": np.array([5, 6])}
    traffic = count_traffic(chain_program, summary, events)
    assert [s.name for s in traffic.senders] == ["lif0"]  # lif1 feeds only the host readout
    got = tuple(traffic.total(k) for k in ("messages", "messages_between_chips",
                                           "tile_hops_ew", "tile_hops_ns", "chip_hops"))
    assert got + (tuple(traffic.longest_route.values()),) == expected
    # the core-to-core matrix: core 0 sends 1 + 2 messages to core 2, core 1 sends 3 + 4
    pairs = traffic.core_pairs
    assert (pairs.source, pairs.destination, pairs.messages) == ((0, 1), (2, 2), (3, 7))
    assert sum(pairs.hops) == expected[2] + expected[3] and sum(pairs.chip_hops) == expected[4]


def test_simulated_spikes_make_the_messages(chain_program, tmp_path):
    from nmc_deploy.simulate.reference import simulate_reference

    target = _target(tmp_path, tiles=(2, 1), cores_per_chip=2, chips=2, grid=(2,))
    summary = PlacementSummary.from_json(partition_program(chain_program, target)
                                         .summary(chain_program))
    x = (np.random.default_rng(0).random((6, 16)) < 0.8).astype(np.int64)
    run = simulate_reference(chain_program, x)
    events, missing = sender_events(chain_program, run)
    assert missing == []
    spikes = run.counts["lif0"].sum(axis=0)
    assert np.array_equal(events["lif0"], spikes) and spikes.sum() > 0
    traffic = count_traffic(chain_program, summary, events)
    assert traffic.total("messages") == traffic.total("chip_hops") == spikes.sum()
    assert traffic.total("tile_hops_ew") == spikes[2:].sum()
    # the activity file carries it (totals written, recomputed on reading)
    stats = dict(run.stats, traffic=traffic.to_json())
    activity = Activity.from_json(stats)
    assert activity.traffic == traffic and activity.to_json()["traffic"] == stats["traffic"]


def test_no_traffic_without_chip_assignment(chain_program):
    import dataclasses

    placement = dataclasses.replace(partition_program(chain_program, load_target("loihi2")),
                                    chips=None)
    summary = PlacementSummary.from_json(placement.summary(chain_program))
    assert summary.system is None
    assert count_traffic(chain_program, summary, {"lif0": np.ones(4, int)}) is None


def test_attention_units_send_and_receive(tiny_program):
    """On Loihi 2 attention units have cores (here one per head): the q, k and v spikes of
    a head go to its unit's core (one message per spike), each unit's nonzero outputs go on
    to the cores of the next population, charged to that population."""
    from nmc_deploy.compile.attention_split import split_attention
    from nmc_deploy.compile.partition import attention_units
    from nmc_deploy.loihi.attention import attention_counts
    from nmc_deploy.simulate.reference import simulate_reference

    target = load_target("loihi2")
    program = split_attention(tiny_program, target, policy="head")
    op = program.attention[0]
    units = attention_units(op)
    assert len(units) == op.num_heads == 2
    placement = partition_program(program, target)
    summary = PlacementSummary.from_json(placement.summary(program))
    run = simulate_reference(program, np.random.default_rng(1).integers(0, 17, (3, 8, 8)))
    events, missing = sender_events(program, run)
    assert missing == []
    flat = [run.spikes[n].reshape(-1, op.dim * op.n_tokens) for n in (op.q, op.k, op.v)]
    full = np.count_nonzero(attention_counts(*flat, op.num_heads, op.dim, op.n_tokens)[0],
                            axis=0)
    assert np.array_equal(sum(events[u.name] for u in units), full) and full.sum() > 0
    traffic = count_traffic(program, summary, events, missing)
    by_name = {s.name: s for s in traffic.senders}
    target_pop = next(g.target for g in program.groups if g.source == op.name)
    for u in units:
        assert by_name[u.name].population == target_pop
        assert by_name[u.name].messages >= events[u.name].sum() > 0
    for name in (op.q, op.k, op.v):  # at least one message per spike: to its head's unit
        assert by_name[name].messages >= run.counts[name].sum()
