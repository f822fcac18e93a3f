"""``split_attention``: every spiking self-attention op into units that each fit one core.

Deployment decision 7 (docs/architecture.md, "Attention units"): an attention op runs on
cores that read q, k and v spikes through input axons and send graded counts. One unit
holds whole heads while ``3 x heads x head_dim x n_tokens`` input axons fit a core; a head
that does not fit is split into blocks of query tokens (each block reads every key), and a
head whose keys and values alone exceed the axons is split into blocks of key tokens too.
Units of one key block compute disjoint outputs; the partial counts of different key blocks
are weighted and shifted by each unit (like Lava's per-process ``weight_exp``) and add in
the synaptic input of the attention neurons: the reference simulator and the Lava backend
both compute exactly this sum (``nmc_deploy.simulate``).

``policy``: "fit" (default) packs as many whole heads per unit as fit, "head" gives every
head its own unit(s), as SpikeAttention maps onto Loihi 2 per head in the literature.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import CapacityError, NmcDeployError
from ..program import ATTENTION_SPLITS, AttentionOp, AttentionUnit, Program
from ..targets import HardwareTarget

__all__ = ["plan_attention_units", "split_attention"]


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """``n`` items in ``ceil(n / size)`` contiguous, balanced blocks."""
    parts = np.array_split(np.arange(n), math.ceil(n / size))
    return [(int(p[0]), int(p[-1]) + 1) for p in parts]


def plan_attention_units(op: AttentionOp, max_in_axons: int, max_out_axons: int,
                         policy: str = "fit") -> tuple[AttentionUnit, ...]:
    """The units of ``op`` for cores with ``max_in_axons`` / ``max_out_axons`` (pure).

    Raises :class:`CapacityError` when not even one query and one key token of one head fit.
    """
    if policy not in ATTENTION_SPLITS:
        raise NmcDeployError(f"attention split '{policy}': unknown; choose one of "
                             f"{', '.join(ATTENTION_SPLITS)}")
    dh, heads, n = op.head_dim, op.num_heads, op.n_tokens
    per_head_in, per_head_out = 3 * dh * n, dh * n
    fit_heads = min(max_in_axons // per_head_in, max_out_axons // per_head_out, heads)
    unit = lambda h0, h1, q, k: AttentionUnit(op.name, h0, h1, q[0], q[1], k[0], k[1], dh)  # noqa: E731
    if fit_heads >= 1:
        size = 1 if policy == "head" else fit_heads
        return tuple(unit(h0, h1, (0, n), (0, n)) for h0, h1 in _blocks(heads, size))
    # one head per unit; blocks of query tokens reading all keys
    nq = min((max_in_axons - 2 * dh * n) // dh, max_out_axons // dh)
    if nq >= 1:
        return tuple(unit(h, h + 1, q, (0, n)) for h in range(heads) for q in _blocks(n, nq))
    # keys and values alone exceed the axons: blocks of query and key tokens
    nq = min(max_in_axons // (3 * dh), max_out_axons // dh, n)
    if nq < 1:
        raise CapacityError(f"{op.name}: attention unit input axons ({3 * dh}, one query and "
                            f"one key token of one head) exceed max_in_axons_per_core "
                            f"({max_in_axons}); reduce the head width (more heads)")
    nk = min((max_in_axons // dh - nq) // 2, n)
    return tuple(unit(h, h + 1, q, k) for h in range(heads) for q in _blocks(n, nq)
                 for k in _blocks(n, nk))


def split_attention(program: Program, target: HardwareTarget,
                    policy: str = "fit") -> Program:
    """``program`` with every attention op's :attr:`~AttentionOp.units` planned for
    ``target`` (a new Program; ops run on a host core, without graded spikes, get none)."""
    if not program.attention:
        return program
    if target.graded_spike_bits <= 0:  # attention runs on the embedded x86 cores
        ops = tuple(dataclasses.replace(op, units=()) for op in program.attention)
    else:
        ops = tuple(dataclasses.replace(op, units=plan_attention_units(
            op, target.max_in_axons_per_core, target.max_out_axons_per_core, policy))
            for op in program.attention)
    return dataclasses.replace(program, attention=ops)
