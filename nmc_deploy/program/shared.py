"""Parts both program levels share: source and population-kind names, the attention op, the readout.

Group sources: a population, :data:`INPUT` (the graded input), :data:`CONST` (a source that
emits 1 at every step of a sample: constants that must reach a synaptic current or start
late), an attention op or a token selector. Population kinds besides "lif" and "threshold":
:data:`RELAY` and :data:`LI` (see :class:`~nmc_deploy.program.program.Population`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["INPUT", "CONST", "RELAY", "LI", "LOW_RANK_MODES", "RESIDUAL_MODES", "AttentionOp",
           "AttentionUnit",
           "ATTENTION_SPLITS", "Readout",
           "SourceKind", "source_kinds", "ProgramBase"]

INPUT = "input"  # source name of the graded input (pixel intensities)
CONST = "const"  # source name of the constant 1 (every step of a sample; 0 between samples)
RELAY = "relay"  # population kind of a graded-payload relay (low-rank factor stage)
LI = "li"  # population kind of a non-spiking leaky integrator whose voltage is an output
LOW_RANK_MODES = ("fused", "relay")  # how low-rank factor pairs are deployed
# how a residual stream reaches its readers (deployment decision 3): one group per stream
# population ("fan-in") or through one graded relay population per stream ("relay")
RESIDUAL_MODES = ("fan-in", "relay")
# how an attention op is split into core-sized units: "fit" packs whole heads into as few
# units as the target's axons allow, "head" gives every head its own unit(s)
ATTENTION_SPLITS = ("fit", "head")


class SourceKind(Enum):
    """What a synapse group's source is; :func:`source_kinds` decides it for every stage."""

    INPUT = "input"  # the graded input (pixel intensities or user integers)
    CONST = "const"  # the constant 1 of every step of a sample
    POPULATION = "population"  # a spiking population's 0/1 spikes (or an LI population)
    RELAY = "relay"  # a relay population's graded payload
    ATTENTION = "attention"  # an attention op's integer counts
    SELECTOR = "selector"  # a token selector's gated residual stream


def source_kinds(program) -> dict[str, SourceKind]:
    """Name -> :class:`SourceKind` of every possible group source of ``program`` (a
    :class:`~nmc_deploy.program.float_program.FloatProgram` or a fixed-point
    :class:`~nmc_deploy.program.program.Program`): the one place that decides it."""
    kinds = {INPUT: SourceKind.INPUT, CONST: SourceKind.CONST}
    kinds.update((p.name, SourceKind.RELAY if p.kind == RELAY else SourceKind.POPULATION)
                 for p in program.populations)
    kinds.update((op.name, SourceKind.ATTENTION) for op in program.attention)
    kinds.update((t.name, SourceKind.SELECTOR) for t in program.token_selects)
    return kinds


@dataclass(frozen=True)
class AttentionUnit:
    """The part of an attention op one core computes: heads ``[head_start, head_stop)``,
    query tokens ``[q_start, q_stop)``, key tokens ``[k_start, k_stop)``. Per step::

        C[h, :, i] (partial) = sum_{j in keys} (q_{h,i} . k_{h,j}) v_{h,j}    i in queries

    Units of one op with the same key range cover disjoint outputs; the units of different
    key ranges add their (weighted) partial counts in the target neurons' synaptic input.
    Costs (per core): ``in_axons`` one per q neuron of its queries and k, v neuron of its
    keys; ``out_axons`` one graded output per (head dim, query) neuron; ``ops_per_step``
    the most accumulate operations of one step (scores plus score-weighted values);
    ``state_bits`` the score buffer (``nq x nk`` per head, counts up to the head width)
    and the output buffer (``graded_bits`` per output).
    """

    op: str
    head_start: int
    head_stop: int
    q_start: int
    q_stop: int
    k_start: int
    k_stop: int
    head_dim: int

    @property
    def name(self) -> str:
        return (f"{self.op}[h{self.head_start}:{self.head_stop},q{self.q_start}:{self.q_stop},"
                f"k{self.k_start}:{self.k_stop}]")

    @property
    def heads(self) -> int:
        return self.head_stop - self.head_start

    @property
    def in_axons(self) -> int:
        nq, nk = self.q_stop - self.q_start, self.k_stop - self.k_start
        return self.heads * self.head_dim * (nq + 2 * nk)

    @property
    def out_axons(self) -> int:
        return self.heads * self.head_dim * (self.q_stop - self.q_start)

    @property
    def ops_per_step(self) -> int:
        nq, nk = self.q_stop - self.q_start, self.k_stop - self.k_start
        return 2 * self.heads * nq * nk * self.head_dim

    def state_bits(self, graded_bits: int) -> int:
        nq, nk = self.q_stop - self.q_start, self.k_stop - self.k_start
        score_bits = max(1, int(self.head_dim).bit_length())
        return self.heads * nq * nk * score_bits + self.out_axons * graded_bits

    def outputs(self, dim: int, n_tokens: int) -> "np.ndarray":
        """Flat (dim, n_tokens)-layout indices of the op outputs this unit computes."""
        return self.reads(self.q_start, self.q_stop, n_tokens)

    def reads(self, lo: int, hi: int, n_tokens: int) -> "np.ndarray":
        """Flat (dim, n_tokens) indices of this unit's heads at tokens ``[lo, hi)`` (the q
        neurons it reads for its queries, the k and v neurons for its keys)."""
        rows = np.arange(self.head_start * self.head_dim, self.head_stop * self.head_dim)
        return (rows[:, None] * n_tokens + np.arange(lo, hi)).ravel()

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in _UNIT_FIELDS}


_UNIT_FIELDS = ("op", "head_start", "head_stop", "q_start", "q_stop", "k_start", "k_stop",
                "head_dim")


@dataclass(frozen=True)
class AttentionOp:
    """Per step and head h: ``C_h = (Q_h K_h^T) V_h`` on binary (dim, n_tokens) spike tensors.

    The op is a synapse-like stage: its integer output drives exactly one group of kind
    "attention" whose weight is a multiple of the identity. ``units``: how it is split
    over cores (:class:`AttentionUnit`, from
    :func:`~nmc_deploy.compile.attention_split.split_attention`); empty before the split
    and for ops run on a host core.
    """

    name: str
    q: str
    k: str
    v: str
    num_heads: int
    dim: int
    n_tokens: int
    units: tuple[AttentionUnit, ...] = ()

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def max_count(self) -> int:
        """Largest output count of one neuron and step: ``n_tokens`` times the head width."""
        return self.n_tokens * (self.dim // self.num_heads)

    @property
    def key_blocks(self) -> tuple[tuple[int, int], ...]:
        """The key-token ranges of the units (one ``(0, n_tokens)`` when keys are not split)."""
        blocks = sorted({(u.k_start, u.k_stop) for u in self.units})
        return tuple(blocks) or ((0, self.n_tokens),)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "q", "k", "v", "num_heads", "dim",
                                            "n_tokens")}
        if self.units:
            d["units"] = [u.to_json() for u in self.units]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "AttentionOp":
        d = dict(d)
        units = tuple(AttentionUnit(**{k: (str(u[k]) if k == "op" else int(u[k]))
                                       for k in _UNIT_FIELDS}) for u in d.pop("units", ()))
        return cls(**d, units=units)


@dataclass(frozen=True)
class Readout:
    """Host-side readout of the graph Output. Per step ``t``::

        y[t] = scale * (sum_src W_src @ a_src[t] + bias)
        output[t] = y[t]  or, with ``cumulative``,  sum_{t' <= t} y[t']

    ``a_src`` is a spiking population's 0/1 spikes, a token selector's stream or an "li"
    population's voltage in float units (fixed point: ``v / scale`` of the population).
    ``logits = sum_t y[t] = scale * (sum_src W_src @ counts_src + steps * bias)`` with
    ``counts`` the sums over a sample's T steps; ``scale = r dt`` of an Integrator
    (``cumulative``: NIR ``I`` integrates), 1 when the Output reads its sources directly.
    """

    weights: dict[str, sp.csr_matrix]
    bias: np.ndarray
    scale: float
    num_outputs: int
    cumulative: bool = False


@dataclass(frozen=True)
class ProgramBase:
    """The fields both program levels share, in this order (positional construction).

    :class:`~nmc_deploy.program.float_program.FloatProgram` holds float populations, groups
    and token selectors; the fixed-point :class:`~nmc_deploy.program.program.Program` their
    quantized counterparts. Sources are named as :func:`source_kinds` says.
    """

    populations: tuple  # FloatPopulation or Population, in program order
    groups: tuple  # FloatGroup or SynapseGroup
    attention: tuple[AttentionOp, ...]
    readout: Readout
    input_shape: tuple[int, ...]
    input_levels: int  # the integer intensity that stands for 1.0 at the input
    time_steps: int
    metadata: dict[str, Any] = field(default_factory=dict)
    token_selects: tuple = ()  # FloatTokenSelect or TokenSelectOp

    def source_kinds(self) -> dict[str, SourceKind]:
        """Name -> kind of every group source (:func:`source_kinds`)."""
        return source_kinds(self)
