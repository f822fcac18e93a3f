"""Hardware targets: the limits, timings and energies of a chip, each with its source.

A target is data, not code: ``hw_targets/<name>.toml`` holds every number as a table
``{ value = ..., source = "...", basis = "published" | "inferred" | "assumption" }`` (an
optional ``note`` explains a derivation). :func:`load_target` reads such a file into a frozen
:class:`HardwareTarget`; the citation of each number stays attached (``target.sources``) so
reports can say where it comes from and whether it is published, inferred or assumed.

A *system* file (``kapoho_point.toml``) names its chip (``chip_target = "loihi2"``) and adds
only ``[system]`` numbers, which replace the chip's (per-core numbers exist once).

The shipped files (``<repo>/hw_targets``) install as package data ``nmc_deploy/hw_targets``.
:func:`load_target_record` reads the target a build recorded (``builds.target_record``).

This module imports only the standard library (the synapse memory model, re-exported here,
is :mod:`nmc_deploy.synapse_memory`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .checks import input_file, target_range
from .errors import TargetError
from .frozen import ReadOnlyMapping
from .synapse_memory import synapse_index_bits, synapse_memory_bits

__all__ = [
    "ReadOnlyMapping", "BASES", "ENERGY_FORMULAS", "Source", "EnergyModel", "HardwareTarget",
    "load_target", "target_names", "targets_dir", "synapse_index_bits", "synapse_memory_bits",
    "ENERGY_OPTIONAL", "target_record", "load_target_record"]


#: Allowed values of ``basis``: how a number is known.
BASES = ("published", "inferred", "assumption")

#: Energy-model formulas the report knows, with the coefficients each one needs.
#: ``mac_ac``:    E = e_mac_pj * encoding MACs + e_ac_pj * all other synaptic ops (Spikformer).
#: ``per_event``: E = e_synop_pj * synaptic ops + e_neuron_update_{active,inactive}_pj * updates
#:                + e_spike_within_tile_pj * spikes (Davies et al. 2018, Table 2)
#:                [+ e_tile_hop_{ew,ns}_pj * tile hops + e_chip_hop_pj * chip hops].
ENERGY_FORMULAS: Mapping[str, tuple[str, ...]] = ReadOnlyMapping({
    "mac_ac": ("e_mac_pj", "e_ac_pj"),
    "per_event": ("e_synop_pj", "e_neuron_update_active_pj", "e_neuron_update_inactive_pj",
                  "e_spike_within_tile_pj"),
})
#: Coefficients a formula also uses when the model has them (mesh traffic; else not priced).
ENERGY_OPTIONAL: Mapping[str, tuple[str, ...]] = ReadOnlyMapping({
    "mac_ac": (), "per_event": ("e_tile_hop_ew_pj", "e_tile_hop_ns_pj", "e_chip_hop_pj")})


@dataclass(frozen=True)
class Source:
    """Where one number of a target comes from."""

    citation: str  # paper / brief / code location the value is taken or derived from
    basis: str  # "published" | "inferred" | "assumption"
    key: str  # dotted TOML key, e.g. "core.max_neurons"
    note: str = ""  # how an inferred value was derived, caveats

    def __str__(self) -> str:
        text = f"{self.citation} [{self.basis}]"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class EnergyModel:
    """A named energy model: a formula and its per-operation coefficients in picojoules.

    The formulas are listed in :data:`ENERGY_FORMULAS`; the report
    (:mod:`nmc_deploy.report.energy`) evaluates them. Every coefficient has a :class:`Source`.
    """

    name: str  # e.g. "cmos45nm", "loihi_davies2018"
    formula: str  # a key of ENERGY_FORMULAS
    description: str
    coefficients_pj: Mapping[str, float]  # read-only; e.g. {"e_mac_pj": 4.6, "e_ac_pj": 0.9}
    sources: Mapping[str, Source]  # coefficient name -> Source

    def coefficient_pj(self, key: str) -> float:
        """The coefficient ``key`` in pJ; :class:`TargetError` if the model lacks it."""
        try:
            return self.coefficients_pj[key]
        except KeyError:
            raise TargetError(f"energy model '{self.name}': no coefficient '{key}'; "
                              f"has {', '.join(sorted(self.coefficients_pj))}") from None

    @property
    def used_coefficients(self) -> tuple[str, ...]:
        """The coefficients its formula uses (with the :data:`ENERGY_OPTIONAL` ones it has)."""
        return ENERGY_FORMULAS[self.formula] + tuple(
            k for k in ENERGY_OPTIONAL[self.formula] if k in self.coefficients_pj)

    def citations(self, *, used_only: bool = True) -> list[str]:
        """One line per coefficient: ``"<name> = <value> pJ: <citation> [<basis>] (<note>)"``.

        With ``used_only`` (default) only the coefficients the formula uses are listed.
        """
        keys = self.used_coefficients if used_only else tuple(self.coefficients_pj)
        return [f"{k} = {self.coefficients_pj[k]:g} pJ: {self.sources[k]}" for k in keys]


@dataclass(frozen=True)
class HardwareTarget:
    """One neuromorphic chip or system of chips: per-core limits, fixed-point formats, the
    mesh of cores, timing and energy models.

    Read it with :func:`load_target`; every numeric field has an entry in ``sources`` under the
    field's name (energy coefficients under ``"energy.<model>.<coefficient>"``). A system's
    ``chip_target`` names its chip; a chip's is ``""``.
    """

    name: str
    description: str
    path: str  # the TOML file the target was read from
    # per core
    max_neurons_per_core: int
    max_neuron_groups_per_core: int  # distinct neuron parameter sets (populations) per core
    max_in_axons_per_core: int
    max_out_axons_per_core: int
    # per chip / board
    cores_per_chip: int
    max_chips: int
    # fixed-point formats
    weight_bits: int  # stored weight bits, incl. sign for mixed-sign weights
    state_bits: int  # neuron current/voltage (u, v) width
    threshold_mant_bits: int
    decay_bits: int  # du, dv in 0 .. 2**decay_bits - 1
    bias_mant_bits: int  # incl. sign
    bias_exp_max: int
    max_synaptic_delay: int  # time steps
    graded_spike_bits: int  # spike payload width; 0 = binary spikes only
    # synapse memory (nengo-loihi bits_per_axon packing model)
    synapse_word_bits: int
    synapse_words_per_core: int
    synapse_group_max: int  # synapses per group (one header each)
    synapse_group_header_bits: int
    synapse_index_bits_min: int  # sparse index width for a destination span of 1 .. 2**min
    synapse_index_bits_max: int  # widest sparse index
    weight_sharing: bool  # whether shared (conv/token-parallel) weights are stored once
    # timing (for the latency estimate)
    time_per_synop_ns: float
    time_per_neuron_update_active_ns: float
    time_per_neuron_update_inactive_ns: float
    barrier_ns: float  # per algorithmic time step, the program on one tile
    barrier_chip_ns: float  # the barrier spanning every tile of one chip
    barrier_system_ns: float  # the barrier spanning barrier_system_chips chips
    barrier_system_chips: int
    time_per_message_out_ns: float  # a core sends one spike message
    time_per_message_in_ns: float  # a core receives one spike message
    # the chip's 2-D mesh: tiles_x (east-west) x tiles_y (north-south) routers
    tiles_x: int
    tiles_y: int
    cores_per_tile: int
    time_per_tile_hop_ew_ns: float
    time_per_tile_hop_ns_ns: float
    time_per_chip_hop_ns: float  # a message crossing one chip-to-chip link
    static_power_mw_per_chip: float  # leakage and idle power of one powered chip
    # energy and provenance
    energy_models: Mapping[str, EnergyModel] = field(default_factory=lambda: ReadOnlyMapping({}))
    sources: Mapping[str, Source] = field(default_factory=lambda: ReadOnlyMapping({}))
    # system of chips: chips per axis of the chip mesh (product >= max_chips); the chip target
    chip_grid: tuple[int, ...] = (1,)
    chip_target: str = ""

    @property
    def synapse_memory_bits_per_core(self) -> int:
        """Synapse memory of one core in bits (``synapse_word_bits * synapse_words_per_core``)."""
        return self.synapse_word_bits * self.synapse_words_per_core

    @property
    def max_cores(self) -> int:
        """Cores available to one program (``cores_per_chip * max_chips``)."""
        return self.cores_per_chip * self.max_chips

    def source_of(self, field_name: str) -> Source:
        """The :class:`Source` of a numeric field (or ``"energy.<model>.<coefficient>"``)."""
        try:
            return self.sources[field_name]
        except KeyError:
            raise TargetError(f"target '{self.name}': no source recorded for '{field_name}'") \
                from None


# (field name, dotted TOML key, type, smallest allowed value)
_FIELDS: tuple[tuple[str, str, type, float], ...] = (
    ("max_neurons_per_core", "core.max_neurons", int, 1),
    ("max_neuron_groups_per_core", "core.max_neuron_groups", int, 1),
    ("max_in_axons_per_core", "core.max_in_axons", int, 1),
    ("max_out_axons_per_core", "core.max_out_axons", int, 1),
    ("cores_per_chip", "chip.cores", int, 1),
    ("max_chips", "chip.max_chips", int, 1),
    ("weight_bits", "fixed_point.weight_bits", int, 1),
    ("state_bits", "fixed_point.state_bits", int, 1),
    ("threshold_mant_bits", "fixed_point.threshold_mant_bits", int, 1),
    ("decay_bits", "fixed_point.decay_bits", int, 1),
    ("bias_mant_bits", "fixed_point.bias_mant_bits", int, 1),
    ("bias_exp_max", "fixed_point.bias_exp_max", int, 0),
    ("max_synaptic_delay", "fixed_point.max_synaptic_delay", int, 0),
    ("graded_spike_bits", "fixed_point.graded_spike_bits", int, 0),
    ("synapse_word_bits", "synapse_memory.word_bits", int, 1),
    ("synapse_words_per_core", "synapse_memory.words_per_core", int, 1),
    ("synapse_group_max", "synapse_memory.group_max_synapses", int, 1),
    ("synapse_group_header_bits", "synapse_memory.group_header_bits", int, 0),
    ("synapse_index_bits_min", "synapse_memory.index_bits_min", int, 0),
    ("synapse_index_bits_max", "synapse_memory.index_bits_max", int, 0),
    ("weight_sharing", "synapse_memory.weight_sharing", bool, 0),
    ("time_per_synop_ns", "timing.time_per_synop_ns", float, 0),
    ("time_per_neuron_update_active_ns", "timing.time_per_neuron_update_active_ns", float, 0),
    ("time_per_neuron_update_inactive_ns", "timing.time_per_neuron_update_inactive_ns", float, 0),
    ("barrier_ns", "timing.barrier_ns", float, 0),
    ("barrier_chip_ns", "timing.barrier_chip_ns", float, 0),
    ("barrier_system_ns", "timing.barrier_system_ns", float, 0),
    ("barrier_system_chips", "timing.barrier_system_chips", int, 2),
    ("time_per_message_out_ns", "timing.time_per_message_out_ns", float, 0),
    ("time_per_message_in_ns", "timing.time_per_message_in_ns", float, 0),
    ("tiles_x", "mesh.tiles_x", int, 1),
    ("tiles_y", "mesh.tiles_y", int, 1),
    ("cores_per_tile", "mesh.cores_per_tile", int, 1),
    ("time_per_tile_hop_ew_ns", "mesh.time_per_hop_ew_ns", float, 0),
    ("time_per_tile_hop_ns_ns", "mesh.time_per_hop_ns_ns", float, 0),
    ("time_per_chip_hop_ns", "mesh.time_per_chip_hop_ns", float, 0),
    ("static_power_mw_per_chip", "chip.static_power_mw", float, 0),
)
_SECTIONS = ("core", "chip", "fixed_point", "synapse_memory", "timing", "mesh")
_TOP_LEVEL = frozenset(("name", "description", "energy") + _SECTIONS)
_SYSTEM_TOP_LEVEL = frozenset(("name", "description", "chip_target", "system"))
_SYSTEM_FIELDS = (  # (field, key, type, minimum, required): replace the chip's numbers
    ("max_chips", "system.chips", int, 1, True),
    ("chip_grid", "system.chip_grid", tuple, 1, True),
    ("cores_per_chip", "system.cores_per_chip", int, 1, False),
    ("barrier_system_ns", "system.barrier_ns", float, 0, False),  # over all its chips
)
_VALUE_KEYS = frozenset(("value", "source", "basis", "note"))
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def targets_dir() -> Path:
    """The directory of the shipped targets: the package data ``nmc_deploy/hw_targets`` of an
    installed wheel, else ``<repo>/hw_targets`` (a source checkout or an editable install)."""
    packaged = resources.files(__package__) / "hw_targets"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "hw_targets"


def target_names() -> list[str]:
    """Names of the shipped targets (the ``*.toml`` stems in :func:`targets_dir`), sorted."""
    directory = targets_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_target(name_or_path: str | Path | HardwareTarget) -> HardwareTarget:
    """Read a hardware target.

    Parameters
    ----------
    name_or_path
        A shipped target's name (``"loihi2"`` reads ``<repo>/hw_targets/loihi2.toml``), a path
        to a ``.toml`` file, or an already loaded :class:`HardwareTarget` (returned as is).
        A system file (one with ``chip_target``) loads its chip (a shipped name, or a path
        relative to the system file) and replaces the chip's numbers by its ``[system]`` ones.

    Returns
    -------
    HardwareTarget

    Raises
    ------
    TargetError
        The target is unknown, or its file is unreadable, not TOML, lacks a key, has a number
        without ``source``/``basis``, a value of the wrong type or out of range. The message is
        one line and names the file and the key.
    """
    if isinstance(name_or_path, HardwareTarget):
        return name_or_path
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml"):
        path = input_file(name_or_path, f"give an existing .toml file or one of {_choices()}",
                          error=TargetError, max_bytes=1 << 20, what="target file")
    else:
        path = targets_dir() / f"{text}.toml"
        if not _NAME_RE.match(text) or not path.is_file():
            raise TargetError(f"target '{text}': unknown; choose one of {_choices()} "
                              f"or give a path to a .toml file")
    raw = _read_text(path)
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"target file '{path}': not valid TOML ({e})") from e
    if "chip_target" in data:
        return _parse_system(data, str(path), path.parent)
    return _parse_target(data, str(path))


def target_record(target: HardwareTarget) -> dict[str, str]:
    """What a build keeps of its target: ``name``, ``file`` (resolved) and ``toml``, the
    file's text (a system's also ``chip_toml``, its chip file's), so that
    :func:`load_target_record` gives the same target after the file changed or is gone."""
    path = Path(target.path)
    record = {"name": target.name, "file": str(path.resolve()), "toml": _read_text(path)}
    if target.chip_target:
        ref = str(tomllib.loads(record["toml"])["chip_target"]).strip()
        chip = load_target(path.parent / ref if ref.endswith(".toml") else ref)
        record["chip_toml"] = _read_text(Path(chip.path))
    return record


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TargetError(f"target file '{path}': cannot be read ({e})") from e


def load_target_record(record: Mapping[str, Any], where: str) -> HardwareTarget:
    """The target a build recorded: ``{"file", "toml"[, "chip_toml"]}``, the TOML texts of the
    file (and of a system's chip); ``where`` names the record in errors."""
    texts = [record.get(k) for k in ("toml", "chip_toml") if k in record]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TargetError(f"{where}: no target text recorded; compile the build again")
    try:
        data = tomllib.loads(texts[0])
        chip_data = tomllib.loads(texts[1]) if len(texts) > 1 else None
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{where}: recorded target is not valid TOML ({e})") from e
    file = str(record.get("file", where))
    if "chip_target" not in data:
        return _parse_target(data, file)
    if chip_data is None:
        raise TargetError(f"{where}: system target without its chip's text; compile again")
    return _parse_system(data, file, Path(file).parent,
                         chip=_parse_target(chip_data, f"{file} (chip)"))


def _choices() -> str:
    return ", ".join(target_names()) or "(none shipped)"


def _parse_target(data: dict[str, Any], where: str) -> HardwareTarget:
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise TargetError(f"{where}: unknown key '{unknown[0]}'; allowed top-level keys are "
                          f"{', '.join(sorted(_TOP_LEVEL))}")
    name = _string(data, "name", where)
    description = _string(data, "description", where)
    for section in _SECTIONS:
        table = data.get(section)
        if table is None:
            raise TargetError(f"{where}: missing key '{section}' (a [{section}] table)")
        if not isinstance(table, dict):
            raise TargetError(f"{where}: '{section}' must be a table, got {_type(table)}")
    known = {key for _, key, _, _ in _FIELDS}
    for section in _SECTIONS:
        for key in data[section]:
            dotted = f"{section}.{key}"
            if dotted not in known:
                allowed = [k.split(".", 1)[1] for k in sorted(known)
                           if k.startswith(section + ".")]
                raise TargetError(f"{where}: unknown key '{dotted}'; known keys of [{section}] "
                                  f"are {', '.join(allowed)}")

    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for field_name, dotted, kind, minimum in _FIELDS:
        section, key = dotted.split(".", 1)
        if key not in data[section]:
            raise TargetError(f"{where}: missing key '{dotted}'")
        value, source = _sourced_value(data[section][key], dotted, kind, where)
        target_range(where, dotted, value, minimum, TargetError)
        values[field_name] = value
        sources[field_name] = source
    if values["synapse_index_bits_min"] > values["synapse_index_bits_max"]:
        raise TargetError(f"{where}: synapse_memory.index_bits_min "
                          f"({values['synapse_index_bits_min']}) exceeds index_bits_max "
                          f"({values['synapse_index_bits_max']})")
    values["chip_grid"], sources["chip_grid"] = (values["max_chips"],), sources["max_chips"]
    _check_mesh(values, where)  # a chip file's chips lie in a row

    energy = data.get("energy")
    if energy is None:
        raise TargetError(f"{where}: missing key 'energy' (at least one [energy.<model>] table)")
    if not isinstance(energy, dict) or not energy:
        raise TargetError(f"{where}: 'energy' must hold at least one [energy.<model>] table")
    models: dict[str, EnergyModel] = {}
    for model_name, table in energy.items():
        model = _parse_energy_model(model_name, table, where)
        models[model_name] = model
        for coef, source in model.sources.items():
            sources[f"energy.{model_name}.{coef}"] = source

    return HardwareTarget(name=name, description=description, path=where, **values,
                          energy_models=ReadOnlyMapping(models),
                          sources=ReadOnlyMapping(sources))


def _check_mesh(v: dict[str, Any], where: str) -> None:
    """The chip's mesh holds its cores; the grid of chips holds the system's chips."""
    slots, grid = v["tiles_x"] * v["tiles_y"] * v["cores_per_tile"], v.get("chip_grid", (1,))
    if slots < v["cores_per_chip"] or math.prod(grid) < v["max_chips"]:
        raise TargetError(f"{where}: the mesh ({v['tiles_x']} x {v['tiles_y']} tiles x "
                          f"{v['cores_per_tile']} cores) or chip grid {list(grid)} holds fewer "
                          f"than {v['cores_per_chip']} cores per chip or {v['max_chips']} chips")


def _parse_system(data: dict[str, Any], where: str, directory: Path,
                  chip: HardwareTarget | None = None) -> HardwareTarget:
    """A system file: its chip target (``chip``, else loaded by its ``chip_target``) with the
    ``[system]`` numbers replaced."""
    unknown = sorted(set(data) - _SYSTEM_TOP_LEVEL)
    table = data.get("system")
    known = {dotted.split(".", 1)[1]: f for f, dotted, *_ in _SYSTEM_FIELDS}
    extra = sorted(set(table) - set(known)) if isinstance(table, dict) else []
    if unknown or extra:
        raise TargetError(f"{where}: unknown key '{(unknown or ['system.' + extra[0]])[0]}'; a "
                          f"system file holds {', '.join(sorted(_SYSTEM_TOP_LEVEL))} and "
                          f"[system] {', '.join(known)} (per-core numbers: its chip_target)")
    if not isinstance(table, dict):
        raise TargetError(f"{where}: missing key 'system' (a [system] table)")
    ref = _string(data, "chip_target", where)
    if chip is None:
        try:
            chip = load_target(directory / ref if ref.endswith(".toml") else ref)
        except RecursionError:  # a system whose chip is itself (or a loop of systems)
            raise TargetError(f"{where}: chip_target '{ref}' leads back to a system; name a "
                              "chip (e.g. loihi2)") from None
    if chip.chip_target:
        raise TargetError(f"{where}: chip_target '{ref}' is a system; name a chip (e.g. loihi2)")
    values: dict[str, Any] = {}
    sources = dict(chip.sources)
    for field_name, dotted, kind, minimum, required in _SYSTEM_FIELDS:
        key = dotted.split(".", 1)[1]
        if key not in table and required:
            raise TargetError(f"{where}: missing key '{dotted}'")
        if key in table:
            value, sources[field_name] = _sourced_value(table[key], dotted, kind, where)
            target_range(where, dotted, value, minimum, TargetError)
            values[field_name] = value
    if "barrier_system_ns" in values:  # measured on this system: anchors the chip-count law
        values["barrier_system_chips"] = values["max_chips"]
        sources["barrier_system_chips"] = sources["max_chips"]
    _check_mesh({**{k: getattr(chip, k) for k in ("tiles_x", "tiles_y", "cores_per_tile",
                                                  "cores_per_chip")}, **values}, where)
    return dataclasses.replace(chip, name=_string(data, "name", where), path=where,
                               description=_string(data, "description", where),
                               chip_target=chip.name, sources=ReadOnlyMapping(sources), **values)


def _parse_energy_model(model_name: str, table: Any, where: str) -> EnergyModel:
    prefix = f"energy.{model_name}"
    if not isinstance(table, dict):
        raise TargetError(f"{where}: '{prefix}' must be a table, got {_type(table)}")
    formula = _string(table, "formula", where, prefix)
    if formula not in ENERGY_FORMULAS:
        raise TargetError(f"{where}: {prefix}.formula '{formula}' is unknown; choose one of "
                          f"{', '.join(ENERGY_FORMULAS)}")
    description = _string(table, "description", where, prefix)
    coefficients: dict[str, float] = {}
    sources: dict[str, Source] = {}
    for key, entry in table.items():
        if key in ("formula", "description"):
            continue
        if not key.endswith("_pj"):
            raise TargetError(f"{where}: {prefix}.{key}: energy coefficients are named "
                              f"'<what>_pj' (picojoules)")
        value, source = _sourced_value(entry, f"{prefix}.{key}", float, where)
        if value < 0:
            raise TargetError(f"{where}: {prefix}.{key} ({value}) is negative")
        coefficients[key] = value
        sources[key] = source
    for key in ENERGY_FORMULAS[formula]:
        if key not in coefficients:
            raise TargetError(f"{where}: missing key '{prefix}.{key}' "
                              f"(formula '{formula}' needs {', '.join(ENERGY_FORMULAS[formula])})")
    return EnergyModel(name=model_name, formula=formula, description=description,
                       coefficients_pj=ReadOnlyMapping(coefficients),
                       sources=ReadOnlyMapping(sources))


def _sourced_value(entry: Any, dotted: str, kind: type, where: str) -> tuple[Any, Source]:
    """Check one ``{ value, source, basis[, note] }`` table and return (value, Source)."""
    if not isinstance(entry, dict):
        raise TargetError(f"{where}: {dotted}: number without a source; write "
                          f"{{ value = {_toml_repr(entry)}, source = \"...\", "
                          f"basis = \"published\" }}")
    for required in ("value", "source", "basis"):
        if required not in entry:
            raise TargetError(f"{where}: missing key '{dotted}.{required}'")
    extra = sorted(set(entry) - _VALUE_KEYS)
    if extra:
        raise TargetError(f"{where}: {dotted}: unknown key '{extra[0]}'; "
                          f"allowed are value, source, basis, note")
    value, citation, basis = entry["value"], entry["source"], entry["basis"]
    if not isinstance(citation, str) or not citation.strip():
        raise TargetError(f"{where}: {dotted}.source must be a non-empty string")
    if basis not in BASES:
        raise TargetError(f"{where}: {dotted}.basis {basis!r} is not one of {', '.join(BASES)}")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise TargetError(f"{where}: {dotted}.note must be a string, got {_type(note)}")
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is tuple:  # a grid: 1 to 3 integers
        ok = isinstance(value, list) and 0 < len(value) < 4 and all(type(v) is int for v in value)
        value = tuple(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
        if ok:
            value = float(value)
    if not ok:
        expected = {bool: "a boolean", int: "an integer", float: "a finite number",
                    tuple: "a list of 1 to 3 integers"}[kind]
        raise TargetError(f"{where}: {dotted}.value: expected {expected}, "
                          f"got {_type(value)} ({value!r})")
    return value, Source(citation=citation.strip(), basis=basis, key=dotted, note=note.strip())


def _string(table: dict[str, Any], key: str, where: str, prefix: str = "") -> str:
    dotted = f"{prefix}.{key}" if prefix else key
    if key not in table:
        raise TargetError(f"{where}: missing key '{dotted}'")
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise TargetError(f"{where}: {dotted} must be a non-empty string, got {_type(value)}")
    return value.strip()


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, (int, float)) else "..."


def _type(value: Any) -> str:
    return {dict: "table", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "float"}.get(type(value), type(value).__name__)
