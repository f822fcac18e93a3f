"""Check a quantized program against what the chip and the pipeline can run (pure).

After :func:`~.quantize.quantize_program`: gated token neurons reset to zero and are
computed after their selector's decision; an attention op's output group is one weight per
neuron and needs no delay (attention units have no delay line); every synaptic delay fits
the target's ``max_synaptic_delay``. Capacity per core is :func:`~.partition.partition_program`'s.
"""
from __future__ import annotations

import numpy as np

from ..errors import CapacityError, LoweringError
from ..program import Program
from ..targets import HardwareTarget
from .quantize import default_target

__all__ = ["validate_program"]


def _check_gate(program: Program, p) -> None:
    if p.reset_subtract:
        raise LoweringError(f"{p.name}: gated by token selector '{p.gate}' with "
                            "subtractive reset; gated token neurons support reset to "
                            "zero only; compile with --reset zero")
    gate = program.token_select(p.gate)
    if p.depth <= gate.depth:
        raise LoweringError(f"{p.name}: gated by '{p.gate}' but computed before its "
                            f"decision (depth {p.depth} <= {gate.depth})")


def _check_group(g, p, ops: set, max_delay: int) -> None:
    if g.source in ops:
        w = g.weights
        if w.nnz != w.shape[0] or np.count_nonzero(w.diagonal()) != w.shape[0]:
            raise LoweringError(f"{g.name}: attention output weights must be diagonal "
                                "(one weight per output neuron)")
        if g.delay:
            raise LoweringError(f"{g.name}: the attention output would need a delay of "
                                f"{g.delay} steps to align with the other inputs of "
                                f"{p.name}; attention units have no delay line")
    if g.delay > max_delay:
        raise CapacityError(f"{g.name}: synaptic delay ({g.delay}) exceeds "
                            f"max_synaptic_delay ({max_delay}); the model is too deep "
                            "for residual alignment by delays")


def validate_program(program: Program, target: HardwareTarget | None = None) -> Program:
    """Raise on the first population or group ``program`` cannot run with (module
    docstring); returns ``program`` itself (not modified). ``target`` defaults to
    :func:`~.quantize.default_target` (Loihi 2)."""
    target = default_target() if target is None else target
    ops = {op.name for op in program.attention}
    incoming: dict[str, list] = {p.name: [] for p in program.populations}
    for g in program.groups:
        incoming[g.target].append(g)
    for p in program.populations:
        if p.gate:
            _check_gate(program, p)
        for g in incoming[p.name]:
            _check_group(g, p, ops, target.max_synaptic_delay)
    return program
