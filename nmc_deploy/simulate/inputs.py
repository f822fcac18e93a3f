"""Simulator inputs: images or sequences as a (B, T, n_in) array, checked against the program."""
from __future__ import annotations

import numpy as np

from ..errors import SimulationError

__all__ = ["as_input_sequence", "check_input_steps"]


def as_input_sequence(program, inputs, *, integer: bool = True) -> np.ndarray:
    """``inputs`` as a (B, T, n_in) array: a sequence ``(B, T, *input_shape)`` as given,
    images ``(B, *input_shape)`` (or anything with ``n_in`` values per sample) repeated for
    the program's ``time_steps``. ``integer``: values must be whole numbers (int64 result);
    otherwise float64."""
    x = np.asarray(inputs)
    shape = tuple(int(v) for v in program.input_shape)
    n_in = int(np.prod(shape))
    if x.ndim == len(shape) + 2 and tuple(x.shape[2:]) == shape:
        seq = x.reshape(x.shape[0], x.shape[1], n_in)
    elif x.ndim >= 1 and x.shape[0] and x.size == x.shape[0] * n_in:
        seq = np.repeat(x.reshape(x.shape[0], 1, n_in), int(program.time_steps), axis=1)
    else:
        raise SimulationError(f"inputs: shape {x.shape} is neither (B, T, *{shape}) nor "
                              f"(B, *{shape}); give a sequence or images of the input shape")
    if seq.shape[1] < 1:
        raise SimulationError("inputs: the sequence has no time steps")
    if not integer:
        return seq.astype(np.float64)
    if seq.dtype.kind == "f" and not np.all(seq == np.round(seq)):
        raise SimulationError("inputs: the fixed-point program needs integer inputs (spikes "
                              "0/1 or integer currents); got fractional values")
    return seq.astype(np.int64)


def check_input_steps(program, seq: np.ndarray) -> None:
    """Refuse a sequence whose T differs from the one the token selectors were compiled for."""
    if program.token_selects and seq.shape[1] != program.time_steps:
        raise SimulationError(f"inputs: {seq.shape[1]} time steps, but the token selectors "
                              f"were compiled for {program.time_steps}")
