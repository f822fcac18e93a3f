"""compile/chips.py: cores onto chips and tiles (contiguous, snake order), larger systems."""
import math
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import wide_conv_graph
from nmc_deploy.compile.chips import (assign_chips, capacity_message, larger_systems,
                                      layout_order, snake_position)
from nmc_deploy.compile.partition import partition_program
from nmc_deploy.errors import CapacityError
from nmc_deploy.targets import load_target


@given(st.lists(st.integers(1, 6), min_size=1, max_size=3))
def test_snake_order_visits_every_cell_once_in_steps_of_one_hop(dims):
    cells = [snake_position(i, tuple(dims)) for i in range(math.prod(dims))]
    assert len(set(cells)) == len(cells)
    assert all(0 <= c < d for cell in cells for c, d in zip(cell, dims))
    for a, b in zip(cells, cells[1:]):
        assert sum(abs(x - y) for x, y in zip(a, b)) == 1


def test_snake_order_by_hand():
    assert [snake_position(i, (3, 2)) for i in range(6)] == \
        [(0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (0, 1)]
    with pytest.raises(ValueError):
        snake_position(6, (3, 2))


@pytest.mark.parametrize("target", ["loihi1", "loihi2", "kapoho_point"])
def test_every_core_gets_a_chip_and_a_tile_within_limits(tiny_program, target):
    tgt = load_target(target)
    placement = partition_program(tiny_program, tgt)
    chips = placement.chips
    n = placement.cores_used
    assert len(chips.core_chip) == len(chips.core_tile) == n
    per_tile: dict = {}
    for chip, tile in zip(chips.core_chip, chips.core_tile):
        assert 0 <= chip < chips.chips and 0 <= tile[0] < tgt.tiles_x and 0 <= tile[1] < tgt.tiles_y
        per_tile[(chip, tile)] = per_tile.get((chip, tile), 0) + 1
    assert max(per_tile.values()) <= tgt.cores_per_tile
    assert chips.chips_used == -(-n // tgt.cores_per_chip)
    # attention units sit right after the last core holding their inputs
    order = layout_order(placement, tiny_program)
    assert sorted(order) == list(range(n))
    for j, unit in enumerate(placement.attention_cores):
        op = next(o for o in tiny_program.attention if o.name == unit.op)
        last = max(i for i, cs in enumerate(placement.cores) for c in cs
                   if c.population in (op.q, op.k, op.v))
        assert order.index(len(placement.cores) + j) > order.index(last)


def test_assignment_is_pure_and_contiguous(tiny_program):
    import dataclasses

    small = dataclasses.replace(load_target("kapoho_point"), cores_per_chip=2)
    placement = partition_program(tiny_program, small)
    bare = dataclasses.replace(placement, chips=None)
    again = assign_chips(bare, tiny_program, small)
    assert again == placement and bare.chips is None  # input not modified
    order = layout_order(placement, tiny_program)
    chips = [placement.chips.core_chip[c] for c in order]
    assert chips == sorted(chips) and max(chips) == placement.chips.chips_used - 1
    assert [chips.count(c) for c in set(chips)][:-1] == [2] * (len(set(chips)) - 1)
    # chips lie along the snake of the 4 x 2 chip grid
    assert placement.chips.chip_position[:2] == ((0, 0), (1, 0))


def _wide_conv_program():
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(lower_graph(wide_conv_graph()))


def test_more_than_one_chip_places_on_kapoho_point_and_is_refused_on_loihi2():
    program = _wide_conv_program()
    placement = partition_program(program, load_target("kapoho_point"))
    assert placement.cores_used == 129 and placement.chips.chips_used == 2
    assert placement.chips.core_chip.count(0) == 128
    summary = placement.summary(program)
    assert summary["chips_used"] == 2
    assert [c["cores"] for c in summary["system"]["per_chip"]] == [128, 1]
    first = summary["system"]["per_chip"][0]
    assert (first["binding"], first["binding_cores"]) == ("neurons", 128)
    assert first["utilization"]["neurons"] == 1.0  # 4095 neurons on each core
    with pytest.raises(CapacityError) as exc:
        partition_program(program, load_target("loihi2"))
    message = str(exc.value)
    assert "\n" not in message
    assert message == ("program: cores (129) exceeds the cores of target loihi2 (128 = 1 chip(s)"
                       " x 128); it needs 2 loihi2 chips: use --target kapoho_point (8 chips, "
                       "1024 cores) or prune the model")


def test_larger_systems_and_the_message_without_one():
    assert [t.name for t in larger_systems(load_target("loihi2"))] == \
        ["kapoho_point", "hala_point"]
    assert [t.name for t in larger_systems(load_target("loihi1"))] == \
        ["nahuku32", "pohoiki_springs"]
    assert larger_systems(load_target("hala_point")) == []
    message = capacity_message(200_000, load_target("hala_point"))
    assert "it needs 1640 loihi2 chips, more than any shipped loihi2 system" in message
    assert "pohoiki_springs" in capacity_message(5000, load_target("nahuku32"))
