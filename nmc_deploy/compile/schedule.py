"""Schedule a float program's pipeline: depths, synaptic delays and the sample gap (pure).

Every population is one synapse stage deeper than its deepest source::

    depth(input) = depth(CONST) = 0
    depth(pop) = 1 + max depth of its sources     (its own recurrent group does not count)
    depth(attention op) = depth of q (= of k = of v)
    depth(token selector) = depth_in + T - 1,  depth_in = 1 + max depth of its inputs

and a group from a shallower source waits ``delay = depth(target) - 1 - depth(source) + lag``
steps, so all inputs of a population belong to the same sample step, lagged ones ``lag``
steps earlier (deployment decision 1); a self-recurrent group (lag 1) has delay 0: Lava's
Sparse delivers a spike one step later. Token selector inputs arrive aligned at
``depth_in``. The sample gap (idle steps between samples) is the largest lag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..errors import LoweringError
from ..program import CONST, INPUT, FloatGroup, FloatProgram, SourceKind

__all__ = ["Schedule", "schedule_program"]


@dataclass(frozen=True)
class Schedule:
    """The pipeline schedule of a :class:`FloatProgram` (module docstring)."""

    depths: Mapping[str, int]  # population, token selector (output), attention op read by one
    depths_in: Mapping[str, int]  # token selector -> depth at which its inputs arrive
    sample_gap: int  # idle steps between samples: the largest group lag

    def depth_of(self, source: str) -> int:
        """Depth of a group source (0 for the input and CONST)."""
        return 0 if source in (INPUT, CONST) else self.depths[source]

    def delay(self, group: FloatGroup) -> int:
        """Synaptic delay of ``group`` (into a population or a token selector)."""
        if group.target in self.depths_in:
            return self.depths_in[group.target] - 1 - self.depth_of(group.source)
        return self.depths[group.target] - 1 - self.depth_of(group.source) + group.lag


def _check_sources(p, gs, known, ops, sels) -> None:
    """A population has inputs, reads itself only with a lag, and comes after its sources."""
    if not gs:
        raise LoweringError(f"{p.name}: population has no incoming synapses")
    for g in gs:
        if g.source == p.name and g.lag < 1:
            raise LoweringError(f"{g.name}: a population reading its own output needs a "
                                "lag of at least one step")
        if g.source not in (INPUT, CONST, p.name) and g.source not in ops and \
                g.source not in sels and g.source not in known:
            raise LoweringError(f"{g.name}: source '{g.source}' comes after its target in "
                                "the schedule (a cycle through several populations)")


def schedule_program(fp: FloatProgram) -> Schedule:
    """Depths and delays of ``fp`` (not modified); raises :class:`LoweringError` when the
    program cannot be pipelined (module docstring)."""
    if fp.token_selects and any(g.lag for g in fp.groups):
        raise LoweringError("program: token selectors need back-to-back samples, but Delay "
                            "nodes or recurrence need idle steps between samples; use one "
                            "or the other")
    ops = {op.name: op for op in fp.attention}
    sels = {t.name: t for t in fp.token_selects}
    incoming: dict[str, list] = {p.name: [] for p in fp.populations}
    for g in fp.groups:
        incoming[g.target].append(g)
    depths: dict[str, int] = {}
    depths_in: dict[str, int] = {}

    kinds = fp.source_kinds()

    def src_depth(src: str) -> int:
        kind = kinds[src]
        if kind in (SourceKind.INPUT, SourceKind.CONST):
            return 0
        if kind is SourceKind.SELECTOR:
            return selector_depth(src)
        if kind is SourceKind.ATTENTION:
            op = ops[src]
            ds = {depths[op.q], depths[op.k], depths[op.v]}
            if len(ds) != 1:
                raise LoweringError(f"{src}: q, k and v arrive at different pipeline depths "
                                    f"({sorted(ds)}); low-rank relays add one step each: "
                                    "factorize q, k and v alike or use low_rank='fused'")
            depths[src] = ds.pop()
        return depths[src]

    def selector_depth(name: str) -> int:
        if name not in depths:
            t = sels[name]
            depths_in[name] = 1 + max(src_depth(g.source) for g in t.inputs)
            depths[name] = depths_in[name] + fp.time_steps - 1
        return depths[name]

    for p in fp.populations:  # populations come in topological order
        gs = incoming[p.name]
        _check_sources(p, gs, depths, ops, sels)
        depths[p.name] = 1 + max((src_depth(g.source) for g in gs if g.source != p.name),
                                 default=0)
        if p.gate:
            selector_depth(p.gate)
    for t in fp.token_selects:
        selector_depth(t.name)
    return Schedule(depths=depths, depths_in=depths_in,
                    sample_gap=max((g.lag for g in fp.groups), default=0))
