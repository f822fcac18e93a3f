"""Where a program sits on the chip: core placement (:class:`Placement`) and ``placement.json``.

:func:`~nmc_deploy.compile.partition.partition_program` cuts populations into
:class:`Chunk` s and packs them onto cores (a :class:`Placement`).
:func:`summarize_placement` turns a placement and its program into a
:class:`PlacementSummary`, the typed ``placement.json``: per core its population slices and
utilization, the target's per-core limits, the quantization report, totals, the token
selectors on embedded cores and, for a graph with low-rank factors, the costs of both
deployment forms (:class:`LowRankForms`), for a graph with a residual stream the costs of
both residual forms (:class:`ResidualForms`: fan-in or relays) and, for a placement
assigned to chips, the
``system`` record (:mod:`.chips`). :meth:`PlacementSummary.to_json` gives the file's
dict (key order included); :meth:`PlacementSummary.from_json` checks and reads one (the
report needs only ``target``, ``cores_used`` and, per core, ``core`` and each population's
``name`` and ``fraction``; every other field may be absent and is then left out again).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from ..errors import InputFileError
from ._fields import (optional_count, optional_text, put_present, read_count, read_dict,
                      read_fraction, read_ints, read_list, read_text)
from .chips import ChipAssignment, MeshPlacement, SystemSummary, summarize_system
from .program import Program

__all__ = ["Chunk", "BlockOrder", "Placement", "CoreShare", "CoreSummary",
           "TokenSelectorPlacement",
           "FormCosts", "LowRankForms", "ResidualCosts", "ResidualForms", "summarize_residual",
           "SharingCosts", "WeightSharingForms", "summarize_sharing",
           "PlacementSummary", "summarize_cores",
           "summarize_placement", "summarize_form"]

@dataclass(frozen=True)
class Chunk:
    """Neurons at positions ``[start, stop)`` of one population's placement order
    (:class:`BlockOrder`; the flat neuron index unless the population is blocked) with their
    incoming synapses, on one core."""

    population: str
    start: int  # first position in the population's placement order
    stop: int
    synapses: int
    synapse_memory_bits: int
    in_axons: int

    @property
    def neurons(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class BlockOrder:
    """The order in which a (C, P) population (channels x positions, flat index
    ``c P + n``) is cut into chunks: channel blocks ``[bounds[k], bounds[k+1])``, one after
    the other, position-major inside a block::

        order position j in block k (width w = bounds[k+1] - bounds[k]):
            r = j - bounds[k] P,   n = r // w,   c = bounds[k] + r % w,   neuron = c P + n

    Blocks of one channel give the flat (channel-major) order. A neuron read by a
    token-parallel layer or convolution then reaches one core per channel block of its
    reader instead of every core of it (the reader's chunks hold few positions of many
    channels, not all positions of few channels).
    """

    positions: int
    bounds: tuple[int, ...]  # channel block boundaries, 0 = bounds[0] < ... < bounds[-1] = C

    @property
    def size(self) -> int:
        return self.bounds[-1] * self.positions

    def neurons(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Flat neuron indices of order positions ``[start, stop)``."""
        stop = self.size if stop is None else stop
        j = np.arange(start, stop, dtype=np.int64)
        b = np.asarray(self.bounds, np.int64)
        k = np.searchsorted(b * self.positions, j, side="right") - 1
        w = b[k + 1] - b[k]
        r = j - b[k] * self.positions
        return (b[k] + r % w) * self.positions + r // w

    def to_json(self) -> dict:
        return {"positions": self.positions, "channel_bounds": list(self.bounds)}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "BlockOrder":
        positions = read_count(d, "positions", where)
        bounds = tuple(read_ints(d, "channel_bounds", where))
        if positions < 1 or len(bounds) < 2 or bounds[0] != 0 or \
                any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise InputFileError(f"{where}: 'channel_bounds' must rise from 0 and "
                                 "'positions' be positive")
        return cls(positions, bounds)


def neuron_index(orders: dict, population: str, start: int, stop: int):
    """Flat neuron indices of ``[start, stop)`` of a population's placement order (a slice
    when it is not blocked)."""
    order = (orders or {}).get(population)
    return slice(start, stop) if order is None else order.neurons(start, stop)


@dataclass(frozen=True)
class Placement:
    """Chunks per neuro core, attention units on extra cores or the host, output axons per
    core, and (once assigned) the chip and tile of every core."""

    target: str
    cores: tuple[tuple[Chunk, ...], ...]
    attention_cores: tuple  # AttentionUnit per extra (programmable) core
    attention_host: tuple[str, ...]  # attention ops on embedded x86 cores
    out_axons: tuple[int, ...]
    limits: dict = field(default_factory=dict)
    chips: ChipAssignment | None = None  # compile/chips.py: assign_chips
    orders: dict = field(default_factory=dict)  # population -> BlockOrder (blocked ones only)

    @property
    def cores_used(self) -> int:
        return len(self.cores) + len(self.attention_cores)

    def summary(self, program: Program) -> dict:
        """The JSON "program summary" the report reads (one entry per core)."""
        return summarize_cores(self, program).to_json()


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class CoreShare:
    """The slice ``[start, stop)`` of population ``name``'s placement order on one core (flat
    neuron indices unless the summary's ``orders`` blocks the population)."""

    name: str
    fraction: float  # share of the population's neurons on this core, in [0, 1]
    neurons: int | None = None
    start: int | None = None
    stop: int | None = None

    def to_json(self) -> dict:
        out = put_present({"name": self.name}, neurons=self.neurons)
        out["fraction"] = self.fraction
        return put_present(out, start=self.start, stop=self.stop)

    @classmethod
    def from_json(cls, d: dict, where: str) -> "CoreShare":
        name = read_text(d, "name", where)
        fraction = read_fraction(d, "fraction", where)
        return cls(name, fraction, *(optional_count(d, k, where)
                                     for k in ("neurons", "start", "stop")))


_CORE_COUNTS = ("neurons", "synapses", "synapse_memory_bits", "in_axons", "out_axons",
                "ops_per_step", "state_bits")


@dataclass(frozen=True)
class CoreSummary:
    """One core: a neuro core with population slices, or an attention unit (``attention``)."""

    core: int
    populations: tuple[CoreShare, ...]
    kind: str | None = None  # "neuro" | "attention"
    attention: str | None = None  # the attention op of an attention core
    neurons: int | None = None
    synapses: int | None = None
    synapse_memory_bits: int | None = None
    in_axons: int | None = None
    out_axons: int | None = None
    ops_per_step: int | None = None  # attention unit: most accumulate operations of a step
    state_bits: int | None = None  # attention unit: score and output buffers
    chip: int | None = None  # its chip (a placement assigned to chips)
    tile: tuple[int, int] | None = None  # (x, y) of its tile on the chip's mesh

    def to_json(self) -> dict:
        out = put_present({"core": self.core}, kind=self.kind, chip=self.chip,
                          tile=None if self.tile is None else list(self.tile))
        out["populations"] = [p.to_json() for p in self.populations]
        return put_present(out, attention=self.attention,
                           **{k: getattr(self, k) for k in _CORE_COUNTS})

    @classmethod
    def from_json(cls, d: dict, where: str) -> "CoreSummary":
        core = read_count(d, "core", where)
        pops = tuple(CoreShare.from_json(p, f"{where}.populations[{j}]")
                     for j, p in enumerate(read_list(d, "populations", where)))
        tile = read_ints(d, "tile", where) if "tile" in d else None
        return cls(core, pops, kind=optional_text(d, "kind", where),
                   attention=optional_text(d, "attention", where),
                   **{k: optional_count(d, k, where) for k in _CORE_COUNTS},
                   chip=optional_count(d, "chip", where), tile=tile)


_SELECTOR_FIELDS = ("tokens", "kept", "dim", "hidden", "depth_in", "depth", "buffer_values",
                    "predictor_words")


@dataclass(frozen=True)
class TokenSelectorPlacement:
    """A token selector on an embedded core: its sizes, depths, buffer and program words."""

    name: str
    tokens: int
    kept: int
    dim: int
    hidden: int
    depth_in: int
    depth: int
    buffer_values: int  # 2 * dim * tokens * T: one sample in, one out
    predictor_words: int  # w1, b1, w_score, b_score and the GELU table

    def to_json(self) -> dict:
        return {"name": self.name, **{k: getattr(self, k) for k in _SELECTOR_FIELDS}}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "TokenSelectorPlacement":
        return cls(read_text(d, "name", where),
                   **{k: read_count(d, k, where) for k in _SELECTOR_FIELDS})


def _forms_to_json(forms: dict) -> dict:
    """A forms record: each form's costs, or ``{"error": why}`` where it cannot deploy."""
    return {m: ({"error": c} if isinstance(c, str) else c.to_json()) for m, c in forms.items()}


def _read_forms(d: dict, where: str, costs) -> dict:
    """The ``forms`` of a record of :func:`_forms_to_json` (``costs``: their class)."""
    out = {}
    for mode, c in read_dict(d, "forms", where).items():
        fwhere = f"{where}.forms.{mode}"
        out[mode] = (read_text(c, "error", fwhere) if isinstance(c, dict) and "error" in c
                     else costs.from_json(c, fwhere))
    return out


_FORM_FIELDS = ("synapses", "synapse_memory_bits", "cores", "neurons", "relay_neurons",
                "pipeline_depth")


@dataclass(frozen=True)
class FormCosts:
    """Synapses, synapse memory, cores, neurons and pipeline depth of one compiled form."""

    synapses: int
    synapse_memory_bits: int
    cores: int
    neurons: int
    relay_neurons: int
    pipeline_depth: int
    _FIELDS: ClassVar[tuple[str, ...]] = _FORM_FIELDS

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self._FIELDS}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "FormCosts":
        return cls(**{k: read_count(d, k, where) for k in cls._FIELDS})


@dataclass(frozen=True)
class LowRankForms:
    """Both deployment forms of a graph's low-rank factor pairs (``written``: the one built).

    ``forms`` maps each form of :data:`~nmc_deploy.program.shared.LOW_RANK_MODES` to its
    costs, or to the one-line reason it cannot be deployed on ``target``.
    """

    written: str
    pairs: int
    target: str
    forms: dict[str, FormCosts | str]

    def to_json(self) -> dict:
        return {"written": self.written, "pairs": self.pairs, "target": self.target,
                "forms": _forms_to_json(self.forms)}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "LowRankForms":
        written = read_text(d, "written", where)
        pairs = read_count(d, "pairs", where)
        target = read_text(d, "target", where)
        forms = _read_forms(d, where, FormCosts)
        return cls(written, pairs, target, forms)


@dataclass(frozen=True)
class ResidualCosts(FormCosts):
    """One residual form's costs: :class:`FormCosts` plus synapse groups and the largest
    out-degree (groups leaving one population)."""

    groups: int
    max_out_degree: int
    _FIELDS: ClassVar[tuple[str, ...]] = _FORM_FIELDS + ("groups", "max_out_degree")


@dataclass(frozen=True)
class ResidualForms:
    """Both forms of a graph's residual streams (deployment decision 3; ``written``: the
    one built): "fan-in" (each reader gets one synapse group per stream population) or
    "relay" (each stream summed once by a graded relay population, ``relays`` of them).

    ``forms`` maps "fan-in" and "relay" to their costs, or to the one-line reason that form
    cannot be deployed on ``target``.
    """

    written: str
    relays: int
    target: str
    forms: dict[str, ResidualCosts | str]

    def to_json(self) -> dict:
        return {"written": self.written, "relays": self.relays, "target": self.target,
                "forms": _forms_to_json(self.forms)}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "ResidualForms":
        forms = _read_forms(d, where, ResidualCosts)
        return cls(read_text(d, "written", where), read_count(d, "relays", where),
                   read_text(d, "target", where), forms)


_SHARING_FIELDS = ("cores", "synapses_stored", "synapse_memory_bits")


@dataclass(frozen=True)
class SharingCosts:
    """Cores, synapses stored on cores and synapse memory of one weight-storage mode."""

    cores: int
    synapses_stored: int
    synapse_memory_bits: int

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in _SHARING_FIELDS}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "SharingCosts":
        return cls(**{k: read_count(d, k, where) for k in _SHARING_FIELDS})


@dataclass(frozen=True)
class WeightSharingForms:
    """Both answers for shared weights (token-parallel layers, convolutions): stored once
    per core ("on") or once per token/position ("off"); ``written``: the placement built.

    ``weights`` is the number of distinct stored weights of the program (each shared
    matrix once), ``synapses`` the expanded count. ``forms`` maps "on"/"off" to the costs
    of that placement, or to the one-line reason it does not fit.
    """

    written: str
    weights: int
    synapses: int
    forms: dict[str, SharingCosts | str]

    def to_json(self) -> dict:
        return {"written": self.written, "weights": self.weights, "synapses": self.synapses,
                "forms": _forms_to_json(self.forms)}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "WeightSharingForms":
        forms = _read_forms(d, where, SharingCosts)
        return cls(read_text(d, "written", where), read_count(d, "weights", where),
                   read_count(d, "synapses", where), forms)


@dataclass(frozen=True)
class PlacementSummary:
    """The typed ``placement.json`` (fields absent from a partial summary are ``None``)."""

    target: str
    cores_used: int
    cores: tuple[CoreSummary, ...]
    attention_on_host: tuple[str, ...] | None = None
    limits: dict[str, int] | None = None  # the target's per-core limits
    quantization: dict[str, Any] | None = None  # the quantizer's report (program metadata)
    synapses: int | None = None
    neurons: int | None = None
    pipeline_depth: int | None = None
    token_selectors: tuple[TokenSelectorPlacement, ...] | None = None
    low_rank: LowRankForms | None = None
    weight_sharing: WeightSharingForms | None = None
    system: SystemSummary | None = None  # chips used, cores per chip, what binds each chip
    orders: dict[str, BlockOrder] | None = None  # placement order of blocked populations
    residual: ResidualForms | None = None  # both residual forms (graphs with a stream)
    placement: MeshPlacement | None = None  # how the cores were laid out on the mesh

    @property
    def chips_used(self) -> int | None:
        return None if self.system is None else self.system.chips_used

    def to_json(self) -> dict:
        """The ``placement.json`` dict, in the file's key order."""
        out = put_present({"target": self.target, "cores_used": self.cores_used},
                          chips_used=self.chips_used)
        out["cores"] = [c.to_json() for c in self.cores]
        return put_present(
            out, attention_on_host=_maybe(list, self.attention_on_host), limits=self.limits,
            quantization=self.quantization, synapses=self.synapses, neurons=self.neurons,
            pipeline_depth=self.pipeline_depth,
            token_selectors=_maybe(lambda ts: [t.to_json() for t in ts], self.token_selectors),
            low_rank=_maybe(LowRankForms.to_json, self.low_rank),
            weight_sharing=_maybe(WeightSharingForms.to_json, self.weight_sharing),
            residual=_maybe(ResidualForms.to_json, self.residual),
            system=_maybe(SystemSummary.to_json, self.system),
            placement=_maybe(MeshPlacement.to_json, self.placement),
            orders=_maybe(lambda o: {k: v.to_json() for k, v in o.items()}, self.orders or None))

    @classmethod
    def from_json(cls, data: dict, where: str = "program_summary") -> "PlacementSummary":
        """Check and read a placement dict; ``where`` prefixes every error message.

        Raises
        ------
        InputFileError
            A missing or mistyped field, or a core share outside [0, 1].
        """
        if not isinstance(data, dict):
            raise InputFileError(f"{where}: expected a dict")
        target = read_text(data, "target", where)
        cores = tuple(CoreSummary.from_json(c, f"{where}: cores[{i}]")
                      for i, c in enumerate(read_list(data, "cores", where)))
        cores_used = read_count(data, "cores_used", where) if "cores_used" in data \
            else len(cores)
        on_host = None
        if "attention_on_host" in data:
            on_host = tuple(read_list(data, "attention_on_host", where))
            if not all(isinstance(n, str) for n in on_host):
                raise InputFileError(f"{where}: 'attention_on_host' must be a list of strings")
        limits = None
        if "limits" in data:
            raw = read_dict(data, "limits", where)
            limits = {k: read_count(raw, k, f"{where}: limits") for k in raw}
        selectors = None
        if "token_selectors" in data:
            selectors = tuple(TokenSelectorPlacement.from_json(t, f"{where}: token_selectors[{i}]")
                              for i, t in enumerate(read_list(data, "token_selectors", where)))
        return cls(target, cores_used, cores, attention_on_host=on_host, limits=limits,
                   quantization=read_dict(data, "quantization", where)
                   if "quantization" in data else None,
                   synapses=optional_count(data, "synapses", where),
                   neurons=optional_count(data, "neurons", where),
                   pipeline_depth=optional_count(data, "pipeline_depth", where),
                   token_selectors=selectors,
                   low_rank=LowRankForms.from_json(read_dict(data, "low_rank", where),
                                                   f"{where}: low_rank")
                   if "low_rank" in data else None,
                   weight_sharing=WeightSharingForms.from_json(
                       read_dict(data, "weight_sharing", where), f"{where}: weight_sharing")
                   if "weight_sharing" in data else None,
                   system=SystemSummary.from_json(read_dict(data, "system", where),
                                                  f"{where}: system")
                   if "system" in data else None,
                   orders={k: BlockOrder.from_json(read_dict(raw_orders, k,
                                                             f"{where}: orders"),
                                                   f"{where}: orders.{k}")
                           for raw_orders in [read_dict(data, "orders", where)]
                           for k in raw_orders}
                   if "orders" in data else None,
                   residual=ResidualForms.from_json(read_dict(data, "residual", where),
                                                    f"{where}: residual")
                   if "residual" in data else None,
                   placement=MeshPlacement.from_json(read_dict(data, "placement", where),
                                                     f"{where}: placement")
                   if "placement" in data else None)

    def neuron_index(self, population: str, start: int, stop: int):
        """Flat neuron indices of ``[start, stop)`` of a population's placement order."""
        return neuron_index(self.orders, population, start, stop)


def _maybe(fn, value):
    return None if value is None else fn(value)


# -------------------------------------------------------------------------- builders

def summarize_cores(placement: Placement, program: Program) -> PlacementSummary:
    """The per-core part of the summary (:meth:`Placement.summary`): cores, host ops, limits
    and, for a placement assigned to chips, each core's chip and tile and the system record."""
    sizes = {p.name: p.size for p in program.populations}
    cores = []
    for i, chunks in enumerate(placement.cores):
        cores.append(CoreSummary(
            core=i, kind="neuro",
            populations=tuple(CoreShare(c.population, c.neurons / sizes[c.population],
                                        neurons=c.neurons, start=c.start, stop=c.stop)
                              for c in chunks),
            neurons=sum(c.neurons for c in chunks),
            synapses=sum(c.synapses for c in chunks),
            synapse_memory_bits=sum(c.synapse_memory_bits for c in chunks),
            in_axons=sum(c.in_axons for c in chunks),
            out_axons=placement.out_axons[i]))
    ops = {op.name: op for op in program.attention}
    for j, u in enumerate(placement.attention_cores):  # q, k, v in; graded counts out
        count_bits = int(ops[u.op].max_count).bit_length()
        cores.append(CoreSummary(core=len(placement.cores) + j, kind="attention",
                                 populations=(), attention=u.name, neurons=0, synapses=0,
                                 synapse_memory_bits=0, in_axons=u.in_axons,
                                 out_axons=u.out_axons, ops_per_step=u.ops_per_step,
                                 state_bits=u.state_bits(count_bits)))
    system = None
    if placement.chips is not None:
        chips = placement.chips
        cores = [replace(c, chip=chips.core_chip[c.core], tile=chips.core_tile[c.core])
                 for c in cores]
        system = summarize_system(chips, cores, placement.limits)
    return PlacementSummary(placement.target, placement.cores_used, tuple(cores),
                            attention_on_host=tuple(placement.attention_host),
                            limits=placement.limits, system=system,
                            orders=dict(placement.orders) or None,
                            placement=None if placement.chips is None else placement.chips.mesh)


def summarize_placement(placement: Placement, program: Program,
                        low_rank: LowRankForms | None = None,
                        weight_sharing: WeightSharingForms | None = None,
                        residual: ResidualForms | None = None) -> PlacementSummary:
    """The whole ``placement.json`` of a compiled program (what ``nmc-deploy compile`` writes).

    Parameters
    ----------
    placement, program
        The placement of ``program`` (:func:`~nmc_deploy.compile.partition.partition_program`).
    low_rank
        The costs of both low-rank deployment forms (:func:`summarize_form` of each), for a
        graph with low-rank factor pairs; ``None`` otherwise.
    residual
        The costs of both residual forms (:func:`summarize_residual` of each), for a graph
        with a residual stream; ``None`` otherwise.
    """
    selectors = tuple(
        TokenSelectorPlacement(
            name=t.name, tokens=t.n_tokens, kept=t.n_keep, dim=t.dim, hidden=int(t.w1.shape[0]),
            depth_in=t.depth_in, depth=t.depth,
            buffer_values=2 * t.dim * t.n_tokens * program.time_steps,
            predictor_words=int(t.w1.size + t.b1.size + t.w_score.size + 1 + t.lut.size))
        for t in program.token_selects)
    return replace(summarize_cores(placement, program),
                   quantization=program.metadata.get("quantization", {}),
                   synapses=int(sum(g.num_synapses for g in program.groups)),
                   neurons=int(sum(p.size for p in program.populations)),
                   pipeline_depth=program.pipeline_depth, token_selectors=selectors,
                   low_rank=low_rank, weight_sharing=weight_sharing, residual=residual)


def summarize_form(program: Program, placement: Placement) -> FormCosts:
    """Synapses, synapse memory, cores, neurons and pipeline depth of one compiled form."""
    return FormCosts(
        synapses=int(sum(g.num_synapses for g in program.groups)),
        synapse_memory_bits=int(sum(c.synapse_memory_bits for cs in placement.cores
                                    for c in cs)),
        cores=placement.cores_used,
        neurons=int(sum(p.size for p in program.populations)),
        relay_neurons=int(sum(p.size for p in program.populations if p.graded)),
        pipeline_depth=program.pipeline_depth)


def summarize_residual(program: Program, placement: Placement) -> ResidualCosts:
    """One residual form's costs: :func:`summarize_form` plus groups and max out-degree."""
    out: dict[str, int] = {}
    for g in program.groups:
        out[g.source] = out.get(g.source, 0) + 1
    return ResidualCosts(**summarize_form(program, placement).to_json(),
                         groups=len(program.groups),
                         max_out_degree=max(out.values(), default=0))


def summarize_sharing(placement: Placement) -> SharingCosts:
    """Cores, synapses stored on cores and synapse memory of one placement."""
    return SharingCosts(
        cores=placement.cores_used,
        synapses_stored=int(sum(c.synapses for cs in placement.cores for c in cs)),
        synapse_memory_bits=int(sum(c.synapse_memory_bits for cs in placement.cores
                                    for c in cs)))
