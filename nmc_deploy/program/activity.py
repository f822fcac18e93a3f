"""Simulated activity, the simulate -> report contract: ``activity_<backend>.json`` as typed records.

A simulation counts, over all its samples and steps, the synaptic operations of every layer,
and the spikes and (active) neuron updates of every population (measured in simulation, not
on a chip). :meth:`Activity.from_json` checks a file's dict and gives one-line
:class:`~nmc_deploy.errors.InputFileError` messages naming the bad field;
:meth:`Activity.to_json` gives back the dict the reference simulator writes, key order
included.

File layout (optional keys in brackets)::

    {"backend": str, "samples": int >= 1, "time_steps": int >= 1, ["pipeline_depth": int],
     "layers": [{"name", "kind", "synops", "synapses", "population"}],
     "populations": [{"name", ["kind"], "neurons", "spikes", "neuron_updates",
                      "active_updates", ["u_wraps", "v_saturations"]}],
     ["u_wraps": int, "v_saturations": int],
     ["token_selectors": [{"name", "evaluated_tokens", "kept_tokens", "predictor_macs",
                           "lut_lookups", ["buffered_values"]}],
      "synops_without_token_selection": int],
     ["traffic": {<totals of the senders' counts>, "longest_route": {...},
                  "senders": [{"name", "population", "messages", "messages_between_chips",
                               "tile_hops_ew", "tile_hops_ns", "chip_hops"}],
                  "not_counted": [str],
                  ["core_pairs": {"source": [int], "destination": [int],
                                  "messages": [int], "hops": [int],
                                  "chip_hops": [int]}]}],
     ["dataset": str]}

``traffic`` (:class:`Traffic`, from :mod:`nmc_deploy.compile.traffic`): the spike messages of
the run routed on the compiled placement; its totals are written for readers and recomputed
from the senders on reading. ``core_pairs`` (:class:`CorePairs`) is the core-to-core traffic
matrix in coordinate form: per (source core, destination core) with messages, its messages,
their tile hops (east-west + north-south) and their chip hops.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputFileError
from ._fields import (optional_count, optional_text, put_present, read_count, read_dict,
                      read_list, read_text)

__all__ = ["LAYER_KINDS", "LayerActivity", "PopulationActivity", "TokenSelectorActivity",
           "SenderTraffic", "CorePairs", "Traffic", "TRAFFIC_COUNTS", "Activity"]

# "tokens": synapses fed by a token selector's gated stream (graded residual sums, priced as
# accumulates like every non-encoding synaptic op). Low-rank relays add no layer kind: the
# groups into a relay are "encoding" (from the input), "tokens" (from a selector) or
# "synapses", the group out of a relay is "synapses" (its graded payload priced like a spike),
# and the relay itself is an activity population with kind "relay".
LAYER_KINDS = ("encoding", "synapses", "attention", "tokens")

_POPULATION_COUNTS = ("neurons", "spikes", "neuron_updates", "active_updates")
_SELECTOR_COUNTS = ("evaluated_tokens", "kept_tokens", "predictor_macs", "lut_lookups")


@dataclass(frozen=True)
class LayerActivity:
    """The synaptic operations of one layer (a graph node's synapse groups) into ``population``."""

    name: str
    kind: str  # one of LAYER_KINDS
    synops: int  # synaptic operations, all samples and steps
    synapses: int  # nonzero weights
    population: str  # destination population

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "synops": self.synops,
                "synapses": self.synapses, "population": self.population}


@dataclass(frozen=True)
class PopulationActivity:
    """Spikes and neuron updates of one population (a relay: payload messages and updates)."""

    name: str
    neurons: int
    spikes: int  # all samples and steps (relay: nonzero graded payloads)
    neuron_updates: int
    active_updates: int  # updates of neurons with input or nonzero state (<= neuron_updates)
    kind: str | None = None  # "relay" for a graded relay; None: not recorded (a spiking one)
    u_wraps: int | None = None  # fixed-point current wraps (steps x samples x neurons)
    v_saturations: int | None = None  # voltages left at the 24-bit bound

    @property
    def graded(self) -> bool:
        """True for a relay population (graded payloads instead of spikes)."""
        return self.kind == "relay"

    def to_json(self) -> dict:
        return put_present({"name": self.name}, kind=self.kind, neurons=self.neurons,
                           spikes=self.spikes, neuron_updates=self.neuron_updates,
                           active_updates=self.active_updates, u_wraps=self.u_wraps,
                           v_saturations=self.v_saturations)


@dataclass(frozen=True)
class TokenSelectorActivity:
    """The work of one token selector (an embedded-core op), all samples."""

    name: str
    evaluated_tokens: int
    kept_tokens: int
    predictor_macs: int
    lut_lookups: int
    buffered_values: int | None = None

    def to_json(self) -> dict:
        return put_present({"name": self.name}, evaluated_tokens=self.evaluated_tokens,
                           kept_tokens=self.kept_tokens, predictor_macs=self.predictor_macs,
                           lut_lookups=self.lut_lookups, buffered_values=self.buffered_values)


#: What the traffic of a sender counts (all samples and steps).
TRAFFIC_COUNTS = ("messages", "messages_between_chips", "tile_hops_ew", "tile_hops_ns",
                  "chip_hops")
_ROUTE = ("tile_hops_ew", "tile_hops_ns", "chip_hops")


@dataclass(frozen=True)
class SenderTraffic:
    """The messages of one sender (a population or an attention unit) and their hops."""

    name: str
    population: str  # whose energy carries the hops: the sender, or an attention unit's target
    messages: int  # one per event and destination core
    messages_between_chips: int
    tile_hops_ew: int
    tile_hops_ns: int
    chip_hops: int

    def to_json(self) -> dict:
        return {"name": self.name, "population": self.population,
                **{k: getattr(self, k) for k in TRAFFIC_COUNTS}}


@dataclass(frozen=True)
class CorePairs:
    """The core-to-core traffic matrix in coordinate form (totals over samples and steps).

    Entry ``i``: ``messages[i]`` messages from core ``source[i]`` to core
    ``destination[i]`` (an attention unit's core included), which together made ``hops[i]``
    tile hops (east-west plus north-south) and ``chip_hops[i]`` chip hops. Pairs without a
    message are left out; a core's messages to itself (hops 0) are kept.
    """

    source: tuple[int, ...]
    destination: tuple[int, ...]
    messages: tuple[int, ...]
    hops: tuple[int, ...]
    chip_hops: tuple[int, ...]

    _FIELDS = ("source", "destination", "messages", "hops", "chip_hops")

    def to_json(self) -> dict:
        return {k: list(getattr(self, k)) for k in self._FIELDS}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "CorePairs":
        cols = {k: read_list(d, k, where) for k in cls._FIELDS}
        n = len(cols["source"])
        for k, v in cols.items():
            if len(v) != n:
                raise InputFileError(f"{where}: {k} has {len(v)} entries, source has {n}")
            if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
                raise InputFileError(f"{where}: {k} must hold non-negative integers")
        return cls(**{k: tuple(v) for k, v in cols.items()})


@dataclass(frozen=True)
class Traffic:
    """Spike traffic of a run on its placement (totals over all samples and steps)."""

    senders: tuple[SenderTraffic, ...]
    longest_route: dict[str, int]  # per hop kind: the most hops of one message that was sent
    not_counted: tuple[str, ...]  # sources whose messages are not in the counts
    core_pairs: CorePairs | None = None  # None: not recorded (an older activity file)

    def total(self, key: str) -> int:
        """Sum of one of :data:`TRAFFIC_COUNTS` over the senders."""
        return sum(getattr(s, key) for s in self.senders)

    def to_json(self) -> dict:
        return {**{k: self.total(k) for k in TRAFFIC_COUNTS},
                "longest_route": dict(self.longest_route),
                "senders": [s.to_json() for s in self.senders],
                "not_counted": list(self.not_counted),
                **({} if self.core_pairs is None else {"core_pairs": self.core_pairs.to_json()})}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "Traffic":
        senders = []
        for i, s in enumerate(read_list(d, "senders", where)):
            w = f"{where}.senders[{i}]"
            senders.append(SenderTraffic(read_text(s, "name", w), read_text(s, "population", w),
                                         *(read_count(s, k, w) for k in TRAFFIC_COUNTS)))
        route = read_dict(d, "longest_route", where)
        notes = read_list(d, "not_counted", where)
        pairs = (CorePairs.from_json(read_dict(d, "core_pairs", where), f"{where}.core_pairs")
                 if "core_pairs" in d else None)
        return cls(tuple(senders), {k: read_count(route, k, f"{where}.longest_route")
                                    for k in _ROUTE}, tuple(str(n) for n in notes), pairs)


@dataclass(frozen=True)
class Activity:
    """One simulation's activity (totals over ``samples`` x ``time_steps``).

    ``pipeline_depth`` is ``None`` when the file did not record it. ``token_selectors`` is
    ``None`` without the key (a program without selectors);
    ``synops_without_token_selection`` counts the synaptic ops of the same run with every
    token kept. ``u_wraps``, ``v_saturations`` (fixed-point overflow counts) and ``dataset``
    are carried for the record; the report does not read them.
    """

    backend: str
    samples: int
    time_steps: int
    pipeline_depth: int | None
    layers: tuple[LayerActivity, ...]
    populations: tuple[PopulationActivity, ...]
    u_wraps: int | None = None
    v_saturations: int | None = None
    token_selectors: tuple[TokenSelectorActivity, ...] | None = None
    synops_without_token_selection: int | None = None
    dataset: str | None = None
    traffic: Traffic | None = None

    def population(self, name: str) -> PopulationActivity:
        return next(p for p in self.populations if p.name == name)

    @classmethod
    def from_json(cls, data: dict, where: str = "activity") -> "Activity":
        """Check and read an activity dict; ``where`` prefixes every error message.

        Raises
        ------
        InputFileError
            A missing key, a value of the wrong type or below its minimum, an unknown layer
            kind, a layer into a population that is not listed, a population listed twice,
            or more active updates than updates.
        """
        if not isinstance(data, dict):
            raise InputFileError(f"{where}: expected a dict")
        backend = read_text(data, "backend", where)
        samples = read_count(data, "samples", where, 1)
        time_steps = read_count(data, "time_steps", where, 1)
        depth = optional_count(data, "pipeline_depth", where)
        pops = tuple(_read_population(p, f"{where}: populations[{i}]", where)
                     for i, p in enumerate(read_list(data, "populations", where)))
        names = [p.name for p in pops]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InputFileError(f"{where}: population '{dup}' is listed twice")
        layers = tuple(_read_layer(ly, f"{where}: layers[{i}]", where, names)
                       for i, ly in enumerate(read_list(data, "layers", where)))
        selectors = None
        if data.get("token_selectors"):
            selectors = tuple(_read_selector(s, f"{where}: token_selectors[{i}]")
                              for i, s in enumerate(read_list(data, "token_selectors", where)))
        elif "token_selectors" in data:
            selectors = ()
        without = optional_count(data, "synops_without_token_selection", where)
        traffic = Traffic.from_json(read_dict(data, "traffic", where), f"{where}: traffic") \
            if "traffic" in data else None
        return cls(backend, samples, time_steps, depth, layers, pops,
                   u_wraps=optional_count(data, "u_wraps", where),
                   v_saturations=optional_count(data, "v_saturations", where),
                   token_selectors=selectors, synops_without_token_selection=without,
                   dataset=optional_text(data, "dataset", where), traffic=traffic)

    def to_json(self) -> dict:
        """The activity dict (the layout of the module docstring; absent fields left out)."""
        out = put_present({"backend": self.backend, "samples": self.samples,
                           "time_steps": self.time_steps}, pipeline_depth=self.pipeline_depth)
        out["layers"] = [ly.to_json() for ly in self.layers]
        out["populations"] = [p.to_json() for p in self.populations]
        selectors = (None if self.token_selectors is None
                     else [s.to_json() for s in self.token_selectors])
        return put_present(out, u_wraps=self.u_wraps, v_saturations=self.v_saturations,
                           token_selectors=selectors,
                           synops_without_token_selection=self.synops_without_token_selection,
                           dataset=self.dataset,
                           traffic=None if self.traffic is None else self.traffic.to_json())


def _read_population(p: dict, where: str, top: str) -> PopulationActivity:
    name = read_text(p, "name", where)
    counts = {key: read_count(p, key, f"{top}: population '{name}'") for key in _POPULATION_COUNTS}
    if counts["active_updates"] > counts["neuron_updates"]:
        raise InputFileError(f"{top}: population '{name}': active_updates "
                             f"({counts['active_updates']}) exceeds neuron_updates "
                             f"({counts['neuron_updates']})")
    where = f"{top}: population '{name}'"
    return PopulationActivity(name, **counts, kind=optional_text(p, "kind", where),
                              u_wraps=optional_count(p, "u_wraps", where),
                              v_saturations=optional_count(p, "v_saturations", where))


def _read_layer(ly: dict, where: str, top: str, populations: list[str]) -> LayerActivity:
    name = read_text(ly, "name", where)
    where = f"{top}: layer '{name}'"
    kind = read_text(ly, "kind", where)
    if kind not in LAYER_KINDS:
        raise InputFileError(f"{where}: kind '{kind}' is not one of {', '.join(LAYER_KINDS)}")
    synops = read_count(ly, "synops", where)
    synapses = read_count(ly, "synapses", where)
    population = read_text(ly, "population", where)
    if population not in populations:
        raise InputFileError(f"{where}: destination population '{population}' is not in "
                             f"{top}['populations']")
    return LayerActivity(name, kind, synops, synapses, population)


def _read_selector(s: dict, where: str) -> TokenSelectorActivity:
    name = read_text(s, "name", where)
    counts = {key: read_count(s, key, where) for key in _SELECTOR_COUNTS}
    return TokenSelectorActivity(name, **counts,
                                 buffered_values=optional_count(s, "buffered_values", where))
