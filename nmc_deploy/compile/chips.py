"""Assign the cores of a placement to chips and mesh positions (pure), and name larger systems.

Rule (:func:`assign_chips`): cores are laid out in *program order* - the neuro cores in the
order partition packed them (populations in program order), each attention unit right after
the last core holding its q, k or v neurons - and filled contiguously: the first
``cores_per_chip`` cores go to chip 0, the next to chip 1, and so on. Inside a chip the
``k``-th core sits on tile ``k // cores_per_tile``; tiles and chips are visited in snake
(boustrophedon) order over their grid (:func:`snake_position`), so consecutive cores and
consecutive chips are neighbours on the mesh. No search for a better placement is made.

:func:`capacity_message` is the one-line refusal of a program that needs more cores than a
target has: it names the chips needed and the next shipped system of the same chip that holds
the program (:func:`larger_systems`).
"""
from __future__ import annotations

import math
from dataclasses import replace

from ..errors import CapacityError
from ..program import Program
from ..program.chips import RESOURCES, ChipAssignment
from ..program.placement import Placement
from ..targets import HardwareTarget, load_target, target_names

__all__ = ["snake_position", "layout_order", "assign_chips", "larger_systems",
           "capacity_message", "format_chips"]

# column names of the per-core resources in the compile printout
_SHORT = {"neurons": "neurons", "synapse_memory_bits": "syn. memory", "in_axons": "in-axons",
          "out_axons": "out-axons", "neuron_groups": "groups"}


def snake_position(index: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    """Coordinates of the ``index``-th cell of a grid ``dims`` visited in snake order.

    The first axis runs fastest and reverses direction on every step of the next axis (and
    so on up the axes), so cells ``i`` and ``i + 1`` are always one hop apart::

        snake_position(3, (3, 2)) == (2, 1)     # 0:(0,0) 1:(1,0) 2:(2,0) 3:(2,1) 4:(1,1)
    """
    if not 0 <= index < math.prod(dims):
        raise ValueError(f"index {index} outside a grid of {math.prod(dims)} cells")
    if len(dims) == 1:
        return (index,)
    inner = math.prod(dims[:-1])
    outer, rest = divmod(index, inner)
    if outer % 2:
        rest = inner - 1 - rest
    return snake_position(rest, dims[:-1]) + (outer,)


def layout_order(placement: Placement, program: Program) -> list[int]:
    """Core indices in program order: neuro cores as packed, each attention unit (in the
    order partition lists them) after the last neuro core holding its op's q, k or v
    neurons (units without placed inputs last)."""
    last: dict[str, int] = {}
    for i, chunks in enumerate(placement.cores):
        for c in chunks:
            last[c.population] = i
    ops = {op.name: op for op in program.attention}
    after: dict[int, list[int]] = {}
    for j, unit in enumerate(placement.attention_cores):
        op = ops[unit.op]
        anchor = max((last[p] for p in (op.q, op.k, op.v) if p in last), default=-1)
        after.setdefault(anchor, []).append(len(placement.cores) + j)
    order = []
    for i in range(len(placement.cores)):
        order += [i, *after.get(i, [])]
    return order + after.get(-1, [])


def assign_chips(placement: Placement, program: Program, target: HardwareTarget) -> Placement:
    """``placement`` with :class:`~nmc_deploy.program.chips.ChipAssignment` (module rule).

    Pure: returns a new :class:`Placement`. Raises
    :class:`~nmc_deploy.errors.CapacityError` if the placement needs more cores than the
    target has (:func:`~.partition.partition_program` checks this first).
    """
    cpc, per_tile = target.cores_per_chip, target.cores_per_tile
    tiles = (target.tiles_x, target.tiles_y)
    order = layout_order(placement, program)
    if len(order) > target.max_cores:
        raise CapacityError(capacity_message(len(order), target))
    core_chip = [0] * len(order)
    core_tile: list[tuple[int, int]] = [(0, 0)] * len(order)
    for slot, core in enumerate(order):
        chip, k = divmod(slot, cpc)
        core_chip[core] = chip
        core_tile[core] = snake_position(k // per_tile, tiles)
    used = -(-len(order) // cpc)
    return replace(placement, chips=ChipAssignment(
        system=target.name, chip=target.chip_target or target.name, chips=target.max_chips,
        cores_per_chip=cpc, chip_grid=tuple(target.chip_grid), tile_grid=tiles,
        cores_per_tile=per_tile, core_chip=tuple(core_chip), core_tile=tuple(core_tile),
        chip_position=tuple(snake_position(c, tuple(target.chip_grid)) for c in range(used))))


def larger_systems(target: HardwareTarget) -> list[HardwareTarget]:
    """Shipped targets of the same chip with more cores than ``target``, smallest first."""
    chip = target.chip_target or target.name
    found = []
    for name in target_names():
        other = load_target(name)
        if (other.chip_target or other.name) == chip and other.max_cores > target.max_cores:
            found.append(other)
    return sorted(found, key=lambda t: (t.max_cores, t.name))


def capacity_message(cores: int, target: HardwareTarget) -> str:
    """One line: the cores needed exceed the target's; the chips needed and a larger system."""
    chip = target.chip_target or target.name
    head = (f"program: cores ({cores}) exceeds the cores of target {target.name} "
            f"({target.max_cores} = {target.max_chips} chip(s) x {target.cores_per_chip}); "
            f"it needs {-(-cores // target.cores_per_chip)} {chip} chips")
    fits = [t for t in larger_systems(target) if t.max_cores >= cores]
    if fits:
        return (f"{head}: use --target {fits[0].name} ({fits[0].max_chips} chips, "
                f"{fits[0].max_cores} cores) or prune the model")
    return (f"{head}, more than any shipped {chip} system: prune the model or write a "
            "system file with more chips (docs/architecture.md, systems of chips)")


def format_chips(summary: dict) -> str:
    """The per-chip table of the compile report (``placement.json``'s ``system``)."""
    system = summary["system"]
    where = (f"one {system['chip']} chip of {system['cores_per_chip']} cores"
             if system["name"] == system["chip"] else
             f"{system['name']}: {system['chip']} chips of {system['cores_per_chip']} cores, "
             f"chip grid {' x '.join(map(str, system['chip_grid']))}")
    lines = [f"chips used: {system['chips_used']} of {system['chips']} ({where}; cores used "
             f"{summary['cores_used']})"]
    head = f"{'chip':>4}  {'position':<10} {'cores':>9}" + "".join(
        f" {_SHORT[r]:>12}" for r in RESOURCES) + "  binds (cores)"
    lines += [head, "-" * len(head)]
    for c in system["per_chip"]:
        bound = c.get("bound") or {c["binding"]: c["binding_cores"]}
        used = f"{c['cores']}/{system['cores_per_chip']}"
        lines.append(f"{c['chip']:>4}  {str(tuple(c['position'])):<10} {used:>9}" + "".join(
            f" {100 * c['utilization'][r]:>11.1f}%" for r in RESOURCES) + "  " + ", ".join(
            f"{_SHORT[r]} {n}" for r, n in bound.items()))
    lines.append("columns: mean share of each per-core limit over the chip's cores; binds: "
                 "per limit, the cores using the largest share of it (most first = the chip's)")
    return "\n".join(lines)
