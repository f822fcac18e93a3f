"""``compile_graph``: the compiler as a recipe of pure passes, read top to bottom.

::

    check_design_rules (the graph's counts against the target; nothing lowered)
    -> lower_graph -> schedule_program -> quantize_program -> validate_program
       (FloatProgram)  (Schedule)          (Program)          (checked Program)
      -> split_attention -> partition_program
         (Program with attention units)  (Placement)

When the graph has low-rank factor pairs, the other deployment form ("fused" or "relay") is
compiled too, only for its costs (:class:`~nmc_deploy.program.placement.LowRankForms`; the
compile report's table). Likewise, when the graph has a residual stream (a population
reading several spiking populations with one matrix), the other residual form ("fan-in" or
"relay") is compiled for its costs (:class:`~nmc_deploy.program.placement.ResidualForms`).
When the program holds shared weights (token-parallel layers,
convolutions), it is also placed with the other weight-storage mode ("on": stored once per
core, "off": once per token/position), for
:class:`~nmc_deploy.program.placement.WeightSharingForms`.
"""
from __future__ import annotations

import dataclasses
import gc
import warnings
from dataclasses import dataclass

from ..errors import CapacityError, NmcDeployError
from ..ir import Graph, SpikingSelfAttention
from ..ir.conventions import Timing
from ..program import LOW_RANK_MODES, RESIDUAL_MODES, FloatProgram, Program
from ..program.activity import Activity
from ..program.placement import (LowRankForms, ResidualCosts, ResidualForms,
                                 WeightSharingForms,
                                 summarize_form, summarize_placement, summarize_residual,
                                 summarize_sharing)
from ..program.shared_weights import is_shared
from ..targets import HardwareTarget, load_target
from .attention_split import split_attention
from .lower import low_rank_down_nodes, lower_graph
from .lower.context import has_residual_stream
from .mesh import layout_cores
from .netx import NETX_GRID
from .partition import Placement, partition_program
from .preflight import DesignRuleReport, check_design_rules
from .quantize import DEFAULT_VTH_MANT, LAVA_GRID, GridPolicy, quantize_program
from .schedule import Schedule, schedule_program
from .validate import validate_program

__all__ = ["CompileResult", "compile_graph", "format_attention_units", "format_low_rank_forms",
           "format_residual_forms", "format_weight_sharing"]


@dataclass(frozen=True)
class CompileResult:
    """Everything :func:`compile_graph` made of one graph for one target."""

    float_program: FloatProgram
    schedule: Schedule
    program: Program
    placement: Placement
    low_rank: LowRankForms | None = None  # only for graphs with low-rank factor pairs
    weight_sharing: WeightSharingForms | None = None  # only for programs with shared weights
    design_rules: DesignRuleReport | None = None  # the pre-flight check (design_rules.json)
    residual: ResidualForms | None = None  # only for graphs with a residual stream

    def summary(self) -> dict:
        """The ``placement.json`` content: per-core utilization, quantization diagnostics,
        totals, token selectors and (with low-rank pairs) both forms' costs
        (:func:`~nmc_deploy.program.placement.summarize_placement`)."""
        return summarize_placement(self.placement, self.program, self.low_rank,
                                   self.weight_sharing, self.residual).to_json()


def format_low_rank_forms(info: dict) -> str:
    """The fused-vs-relay cost table of the compile report (``LowRankForms.to_json()``)."""
    lines = [f"low-rank factors: {info['pairs']} pairs; both deployment forms on target "
             f"{info['target']} ('{info['written']}' written)",
             f"{'form':<6} {'synapses':>9} {'syn. memory':>12} {'cores':>6} {'neurons':>8} "
             f"{'depth':>6}"]
    for form, c in info["forms"].items():
        mark = "  <- written" if form == info["written"] else ""
        if "error" in c:
            lines.append(f"{form:<6} not deployable: {c['error']}{mark}")
            continue
        lines.append(f"{form:<6} {c['synapses']:>9} {c['synapse_memory_bits'] // 8:>10} B "
                     f"{c['cores']:>6} {c['neurons']:>8} {c['pipeline_depth']:>6}{mark}")
    return "\n".join(lines)


def format_residual_forms(info: dict) -> str:
    """The fan-in-vs-relay cost table of the compile report (``ResidualForms.to_json()``)."""
    forms = info["forms"]
    short = ", ".join(f"{m} {c['cores']} cores" if "error" not in c else f"{m} not deployable"
                      for m, c in forms.items())
    lines = [f"residual stream: {short} ({info['relays']} relays; '{info['written']}' "
             f"written, target {info['target']})",
             f"{'form':<7} {'synapses':>11} {'syn. memory':>12} {'cores':>6} {'neurons':>9} "
             f"{'groups':>7} {'max out':>8} {'depth':>6}"]
    for form, c in forms.items():
        mark = "  <- written" if form == info["written"] else ""
        if "error" in c:
            lines.append(f"{form:<7} not deployable: {c['error']}{mark}")
            continue
        lines.append(f"{form:<7} {c['synapses']:>11} {c['synapse_memory_bits'] // 8:>10} B "
                     f"{c['cores']:>6} {c['neurons']:>9} {c['groups']:>7} "
                     f"{c['max_out_degree']:>8} {c['pipeline_depth']:>6}{mark}")
    return "\n".join(lines)


def format_weight_sharing(info: dict) -> str:
    """The shared-weights table of the compile report (``WeightSharingForms.to_json()``)."""
    lines = [f"shared weights: {info['weights']} stored weights for {info['synapses']} "
             f"synapses; both storage modes ('{info['written']}' written)",
             f"{'sharing':<8} {'cores':>6} {'synapses on cores':>18} {'syn. memory':>12}"]
    for mode, c in info["forms"].items():
        mark = "  <- written" if mode == info["written"] else ""
        if "error" in c:
            what = "" if c["error"].startswith("not placed") else "does not fit: "
            lines.append(f"{mode:<8} {what}{c['error']}{mark}")
            continue
        lines.append(f"{mode:<8} {c['cores']:>6} {c['synapses_stored']:>18} "
                     f"{c['synapse_memory_bits'] // 8:>10} B{mark}")
    return "\n".join(lines)


def format_attention_units(program: Program, policy: str) -> str:
    """The attention deployment line(s) of the compile report: units per op and their size."""
    lines = []
    for op in program.attention:
        if not op.units:
            lines.append(f"attention {op.name}: on an embedded x86 core (no graded spikes)")
            continue
        u = op.units
        keys = len(op.key_blocks)
        lines.append(
            f"attention {op.name}: {len(u)} unit(s) ({policy}: {op.num_heads} heads of "
            f"{op.head_dim}, {max(x.heads for x in u)} head(s) per unit, "
            f"{len({(x.q_start, x.q_stop) for x in u})} query block(s), {keys} key block(s)"
            f"{' summed in the attention neurons' if keys > 1 else ''}); largest unit: "
            f"in-axons {max(x.in_axons for x in u)}, out-axons {max(x.out_axons for x in u)}, "
            f"{max(x.ops_per_step for x in u)} ops/step")
    return "\n".join(lines)


def _sharing_mode(on: bool) -> str:
    return "on" if on else "off"


def _compile_form(graph: Graph, target: HardwareTarget, *, low_rank: str, vth_mant: int | None,
                  grid: GridPolicy, timing: Timing | None,
                  weight_sharing: bool | None = None,
                  attention_split: str = "fit", residual: str = "fan-in",
                  fp: FloatProgram | None = None) -> CompileResult:
    """One deployment form, pass by pass (from its float program ``fp`` when given)."""
    if fp is None:
        fp = lower_graph(graph, timing=timing, low_rank=low_rank, residual=residual)
    schedule = schedule_program(fp)
    program = quantize_program(fp, schedule, target=target, vth_mant=vth_mant, grid=grid)
    validate_program(program, target)
    program = split_attention(program, target, attention_split)
    placement = partition_program(program, target, weight_sharing=weight_sharing)
    return CompileResult(float_program=fp, schedule=schedule, program=program,
                         placement=placement)


def _other_form_costs(graph, target, other: str, vth_mant: int | None, timing, sharing: bool,
                      attention_split: str, residual: str = "fan-in"):
    """The costs of the form not written (warnings silenced), or why it cannot deploy."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _compile_form(graph, target, low_rank=other, vth_mant=vth_mant,
                                grid=LAVA_GRID, timing=timing, weight_sharing=sharing,
                                attention_split=attention_split, residual=residual)
    except NmcDeployError as exc:  # e.g. no graded spikes on this target
        return str(exc)
    return summarize_form(res.program, res.placement)


def _other_residual_form(graph, target: HardwareTarget, *, other: str, low_rank: str,
                         vth_mant: int | None, timing, sharing: bool, attention_split: str
                         ) -> tuple[ResidualCosts | str, int, bool]:
    """``(costs or why not deployable, relays, has a stream)`` of the residual form not
    written, compiled (warnings silenced) and released before the written form is built, so
    the two never hold memory at the same time."""
    relays, stream = 0, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fp = lower_graph(graph, timing=timing, low_rank=low_rank, residual=other)
            relays = len(fp.metadata.get("residual_relays", ()))
            stream = has_residual_stream(fp)
            if not stream:
                return "", 0, False
            res = _compile_form(graph, target, low_rank=low_rank, vth_mant=vth_mant,
                                grid=LAVA_GRID, timing=timing, weight_sharing=sharing,
                                attention_split=attention_split, residual=other, fp=fp)
        return summarize_residual(res.program, res.placement), relays, True
    except NmcDeployError as exc:  # e.g. no graded spikes on this target
        return str(exc), relays, stream


def _has_sum(graph: Graph) -> bool:
    """True when some node sums two or more inputs (a residual stream may follow)."""
    return any(len(graph.predecessors(n)) > 1 and not isinstance(node, SpikingSelfAttention)
               for n, node in graph.nodes.items())


# the unshared answer of a program with more expanded synapses is a lower bound, not placed
UNSHARED_PLACEMENT_MAX_SYNAPSES = 10_000_000


def _sharing_forms(result: CompileResult, target: HardwareTarget,
                   sharing: bool) -> WeightSharingForms | None:
    """Both weight-storage answers for a program with shared weights (None without)."""
    program = result.program
    if not any(is_shared(g.weights) for g in program.groups):
        return None
    expanded = int(sum(g.num_synapses for g in program.groups))
    if sharing and expanded > UNSHARED_PLACEMENT_MAX_SYNAPSES:
        bound = -(-expanded * target.weight_bits // target.synapse_memory_bits_per_core)
        other = (f"not placed: {expanded:,} expanded synapses exceed "
                 f"{UNSHARED_PLACEMENT_MAX_SYNAPSES:,} (the most nmc-deploy places one by "
                 f"one); at least {bound:,} cores by synapse memory ({target.weight_bits} "
                 "bits per synapse)")
    else:
        try:
            other = summarize_sharing(partition_program(program, target,
                                                        weight_sharing=not sharing))
        except NmcDeployError as exc:  # e.g. unshared copies need more cores than the target
            other = str(exc)
    forms = {_sharing_mode(sharing): summarize_sharing(result.placement),
             _sharing_mode(not sharing): other}
    weights = int(sum(g.weights.stored if is_shared(g.weights) else g.weights.nnz
                      for g in program.groups))
    return WeightSharingForms(written=_sharing_mode(sharing), weights=weights,
                              synapses=int(sum(g.num_synapses for g in program.groups)),
                              forms={m: forms[m] for m in ("on", "off")})


def compile_graph(graph: Graph, target: HardwareTarget | str, *, low_rank: str = "fused",
                  vth_mant: int | None = None, netx_grid: bool = False,
                  timing: Timing | None = None,
                  weight_sharing: bool | None = None,
                  attention_split: str = "fit", residual: str = "fan-in",
                  placement: str = "greedy", placement_seed: int = 0,
                  activity: Activity | None = None,
                  activity_source: str | None = None) -> CompileResult:
    """Compile ``graph`` (not modified) for ``target``: check the design rules (raises
    :class:`~nmc_deploy.errors.DesignRuleError` before any lowering when one fails), lower,
    schedule, quantize, validate, split attention, partition.

    Parameters
    ----------
    graph : Graph
        The graph IR.
    target : HardwareTarget or str
        The chip (or its name for :func:`~nmc_deploy.targets.load_target`).
    low_rank : {"fused", "relay"}
        How low-rank factor pairs deploy; with such pairs the other form is compiled too,
        for :attr:`CompileResult.low_rank` only (its warnings are not shown).
    vth_mant : int, optional
        Threshold mantissa of every spiking population (an override); default: chosen per
        population (:func:`~.quantize.quantize_program`).
    netx_grid : bool
        Quantize the written form onto the grid lava-dl netx can express
        (:data:`~.netx.NETX_GRID`).
    timing : Timing, optional
        The discretisation; default the graph metadata's (:func:`~.lower.lower_graph`).
    weight_sharing : bool, optional
        Store shared weights once per core (True) or once per token/position (False);
        default the target's ``weight_sharing``. The other mode is placed too, for
        :attr:`CompileResult.weight_sharing`.
    attention_split : {"fit", "head"}
        How attention ops split into core-sized units
        (:func:`~.attention_split.split_attention`).
    residual : {"fan-in", "relay"}
        How a residual stream reaches its readers (:func:`~.lower.lower_graph`); with a
        stream the other form is compiled too (first, and released before the written form
        is built), for :attr:`CompileResult.residual` only.
    placement : {"greedy", "traffic"}
        How the cores are laid out on the chips' meshes (:func:`~.mesh.layout_cores`); the
        traffic-aware layout weighs messages by ``activity``'s firing rates (a simulation of
        the same model; ``activity_source`` names it) or by the prior
        :data:`~.mesh.PRIOR_RATE`, and uses ``placement_seed``.
    """
    target = load_target(target) if isinstance(target, str) else target
    sharing = target.weight_sharing if weight_sharing is None else bool(weight_sharing)
    rules = check_design_rules(graph, target, low_rank=low_rank, weight_sharing=sharing,
                               timing=timing, attention_split=attention_split,
                               residual=residual)
    other_res = next(m for m in RESIDUAL_MODES if m != residual)
    other_costs, relays, other_stream = (_other_residual_form(
        graph, target, other=other_res, low_rank=low_rank, vth_mant=vth_mant, timing=timing,
        sharing=sharing, attention_split=attention_split) if _has_sum(graph)
        else ("", 0, False))
    gc.collect()  # the other form's program and placement (a failed one's traceback too)
    try:
        result = _compile_form(graph, target, low_rank=low_rank, vth_mant=vth_mant,
                               grid=NETX_GRID if netx_grid else LAVA_GRID, timing=timing,
                               weight_sharing=sharing, attention_split=attention_split,
                               residual=residual)
    except CapacityError as exc:  # name the residual form that fits, when one does
        if not isinstance(other_costs, ResidualCosts):
            raise
        raise CapacityError(f"{exc}; --residual {other_res} fits in {other_costs.cores} "
                            "cores") from None
    result = dataclasses.replace(result, placement=layout_cores(
        result.placement, result.program, target, method=placement, activity=activity,
        activity_source=activity_source, seed=placement_seed, weight_sharing=sharing))
    forms = None
    if other_stream or (other_costs and has_residual_stream(result.float_program)):
        costs = {residual: summarize_residual(result.program, result.placement),
                 other_res: other_costs}
        relays = max(relays, len(result.program.metadata.get("residual_relays", ())))
        forms = ResidualForms(written=residual, relays=relays, target=target.name,
                              forms={m: costs[m] for m in RESIDUAL_MODES})
    result = dataclasses.replace(
        result, weight_sharing=_sharing_forms(result, target, sharing), design_rules=rules,
        residual=forms)
    pairs = low_rank_down_nodes(graph)
    if not pairs:
        return result
    other = next(m for m in LOW_RANK_MODES if m != low_rank)
    costs = {low_rank: summarize_form(result.program, result.placement),
             other: _other_form_costs(graph, target, other, vth_mant, timing, sharing,
                                      attention_split, residual)}
    return dataclasses.replace(result, low_rank=LowRankForms(
        written=low_rank, pairs=len(pairs), target=target.name,
        forms={m: costs[m] for m in LOW_RANK_MODES}))
