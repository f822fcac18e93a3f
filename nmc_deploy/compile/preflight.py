"""Design-rule check before lowering: every layer of a graph against a target's limits,
from per-layer counts only (pure and cheap: a model that cannot fit fails in seconds).

:func:`check_design_rules` counts the populations and synapse groups the lowering would
make (:func:`~.layer_counts.count_layers`: node shapes and nonzeros, nothing lowered) and
checks these rules (the order of :data:`RULES`):

==================  ============  ===============================================
rule                layer         quantity (limit)
==================  ============  ===============================================
fan-in-memory       population    synapse memory bits of one neuron (of a core)
fan-in-axons        population    input axons of one neuron (max_in_axons_per_core)
fan-out             population    output axons of one neuron, lower bound (max_out)
synaptic-delay      population    longest synaptic delay into it (max_synaptic_delay)
attention-delay     population    delay of its attention input (0: no delay line)
attention-unit      attention op  input axons of its largest core unit (max_in)
attention-payload   attention op  bits of the largest attention count (graded bits)
graded-spikes       program       payload bits a low-rank relay needs (graded bits)
state-bits          program       state bits of the compiled LIF (state_bits)
cores               program       cores, lower bound (cores_per_chip x max_chips)
neurons             program       neurons (all cores')
synapse-memory      program       synapse memory bits, lower bound (all cores')
input-axons         program       input axons, lower bound (all cores')
output-axons        program       output axons, lower bound (all cores')
neuron-groups       program       population chunks, lower bound (all cores')
==================  ============  ===============================================

The per-layer quantities are the partitioner's and validator's own (``_chunk_cost`` of one
neuron, the schedule's delays, :func:`~.attention_split.plan_attention_units`); the program
quantities are lower bounds (every synapse entry and list header stored somewhere, one input
axon per used source neuron or shared token/position, one output axon per projecting
neuron, one chunk per population and core), so a failing rule means the model cannot
compile for the target, and the cores lower bound never exceeds the cores the partitioner
uses. Each failing rule carries a concrete fix (prune to x %, narrower heads, share
weights, a larger system).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import CapacityError, DesignRuleError
from ..ir import Graph
from ..ir.conventions import Timing
from ..loihi.constants import LAVA_LIF
from ..program import INPUT, RELAY
from ..targets import HardwareTarget, load_target
from .attention_split import plan_attention_units
from .layer_counts import LayerCounts, count_layers, with_residual_relays
from .weights import message_bits

__all__ = ["RULES", "DesignRule", "DesignRuleReport", "DesignRuleError", "check_design_rules",
           "format_design_rules"]

RULES = ("fan-in-memory", "fan-in-axons", "fan-out", "synaptic-delay", "attention-delay",
         "attention-unit", "attention-payload", "graded-spikes", "state-bits", "cores",
         "neurons", "synapse-memory", "input-axons", "output-axons", "neuron-groups")
PROGRAM = "program"  # the layer name of whole-program rules
_RULE_FIELDS = ("rule", "layer", "quantity", "value", "limit", "limit_name", "status", "hint")


@dataclass(frozen=True)
class DesignRule:
    """One rule checked on one layer: ``value`` against ``limit``."""

    rule: str  # a name of RULES
    layer: str  # population, attention op or "program"
    quantity: str
    value: int
    limit: int
    limit_name: str
    status: str  # "ok", "fail" or "n/a" (does not apply on this target)
    hint: str = ""  # the fix, for a failing rule

    @property
    def usage(self) -> float:
        return self.value / self.limit if self.limit else (0.0 if not self.value else math.inf)

    def message(self) -> str:
        """``<layer>: <quantity> (<value>) exceeds <limit name> (<limit>); <fix>``."""
        return (f"{self.layer}: {self.quantity} ({self.value}) exceeds {self.limit_name} "
                f"({self.limit}); {self.hint} [design rule '{self.rule}']")

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in _RULE_FIELDS[:-1]}
        if self.hint:
            d["hint"] = self.hint
        return d


@dataclass(frozen=True)
class DesignRuleReport:
    """Every rule :func:`check_design_rules` checked, with the counts behind them."""

    target: str
    weight_sharing: bool
    rules: tuple[DesignRule, ...]
    cores_lower_bound: int  # never more than the partitioner's cores
    max_cores: int
    neurons: int
    synapses: int  # expanded synapses (one per token/position copy)
    stored_weights: int  # synapse entries with the written weight sharing (lower bound)
    uncounted: tuple[str, ...]  # groups too large to count cheaply (add nothing to bounds)
    seconds: float = 0.0  # the check's own time (not written: build files are reproducible)

    @property
    def failures(self) -> tuple[DesignRule, ...]:
        return tuple(r for r in self.rules if r.status == "fail")

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst(self) -> list[DesignRule]:
        """Per rule name the row closest to (or furthest over) its limit, in RULES order."""
        best: dict[str, DesignRule] = {}
        for r in self.rules:
            old = best.get(r.rule)
            if old is None or (r.status == "fail", r.usage) > (old.status == "fail", old.usage):
                best[r.rule] = r
        return [best[name] for name in RULES if name in best]

    @classmethod
    def from_json(cls, d: dict) -> "DesignRuleReport":
        """The report of :meth:`to_json` (``design_rules.json``)."""
        rules = tuple(DesignRule(**{k: r.get(k, "") for k in _RULE_FIELDS}) for r in d["rules"])
        return cls(**{k: d[k] for k in ("target", "weight_sharing", "cores_lower_bound",
                                         "max_cores", "neurons", "synapses", "stored_weights")},
                   uncounted=tuple(d["uncounted"]), rules=rules)

    def to_json(self) -> dict:
        return {"target": self.target, "weight_sharing": self.weight_sharing,
                "status": "ok" if self.ok else "fail",
                "cores_lower_bound": self.cores_lower_bound, "max_cores": self.max_cores,
                "neurons": self.neurons, "synapses": self.synapses,
                "stored_weights": self.stored_weights, "uncounted": list(self.uncounted),
                "rules": [r.to_json() for r in self.rules]}


def _rule(rule, layer, quantity, value, limit, limit_name, hint=""):
    status = "fail" if value > limit else "ok"
    return DesignRule(rule, layer, quantity, int(value), int(limit), limit_name, status,
                      hint if status == "fail" else "")


def _prune_hint(keep: float, what: str) -> str:
    """``prune <what> by >= x %``: keep at most ``keep`` of the current nonzeros (x rounded
    up to 0.1 %)."""
    return f"prune {what} by >= {math.ceil(1000.0 * (1.0 - keep)) / 10:.1f} % of its weights"


class _Checker:
    """The counts of one graph and the target; one method per family of rules."""

    def __init__(self, lc: LayerCounts, target: HardwareTarget, sharing: bool,
                 policy: str = "fit"):
        self.lc, self.t, self.sharing = lc, target, sharing
        self.incoming: dict[str, list] = {p: [] for p in lc.populations}
        for g in lc.groups:
            if g.target in self.incoming:
                self.incoming[g.target].append(g)
        self.graded = target.graded_spike_bits > 0
        # the cores of each attention op (split_attention's plan; () on a host core or when
        # not even one query and one key token of a head fit)
        self.units: dict[str, tuple] = {}
        for op in lc.attention if self.graded else ():
            try:
                self.units[op.name] = plan_attention_units(op, target.max_in_axons_per_core,
                                                           target.max_out_axons_per_core,
                                                           policy)
            except CapacityError:
                self.units[op.name] = ()
        # bits of one synapse entry alone in its list: the partitioner's cost of one neuron
        words = -(-(target.synapse_group_header_bits + target.weight_bits +
                    target.synapse_index_bits_min) // target.synapse_word_bits)
        self.bits_one = words * target.synapse_word_bits

    def counted(self, p: str) -> list:
        return [g for g in self.incoming[p] if g.kind != "attention" and g.counts is not None]

    # ------------------------------------------------------------------ per layer
    def fan_in(self, p: str, size: int) -> list[DesignRule]:
        gs = self.counted(p)
        t = self.t
        entries = sum((g.counts.row_entries(self.sharing) for g in gs), np.zeros(size, np.int64))
        axons = sum((g.counts.row_axons(self.sharing) for g in gs), np.zeros(size, np.int64))
        e_max, a_max = int(entries.max(initial=0)), int(axons.max(initial=0))
        cap = t.synapse_memory_bits_per_core // self.bits_one  # synapses of one neuron
        out = [_rule("fan-in-memory", p, "synapse memory bits of one neuron",
                     e_max * self.bits_one, t.synapse_memory_bits_per_core,
                     "synapse_memory_bits_per_core",
                     f"a core holds {cap} synapses of one neuron: keep at most {cap} of its "
                     f"{e_max} (" + _prune_hint(cap / max(e_max, 1), f"the inputs of {p}")
                     + ")")]
        hint = _prune_hint(t.max_in_axons_per_core / max(a_max, 1), f"the inputs of {p}")
        if not self.sharing:
            shared = sum((g.counts.row_axons(True) for g in gs), np.zeros(size, np.int64))
            if int(shared.max(initial=0)) <= t.max_in_axons_per_core:
                hint = ("share weights (--weight-sharing on): one axon per source token or "
                        "input position")
        out.append(_rule("fan-in-axons", p, "input axons of one neuron", a_max,
                         t.max_in_axons_per_core, "max_in_axons_per_core", hint))
        return out

    def fan_out(self) -> list[DesignRule]:
        t = self.t
        need: dict[str, int] = {}
        for g in self.lc.groups:
            if g.source in self.lc.populations and g.counts is not None:
                cores = -(-g.counts.max_fanout // t.max_neurons_per_core)
                need[g.source] = max(need.get(g.source, 0), cores)
        for op in self.lc.attention:  # every q, k, v neuron also feeds its attention unit
            for name in dict.fromkeys((op.q, op.k, op.v)):  # (a set: order by hash seed)
                need[name] = need.get(name, 0) + 1
        return [_rule("fan-out", s, "output axons of one neuron (lower bound)", n,
                      t.max_out_axons_per_core, "max_out_axons_per_core",
                      f"prune the outputs of {s}: its targets span more cores than a neuron "
                      "can address") for s, n in need.items()]

    def delays(self) -> list[DesignRule]:
        """The schedule's delays (``depth(target) - 1 - depth(source) + lag``)."""
        lc, t = self.lc, self.t
        depths = _depths(lc)
        ops = {op.name for op in lc.attention}
        out = []
        for p, gs in self.incoming.items():
            delays = [(depths[p] - 1 - _src_depth(g.source, depths, lc) + g.lag, g)
                      for g in gs if g.source != p]
            plain = [(d, g) for d, g in delays if g.source not in ops]
            if plain:
                d, g = max(plain, key=lambda x: x[0])
                out.append(_rule("synaptic-delay", p, f"synaptic delay steps from {g.source}",
                                 d, t.max_synaptic_delay, "max_synaptic_delay",
                                 "the residual stream is too deep to align by delays; use "
                                 "fewer blocks or a target with longer synaptic delays"))
            for d, g in delays:
                if g.source in ops:
                    out.append(_rule("attention-delay", p, f"delay steps of attention output "
                                     f"{g.source}", d, 0, "the attention unit's delay "
                                     "line", "give every input of this population the same "
                                     "pipeline depth as the attention output"))
        return out

    def attention(self) -> list[DesignRule]:
        t, out = self.t, []
        for op in self.lc.attention:
            if not self.graded:
                out.append(DesignRule("attention-unit", op.name, "input axons of its largest "
                                      "core unit", 0, t.max_in_axons_per_core,
                                      "max_in_axons_per_core", "n/a",
                                      "runs on the embedded x86 cores (no graded spikes)"))
                continue
            units = self.units[op.name]
            # no plan: one query and one key token of one head do not fit
            value = max(u.in_axons for u in units) if units else 3 * op.head_dim
            width = max(t.max_in_axons_per_core // 3, 1)  # a query, a key, a value token
            out.append(_rule("attention-unit", op.name, "input axons of its largest core unit",
                             value, t.max_in_axons_per_core, "max_in_axons_per_core",
                             f"use narrower heads: at most {width} channels per head "
                             f"(>= {-(-op.dim // width)} heads for dim {op.dim})"))
            out.append(_rule("attention-payload", op.name, "bits of the largest attention "
                             f"count ({op.max_count})", message_bits(op.max_count),
                             t.graded_spike_bits, "graded_spike_bits",
                             "fewer tokens or narrower heads (the count is tokens x head "
                             "width)"))
        return out

    def program(self) -> list[DesignRule]:
        t, out = self.t, []
        residual = set(self.lc.residual_relays)
        low_rank = [p for p, (_, kind) in self.lc.populations.items()
                    if kind == RELAY and p not in residual]
        for what, found, fix in (("a low-rank relay", low_rank, "deploy the low-rank factors "
                                  "fused (--low-rank fused)"),
                                 ("a residual relay", residual, "deploy the residual stream "
                                  "in fan-in form (--residual fan-in)")):
            if found:
                ok = t.graded_spike_bits >= 2
                out.append(DesignRule("graded-spikes", PROGRAM, f"payload bits {what} needs",
                                      2, t.graded_spike_bits, "graded_spike_bits",
                                      "ok" if ok else "fail", "" if ok else fix))
        out.append(_rule("state-bits", PROGRAM, "neuron state bits of the compiled LIF (u, v)",
                         LAVA_LIF.uv_bits, t.state_bits, "state_bits",
                         f"a target with >= {LAVA_LIF.uv_bits}-bit neuron state (Lava's "
                         "bit-accurate LIF)"))
        return out


def _src_depth(src: str, depths: dict, lc: LayerCounts) -> int:
    if src == INPUT:
        return 0
    for op in lc.attention:
        if op.name == src:
            return depths.get(op.q, 0)
    return depths.get(src, 0)


def _depths(lc: LayerCounts) -> dict[str, int]:
    """Pipeline depths as :func:`~.schedule.schedule_program` assigns them."""
    depths: dict[str, int] = {}
    incoming: dict[str, list] = {p: [] for p in lc.populations}
    for g in lc.groups:
        if g.target in incoming:
            incoming[g.target].append(g)

    def src(name: str) -> int:
        if name in lc.selectors and name not in depths:
            d_in = 1 + max((src(s) for s in lc.selectors[name] if not s.startswith("<")),
                           default=0)
            depths[name] = d_in + lc.time_steps - 1
        return _src_depth(name, depths, lc)

    for p in lc.populations:
        depths[p] = 1 + max((src(g.source) for g in incoming[p] if g.source != p), default=0)
    return depths


# ---------------------------------------------------------------------- whole program

@dataclass(frozen=True)
class _Bounds:
    """Lower bounds of the program's totals over all cores."""

    neurons: int
    memory_bits: int
    in_axons: int
    out_axons: int
    chunks: int
    attention_cores: int


def _bounds(ck: _Checker, sharing: bool) -> _Bounds:
    """Every entry and list header stored once (lists round up to whole words), one input
    axon per used source neuron (shared: per token/position), one output axon per
    projecting neuron (+1 per attention op it feeds), one chunk per population and core."""
    t, lc = ck.t, ck.lc
    entry_bits = t.weight_bits + t.synapse_index_bits_min
    memory = axons = chunks = 0
    for p, (size, _) in lc.populations.items():
        mem_p = in_p = 0
        for g in ck.counted(p):
            c = g.counts
            lists = c.lists(sharing)
            mem_p += max(c.entries(sharing) * entry_bits + lists * t.synapse_group_header_bits,
                         lists * t.synapse_word_bits)
            in_p += c.axons(sharing)
        memory, axons = memory + mem_p, axons + in_p
        chunks += max(-(-size // t.max_neurons_per_core),
                      -(-mem_p // t.synapse_memory_bits_per_core),
                      -(-in_p // t.max_in_axons_per_core))
    used: dict[str, int] = {}
    for g in lc.groups:
        if g.source in lc.populations and g.counts is not None and g.kind != "attention":
            used[g.source] = max(used.get(g.source, 0), g.counts.sources_used)
    out = sum(used.values())
    for op in lc.attention:  # q, k, v neurons feed the unit cores reading them
        units = ck.units.get(op.name, ())
        if units and len({op.q, op.k, op.v}) == 3:
            out += sum(u.in_axons for u in units)
        else:
            out += sum(lc.populations[n][0] for n in {op.q, op.k, op.v} if n in lc.populations)
    cores = sum(max(len(ck.units[op.name]), 1) for op in lc.attention) if ck.graded else 0
    return _Bounds(lc.neurons, memory, axons, out, chunks, cores)


def _cores(b: _Bounds, t: HardwareTarget) -> dict[str, int]:
    """Cores each resource alone needs (lower bounds)."""
    return {"neurons": -(-b.neurons // t.max_neurons_per_core),
            "synapse memory": -(-b.memory_bits // t.synapse_memory_bits_per_core),
            "input axons": -(-b.in_axons // t.max_in_axons_per_core),
            "output axons": -(-b.out_axons // t.max_out_axons_per_core),
            "neuron groups": -(-b.chunks // t.max_neuron_groups_per_core)}


def _larger_systems(t: HardwareTarget, cores: int) -> str:
    """The smallest shipped system of the same chip with at least ``cores`` cores
    (:func:`~nmc_deploy.compile.chips.larger_systems`), as a hint."""
    from .chips import larger_systems

    fits = [o for o in larger_systems(t) if o.max_cores >= cores]
    return f", e.g. --target {fits[0].name}" if fits else ""


def _system_rules(ck: _Checker) -> tuple[list[DesignRule], int]:
    """The cores rule and its per-resource breakdown; returns them and the cores bound."""
    t, sharing = ck.t, ck.sharing
    b = _bounds(ck, sharing)
    per = _cores(b, t)
    binding = max(per, key=per.get)
    cores = per[binding] + b.attention_cores
    chips = -(-cores // t.cores_per_chip)
    system = (f"{t.max_chips} chip(s) of {t.cores_per_chip} cores; use a system of >= {chips} "
              f"chips" + _larger_systems(t, cores))
    fixes = {"neurons": "; pruning weights does not remove neurons (fewer tokens or a "
                        "smaller input do)",
             "synapse memory": "", "input axons": "", "output axons": "", "neuron groups": ""}
    shared = _cores(_bounds(ck, True), t) if not sharing else None
    for what, limit, got in (("synapse memory", t.synapse_memory_bits_per_core, b.memory_bits),
                             ("input axons", t.max_in_axons_per_core, b.in_axons)):
        if shared is not None and shared[what] < per[what]:
            fixes[what] += (f"; or share weights (--weight-sharing on: >= {shared[what]} "
                            f"cores by {what})")
        keep = t.max_cores * limit / max(got, 1)
        if keep > 0.005:
            fixes[what] += "; or " + _prune_hint(keep, "the model")
    rules = [_rule("cores", PROGRAM, f"cores (lower bound, by {binding})", cores, t.max_cores,
                   f"the cores of target {t.name}", system + fixes[binding])]
    mc = t.max_cores
    for rule, what, got, per_core in (
            ("neurons", "neurons", b.neurons, t.max_neurons_per_core),
            ("synapse-memory", "synapse memory", b.memory_bits, t.synapse_memory_bits_per_core),
            ("input-axons", "input axons", b.in_axons, t.max_in_axons_per_core),
            ("output-axons", "output axons", b.out_axons, t.max_out_axons_per_core),
            ("neuron-groups", "neuron groups", b.chunks, t.max_neuron_groups_per_core)):
        quantity = what + (" bits" if rule == "synapse-memory" else "") + \
            ("" if rule == "neurons" else " (lower bound)")
        rules.append(_rule(rule, PROGRAM, quantity, got, mc * per_core,
                           f"{mc} cores x {per_core}", system + fixes[what]))
    return rules, cores


def check_design_rules(graph: Graph, target: HardwareTarget | str, *, low_rank: str = "fused",
                       weight_sharing: bool | None = None, timing: Timing | None = None,
                       attention_split: str = "fit", residual: str = "fan-in",
                       raise_on_failure: bool = True) -> DesignRuleReport:
    """Check ``graph`` (not modified) against ``target`` before lowering (module docstring).

    Parameters
    ----------
    graph : Graph
        The graph IR.
    target : HardwareTarget or str
        The system (or its name for :func:`~nmc_deploy.targets.load_target`).
    low_rank : {"fused", "relay"}
        How low-rank factor pairs deploy (relays are populations).
    weight_sharing : bool, optional
        Shared weights stored once per core; default the target's ``weight_sharing``.
    timing : Timing, optional
        For the steps of Delay nodes; default the graph metadata's dt.
    attention_split : {"fit", "head"}
        The policy of :func:`~.attention_split.plan_attention_units`: each unit is a core.
    residual : {"fan-in", "relay"}
        How residual streams reach their readers (relay: :func:`~.layer_counts.
        with_residual_relays`, the counts of the relay form).
    raise_on_failure : bool
        Raise :class:`~nmc_deploy.errors.DesignRuleError` (message: the first failing rule,
        one line; ``report``: the whole report) when a rule fails; else only report it.
    """
    start = time.perf_counter()
    target = load_target(target) if isinstance(target, str) else target
    sharing = target.weight_sharing if weight_sharing is None else bool(weight_sharing)
    lc = count_layers(graph, timing=timing, low_rank=low_rank)
    if residual == "relay":
        lc = with_residual_relays(lc)
    ck = _Checker(lc, target, sharing, attention_split)
    rules: list[DesignRule] = []
    for p, (size, _) in lc.populations.items():
        rules += ck.fan_in(p, size)
    rules += ck.fan_out() + ck.delays() + ck.attention() + ck.program()
    system, cores = _system_rules(ck)
    rules += system
    order = {name: i for i, name in enumerate(RULES)}
    rules.sort(key=lambda r: order[r.rule])  # stable: layers stay in program order
    counted = [g.counts for g in lc.groups if g.counts is not None]
    report = DesignRuleReport(
        target=target.name, weight_sharing=sharing, rules=tuple(rules),
        cores_lower_bound=cores, max_cores=target.max_cores, neurons=lc.neurons,
        synapses=sum(c.synapses for c in counted),
        stored_weights=sum(c.entries(sharing) for c in counted),
        uncounted=tuple(f"{g.source}->{g.target}" for g in lc.groups
                        if g.counts is None and g.kind != "attention"),
        seconds=time.perf_counter() - start)
    if raise_on_failure and report.failures:
        first = report.failures[0]
        more = len(report.failures) - 1
        raise DesignRuleError(first.message() + (f" (and {more} more failing rule"
                                                 f"{'s' if more > 1 else ''})" if more else ""),
                              report)
    return report


def format_design_rules(report: DesignRuleReport | dict) -> str:
    """The compile report's design-rule table: per rule the layer nearest its limit."""
    report = report if isinstance(report, DesignRuleReport) else \
        DesignRuleReport.from_json(report)
    d, rows = report.to_json(), report.worst()
    took = f", {report.seconds:.2f} s" if report.seconds else ""
    layers = len({r["layer"] for r in d["rules"]})
    failing = sum(r["status"] == "fail" for r in d["rules"])
    lines = [f"design rules: {len(rows)} rules on {layers} layers, "
             + ("all ok" if not failing else f"{failing} failing")
             + f"; cores >= {d['cores_lower_bound']} of {d['max_cores']} (target "
             f"{d['target']}, weight sharing {'on' if d['weight_sharing'] else 'off'}{took})",
             f"{'rule':<18} {'layer (nearest its limit)':<30} {'quantity':<42} {'value':>12} "
             f"{'limit':>12} {'use':>6}  status"]
    for r in rows:
        layer = r.layer if len(r.layer) <= 30 else r.layer[:27] + "..."
        quantity = r.quantity if len(r.quantity) <= 42 else r.quantity[:39] + "..."
        use = f"{100 * r.usage:5.1f}%" if r.limit else "-"
        lines.append(f"{r.rule:<18} {layer:<30} {quantity:<42} {r.value:>12} {r.limit:>12} "
                     f"{use:>6}  {r.status}")
    if d["uncounted"]:
        lines.append(f"not counted (chains of weighted nodes too large to multiply): "
                     f"{', '.join(d['uncounted'][:5])}" + (" ..." if len(d["uncounted"]) > 5
                                                          else ""))
    return "\n".join(lines)
