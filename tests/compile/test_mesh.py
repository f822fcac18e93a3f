"""compile/mesh.py and compile/balance.py: traffic-aware layout and per-core work balance."""
import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from factories import chain_graph, mesh_target
from nmc_deploy.compile.balance import core_work, neuron_work
from nmc_deploy.compile.chips import snake_position
from nmc_deploy.compile.mesh import (PRIOR_RATE, anneal_layout, compact_chip_positions,
                                     estimate_layout, layout_cores, message_matrix,
                                     prior_events)
from nmc_deploy.compile.partition import partition_program
from nmc_deploy.errors import InputFileError
from nmc_deploy.program.activity import Activity
from nmc_deploy.program.chips import ChipAssignment, MeshPlacement


@pytest.fixture(scope="module")
def chain_program():
    """input 16 -> 12 LIF -> 8 LIF -> 4 LIF, dense positive weights (every neuron of a
    layer reaches every core of the next)."""
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program

    graph = chain_graph(np.random.default_rng(5), sizes=(16, 12, 8, 4), weight_mean=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(lower_graph(graph))


def _chips(core_chip, core_tile, chip_position):
    return ChipAssignment(system="s", chip="c", chips=4, cores_per_chip=4, chip_grid=(2, 2),
                          tile_grid=(2, 2), cores_per_tile=1, core_chip=tuple(core_chip),
                          core_tile=tuple(core_tile), chip_position=tuple(chip_position))


def test_estimate_by_hand():
    # core 0 at tile (0,0) of chip 0 (grid (0,0)); core 1 at tile (1,1) of chip 1 (grid
    # (1,0)); core 2 at tile (1,0) of chip 0. Messages per step: 0->1: 2, 1->2: 3, 2->2: 5.
    chips = _chips([0, 1, 0], [(0, 0), (1, 1), (1, 0)], [(0, 0), (1, 0)])
    m = sp.csr_matrix(([2.0, 3.0, 5.0], ([0, 1, 2], [1, 2, 2])), shape=(3, 3))
    e = estimate_layout(chips, m)
    # 0->1: 2 tile hops + 1 chip hop; 1->2: 1 tile hop + 1 chip hop; 2->2: 0
    assert e.messages_per_step == 10
    assert e.tile_hops_per_step == 2 * 2 + 3 * 1
    assert e.chip_hops_per_step == 2 + 3
    assert e.message_hops_per_step == 7 + 5
    assert e.messages_between_chips_per_step == 5
    assert e.longest_route_hops == 3 and e.chips_used == 2


@pytest.mark.parametrize("k, grid, box", [(1, (8, 12, 12), (1, 1, 1)), (5, (8, 12, 12), (1, 2, 3)),
                                          (22, (8, 12, 12), (2, 3, 4)), (3, (3,), (3,)),
                                          (7, (4, 2), (4, 2))])
def test_compact_chip_positions(k, grid, box):
    pos = compact_chip_positions(k, grid)
    assert len(set(pos)) == k
    assert all(0 <= p[i] < box[i] <= grid[i] for p in pos for i in range(len(grid)))
    # snake order: consecutive chips are neighbours
    assert all(sum(abs(a - b) for a, b in zip(p, q)) == 1 for p, q in zip(pos, pos[1:]))


def test_annealing_finds_the_line_and_is_seeded():
    """A path graph 0-1-...-7 scattered over a line of 8 slots: the optimum puts it in order
    (cost 7); the search reaches it, and the same seed gives the same layout."""
    n = 8
    w = sp.csr_matrix((np.ones(n - 1), (np.arange(n - 1), np.arange(1, n))), shape=(n, n))
    w = (w + w.T).tocsr()
    coords = np.array([[x, 0] for x in range(n)])
    start = np.random.default_rng(3).permutation(n)
    cost = lambda s: sum(abs(coords[s[i], 0] - coords[s[i + 1], 0]) for i in range(n - 1))
    assert cost(start) > n - 1
    a = anneal_layout(w, start, coords, seed=1)
    b = anneal_layout(w, start, coords, seed=1)
    assert np.array_equal(a, b) and sorted(a) == list(range(n))
    assert cost(a) == n - 1
    assert np.array_equal(start, np.random.default_rng(3).permutation(n))  # input untouched


def test_traffic_layout_beats_greedy_on_a_mesh(chain_program, tmp_path):
    """12 cores (2 neurons each) on one 4 x 4 chip: greedy snakes them in a row of 4 and
    back; the traffic layout's expected message hops are lower on the same chips (the
    partition may be re-cut for balance, never onto more chips), and the record holds both
    estimates and the greedy layout."""
    target = mesh_target(tmp_path, tiles=(4, 4), cores_per_chip=16, chips=1, grid=(1,))
    greedy = partition_program(chain_program, target)
    laid = layout_cores(greedy, chain_program, target, method="traffic", seed=0)
    rec = laid.chips.mesh
    assert rec.method == "traffic" and rec.rates.startswith("prior")
    g, t = rec.estimates["greedy"], rec.estimates["traffic"]
    assert t.message_hops_per_step < g.message_hops_per_step
    assert t.chips_used == g.chips_used == 1
    assert rec.baseline["core_chip"] == list(greedy.chips.core_chip)
    # slots distinct, on the chip's tiles
    slots = set(zip(laid.chips.core_chip, laid.chips.core_tile))
    assert len(slots) == laid.cores_used
    assert all(0 <= x < 4 and 0 <= y < 4 for _, (x, y) in slots)
    # the estimate is the layout's: recomputed from the message matrix of the result
    m = message_matrix(chain_program, laid, prior_events(chain_program))
    assert estimate_layout(laid.chips, m) == t
    # deterministic for the seed; the greedy input is not modified
    again = layout_cores(greedy, chain_program, target, method="traffic", seed=0)
    assert again == laid
    assert greedy.chips.mesh is None


def test_traffic_layout_across_chips(chain_program, tmp_path):
    """4 cores per chip on a 2 x 2 mesh, 3 chips on a 4 x 4 grid: the layout uses the same
    number of chips, at compact places of the grid."""
    target = mesh_target(tmp_path, tiles=(2, 2), cores_per_chip=4, chips=16, grid=(4, 4))
    greedy = partition_program(chain_program, target)
    laid = layout_cores(greedy, chain_program, target, method="traffic", seed=2)
    assert laid.chips.chips_used == greedy.chips.chips_used == 3
    assert max(np.bincount(laid.chips.core_chip)) <= 4
    est = laid.chips.mesh.estimates
    assert est["traffic"].message_hops_per_step <= est["greedy"].message_hops_per_step


def test_greedy_record_and_bad_method(chain_program, tmp_path):
    target = mesh_target(tmp_path, tiles=(4, 4), cores_per_chip=16, chips=1, grid=(1,))
    greedy = partition_program(chain_program, target)
    laid = layout_cores(greedy, chain_program, target)
    assert laid.chips.mesh == MeshPlacement("greedy", 0, "not used (greedy layout)", {})
    assert laid.cores == greedy.cores and laid.chips.core_tile == greedy.chips.core_tile
    with pytest.raises(InputFileError, match="not one of greedy, traffic"):
        layout_cores(greedy, chain_program, target, method="random")


def _activity(program, synops: dict[str, int], spikes: dict[str, int]) -> Activity:
    pops = [{"name": p.name, "neurons": p.size, "spikes": spikes.get(p.name, 0),
             "neuron_updates": p.size * 10, "active_updates": 0} for p in program.populations]
    layers = [{"name": f"to_{k}", "kind": "synapses", "synops": v, "synapses": 1,
               "population": k} for k, v in synops.items()]
    return Activity.from_json({"backend": "reference", "samples": 2, "time_steps": 5,
                               "layers": layers, "populations": pops})


def test_neuron_work_by_hand(chain_program, tmp_path):
    """Work per neuron = t_update + t_synop x synops per step x the neuron's fan-in share."""
    target = mesh_target(tmp_path, tiles=(4, 4), cores_per_chip=16, chips=1, grid=(1,))
    names = [p.name for p in chain_program.populations]
    act = _activity(chain_program, {names[1]: 800}, {})
    work = neuron_work(chain_program, target, act)
    p1 = chain_program.populations[1]
    fan = sum(np.diff(g.weights.indptr) for g in chain_program.groups if g.target == p1.name)
    expect = target.time_per_neuron_update_active_ns + \
        target.time_per_synop_ns * (800 / 10) * fan / fan.sum()
    assert np.allclose(work[p1.name], expect)
    # without a measurement: the prior rate times the synapses
    p0 = chain_program.populations[0]
    fan0 = sum(np.diff(g.weights.indptr) for g in chain_program.groups if g.target == p0.name)
    assert np.allclose(work[p0.name], target.time_per_neuron_update_active_ns
                       + target.time_per_synop_ns * PRIOR_RATE * fan0)
    # core work adds its neurons'
    placement = partition_program(chain_program, target)
    assert np.isclose(core_work(placement, work).sum(), sum(w.sum() for w in work.values()))


def test_work_cap_splits_the_busy_core(chain_program, tmp_path):
    """A per-core work cap cuts the population with the most synops onto more cores; no
    core's work exceeds the cap unless it holds a single neuron."""
    target = mesh_target(tmp_path, tiles=(4, 4), cores_per_chip=16, chips=1, grid=(1,),
                         max_neurons=8)
    names = [p.name for p in chain_program.populations]
    work = neuron_work(chain_program, target, _activity(chain_program, {names[0]: 100_000}, {}))
    free = partition_program(chain_program, target)
    top = core_work(free, work).max()
    capped = partition_program(chain_program, target, work=work, max_work=0.5 * top)
    assert capped.cores_used > free.cores_used
    cw = core_work(capped, work)
    single = [sum(c.neurons for c in cs) == 1 for cs in capped.cores]
    assert all(w <= 0.5 * top + 1e-9 or s for w, s in zip(cw, single))


def test_measured_rates_and_balance_record(chain_program, tmp_path):
    """With an activity: measured rates in the record; a busy population is balanced onto
    more cores when the hops allow (one chip, many free cores)."""
    target = mesh_target(tmp_path, tiles=(4, 4), cores_per_chip=16, chips=1, grid=(1,),
                         max_neurons=12)
    names = [p.name for p in chain_program.populations]
    act = _activity(chain_program, {names[0]: 500_000, names[1]: 10, names[2]: 10},
                    {n: 20 for n in names})
    greedy = partition_program(chain_program, target)
    laid = layout_cores(greedy, chain_program, target, method="traffic", activity=act,
                        activity_source="a.json")
    rec = laid.chips.mesh
    assert rec.rates == "measured: population firing rates of a.json"
    b = rec.balance
    assert b["cores"][0] == greedy.cores_used < b["cores"][1] == laid.cores_used
    assert b["work_cap"] is not None  # re-cut: the busiest core works less, same chips
    before, after = b["busiest_core_work_ns"]
    assert after <= b["work_cap"] * before + 1e-3 and laid.chips.chips_used == 1
    work = neuron_work(chain_program, target, act)
    assert core_work(laid, work).max() == pytest.approx(after, abs=1e-3)
    # the record survives placement.json
    assert MeshPlacement.from_json(json.loads(json.dumps(rec.to_json())), "p") == rec


def test_first_grid_cells_are_the_greedy_tiles():
    """Slots of a chip are the tiles the greedy layout visits (snake order)."""
    from nmc_deploy.compile.mesh import _slots
    from nmc_deploy.targets import load_target

    t = load_target("hala_point")
    s = _slots(t, [(0, 0, 0)])
    assert len(s) == t.cores_per_chip
    assert [tuple(c[:2]) for c in s[:3]] == [snake_position(k, (t.tiles_x, t.tiles_y))
                                            for k in range(3)]


@pytest.mark.parametrize("make", ["token", "conv"])
def test_fan_in_of_shared_weights_equals_the_expanded_rows(make):
    from nmc_deploy.compile.balance import _fan_in
    from nmc_deploy.program.shared_weights import ConvShared, TokenShared

    rng = np.random.default_rng(4)
    if make == "token":
        k = sp.random(5, 7, density=0.4, random_state=1, format="csr")
        w = TokenShared(k, 3)
    else:
        k = rng.integers(-2, 3, (4, 2, 3, 2)) * (rng.random((4, 2, 3, 2)) < 0.6)
        w = ConvShared(k, (4, 6, 5), stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    size = w.shape[0]
    assert np.array_equal(_fan_in(w), np.diff(w.rows_csr(0, size).indptr))
