"""Where cores sit in a system of chips: the chip assignment of a placement and its summary.

:func:`~nmc_deploy.compile.chips.assign_chips` gives a
:class:`~nmc_deploy.program.placement.Placement` a :class:`ChipAssignment`: the chip and the
tile (router position on the chip's mesh) of every core, and each used chip's position on
the system's grid of chips. :func:`summarize_system` turns it, with the per-core summaries,
into the ``system`` record of ``placement.json`` (:class:`SystemSummary`): chips used, cores
per chip and, per chip, its cores and what binds them (:data:`RESOURCES`).

What binds: a core's binding resource is the per-core limit it uses the largest fraction of
(ties in :data:`RESOURCES` order); a chip's is the one that binds most of its cores.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..errors import InputFileError
from ._fields import read_count, read_dict, read_ints, read_list, read_text

__all__ = ["RESOURCES", "ChipAssignment", "MeshEstimate", "MeshPlacement", "ChipSummary",
           "SystemSummary", "summarize_system"]

#: Per-core resources and the ``limits`` key (``placement.json``) each is measured against.
RESOURCES = {
    "neurons": "max_neurons_per_core",
    "synapse_memory_bits": "synapse_memory_bits_per_core",
    "in_axons": "max_in_axons_per_core",
    "out_axons": "max_out_axons_per_core",
    "neuron_groups": "max_neuron_groups_per_core",
}


@dataclass(frozen=True)
class ChipAssignment:
    """The chip and tile of every core of a placement (neuro cores, then attention cores)."""

    system: str  # the target's name
    chip: str  # the chip target's name
    chips: int  # chips in the system
    cores_per_chip: int
    chip_grid: tuple[int, ...]  # chips along each axis of the system's chip mesh
    tile_grid: tuple[int, int]  # tiles (routers) per chip: east-west, north-south
    cores_per_tile: int
    core_chip: tuple[int, ...]  # per core: its chip
    core_tile: tuple[tuple[int, int], ...]  # per core: (x, y) of its tile on its chip
    chip_position: tuple[tuple[int, ...], ...]  # per used chip: its place on chip_grid

    mesh: "MeshPlacement | None" = None  # how the cores were laid out (compile/mesh.py)

    @property
    def chips_used(self) -> int:
        return len(self.chip_position)


#: The counts of a :class:`MeshEstimate` (per time step, from the rates used to place).
MESH_COUNTS = ("messages_per_step", "message_hops_per_step", "tile_hops_per_step",
               "chip_hops_per_step", "messages_between_chips_per_step")


@dataclass(frozen=True)
class MeshEstimate:
    """Expected traffic of one layout of the cores, from the firing rates used to place
    (messages per time step; message hops = tile hops + chip hops of every message)."""

    messages_per_step: float
    message_hops_per_step: float
    tile_hops_per_step: float
    chip_hops_per_step: float
    messages_between_chips_per_step: float
    longest_route_hops: int  # the most tile + chip hops of one pair with traffic
    chips_used: int

    def to_json(self) -> dict:
        return {**{k: round(getattr(self, k), 6) for k in MESH_COUNTS},
                "longest_route_hops": self.longest_route_hops, "chips_used": self.chips_used}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "MeshEstimate":
        for k in MESH_COUNTS:
            if not isinstance(d.get(k), (int, float)) or isinstance(d.get(k), bool):
                raise InputFileError(f"{where}: '{k}' must be a number")
        return cls(*(float(d[k]) for k in MESH_COUNTS),
                   read_count(d, "longest_route_hops", where), read_count(d, "chips_used", where))


@dataclass(frozen=True)
class MeshPlacement:
    """The ``placement`` record of ``placement.json``: how cores were laid out on the mesh.

    ``method`` "greedy" (program order, snake) or "traffic" (compile/mesh.py); ``rates``
    says which firing rates weighed the messages; ``estimates`` holds the expected traffic
    of the greedy layout and (method "traffic") of the traffic-aware one; ``baseline`` is the
    greedy layout (``core_chip``, ``core_tile``, ``chip_position``, and each core's first
    population or attention unit, ``core_population``) kept for comparison;
    ``balance`` (method "traffic"): the per-core work cap the partition was re-cut with
    (``None``: not re-cut), the cores and the busiest core's estimated work (ns per step)
    before and after. With a re-cut partition the baseline's cores are not the program's.
    """

    method: str
    seed: int
    rates: str
    estimates: dict[str, MeshEstimate]
    baseline: dict | None = None
    balance: dict | None = None  # work cap, cores and busiest core's work before/after

    def to_json(self) -> dict:
        out = {"method": self.method, "seed": self.seed, "rates": self.rates,
               "estimates": {k: v.to_json() for k, v in self.estimates.items()}}
        if self.baseline is not None:
            out["baseline"] = self.baseline
        if self.balance is not None:
            out["balance"] = self.balance
        return out

    @classmethod
    def from_json(cls, d: dict, where: str) -> "MeshPlacement":
        est = read_dict(d, "estimates", where)
        baseline = read_dict(d, "baseline", where) if "baseline" in d else None
        if baseline is not None:
            cols = [read_list(baseline, k, f"{where}.baseline")
                    for k in ("core_chip", "core_tile")]
            if len(cols[0]) != len(cols[1]) or not all(
                    isinstance(t, list) and len(t) == 2 for t in cols[1]):
                raise InputFileError(f"{where}.baseline: core_chip and core_tile must list "
                                     "one chip and one (x, y) tile per core; compile again")
        balance = read_dict(d, "balance", where) if "balance" in d else None
        if balance is not None and not all(
                isinstance(balance.get(k), list) and len(balance[k]) == 2
                for k in ("cores", "busiest_core_work_ns")):
            raise InputFileError(f"{where}.balance: 'cores' and 'busiest_core_work_ns' must "
                                 "be [before, after] pairs; compile again")
        return cls(read_text(d, "method", where), read_count(d, "seed", where),
                   read_text(d, "rates", where),
                   {k: MeshEstimate.from_json(read_dict(est, k, f"{where}.estimates"),
                                              f"{where}.estimates.{k}") for k in est},
                   baseline, balance)


@dataclass(frozen=True)
class ChipSummary:
    """One used chip: its place, its cores and what binds them."""

    chip: int
    position: tuple[int, ...]
    cores: int
    binding: str  # the resource (a key of RESOURCES) that binds most of its cores
    binding_cores: int  # how many of its cores it binds
    utilization: dict[str, float]  # per resource: mean fraction of the per-core limit
    bound: dict[str, int] | None = None  # per resource: the cores it binds (nonzero only)

    def to_json(self) -> dict:
        out = {"chip": self.chip, "position": list(self.position), "cores": self.cores,
               "binding": self.binding, "binding_cores": self.binding_cores,
               "utilization": dict(self.utilization)}
        if self.bound is not None:
            out["bound"] = dict(self.bound)
        return out

    @classmethod
    def from_json(cls, d: dict, where: str) -> "ChipSummary":
        util = read_dict(d, "utilization", where)
        bound = read_dict(d, "bound", where) if "bound" in d else None
        return cls(read_count(d, "chip", where), read_ints(d, "position", where),
                   read_count(d, "cores", where), read_text(d, "binding", where),
                   read_count(d, "binding_cores", where),
                   {k: float(v) for k, v in util.items()},
                   None if bound is None else {k: read_count(bound, k, f"{where}.bound")
                                               for k in bound})


@dataclass(frozen=True)
class SystemSummary:
    """The ``system`` record of ``placement.json``: the layout and every used chip."""

    name: str
    chip: str
    chips: int
    cores_per_chip: int
    chip_grid: tuple[int, ...]
    tile_grid: tuple[int, ...]
    cores_per_tile: int
    chips_used: int
    per_chip: tuple[ChipSummary, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "chip": self.chip, "chips": self.chips,
                "cores_per_chip": self.cores_per_chip, "chip_grid": list(self.chip_grid),
                "tile_grid": list(self.tile_grid), "cores_per_tile": self.cores_per_tile,
                "chips_used": self.chips_used,
                "per_chip": [c.to_json() for c in self.per_chip]}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "SystemSummary":
        return cls(read_text(d, "name", where), read_text(d, "chip", where),
                   read_count(d, "chips", where, 1), read_count(d, "cores_per_chip", where, 1),
                   read_ints(d, "chip_grid", where), read_ints(d, "tile_grid", where),
                   read_count(d, "cores_per_tile", where, 1), read_count(d, "chips_used", where),
                   tuple(ChipSummary.from_json(c, f"{where}.per_chip[{i}]")
                         for i, c in enumerate(read_list(d, "per_chip", where))))


def core_usage(core, limits: dict[str, int]) -> dict[str, float]:
    """Fraction of each per-core limit one core summary uses (0 where a limit is absent)."""
    used = {"neurons": core.neurons, "synapse_memory_bits": core.synapse_memory_bits,
            "in_axons": core.in_axons, "out_axons": core.out_axons,
            "neuron_groups": len(core.populations)}
    return {r: (used[r] or 0) / limits[key] if limits.get(key) else 0.0
            for r, key in RESOURCES.items()}


def summarize_system(chips: ChipAssignment, cores, limits: dict[str, int]) -> SystemSummary:
    """The ``system`` record: per used chip its cores, binding resource and mean usage.

    ``cores`` are the per-core summaries (``CoreSummary``, index = core) of the placement.
    """
    by_chip: dict[int, list[dict[str, float]]] = {}
    for core in cores:
        by_chip.setdefault(chips.core_chip[core.core], []).append(core_usage(core, limits))
    per_chip = []
    for chip, usages in sorted(by_chip.items()):
        binds = Counter(max(RESOURCES, key=u.__getitem__) for u in usages)
        binding = max(RESOURCES, key=lambda r: binds[r])  # ties: RESOURCES order
        per_chip.append(ChipSummary(
            chip=chip, position=chips.chip_position[chip], cores=len(usages), binding=binding,
            binding_cores=binds[binding],
            utilization={r: round(sum(u[r] for u in usages) / len(usages), 4)
                         for r in RESOURCES},
            bound={r: binds[r] for r in sorted(RESOURCES, key=lambda r: -binds[r])
                   if binds[r]}))  # most first (ties: RESOURCES order)
    return SystemSummary(chips.system, chips.chip, chips.chips, chips.cores_per_chip,
                         chips.chip_grid, chips.tile_grid, chips.cores_per_tile,
                         chips.chips_used, tuple(per_chip))
