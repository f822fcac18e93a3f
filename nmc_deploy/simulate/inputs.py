"""What a simulation runs on: user input files (``.npy`` or NIRData), the ``--record`` path,
and input arrays as the (B, T, n_in) sequences the simulators step through.

File problems are one line (:class:`~nmc_deploy.errors.InputFileError`) and are found
before any simulation work.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..checks import input_file, output_file
from ..errors import InputFileError, SimulationError

__all__ = ["as_input_sequence", "check_input_steps", "load_user_inputs", "load_user_labels",
           "check_record_path", "check_outputs", "simulation_inputs"]


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


def load_user_inputs(path: Path, program) -> np.ndarray:
    """User input for a program: ``.npy`` images ``(B, *input_shape)`` or sequences
    ``(B, T, *input_shape)`` (a flat last axis is reshaped), or a NIRData file whose node named
    like the graph's Input holds ``TimeGriddedData``/``EventData`` on the program's dt.
    Fixed point needs integers (spikes or integer currents)."""
    path = input_file(path, "give a .npy array or a NIRData file", what="input file")
    shape = tuple(program.input_shape)
    n_in = int(np.prod(shape))
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputFileError(f"{path}: not a readable .npy array ({type(exc).__name__})") \
                from None
    else:
        from ..nirio import read_nirdata_input

        x = read_nirdata_input(path, program.metadata.get("input_name", "input"),
                               float(program.metadata.get("dt", 1.0)))
    if tuple(x.shape[1:]) == shape or tuple(x.shape[2:]) == shape:
        pass
    elif x.ndim == 3 and x.shape[2] == n_in:
        x = x.reshape(x.shape[0], x.shape[1], *shape)
    else:
        raise InputFileError(f"{path}: input shape {tuple(x.shape)} fits neither (B, {shape}) "
                             f"nor (B, T, {shape}); reshape the array")
    return check_input_values(path, x)


def check_input_values(path, x: np.ndarray) -> np.ndarray:
    """``x`` as int64 if it holds at least one sample and step of finite integers that fit a
    graded message (:data:`~nmc_deploy.loihi.constants.GRADED_BITS` bits, signed)."""
    from ..checks import finite
    from ..loihi.constants import GRADED_BITS

    hint = "give spikes (0/1) or integer currents"
    if x.dtype.kind == "b":
        x = x.astype(np.int64)
    x = finite(x, str(path), "input", hint)
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise InputFileError(f"{path}: input has no samples or no time steps (shape "
                             f"{tuple(x.shape)}); give at least one sample")
    if not np.all(x == np.round(x)):
        raise InputFileError(f"{path}: fixed-point simulation needs integer inputs (spikes or "
                             "integer currents); scale and round the array first")
    limit = 2 ** (GRADED_BITS - 1) - 1
    big = np.abs(x.astype(np.float64)).max()
    if big > limit:
        raise InputFileError(f"{path}: input value ({big:.0f}) exceeds a {GRADED_BITS}-bit "
                             f"graded message ({limit}); {hint} in range")
    return x.astype(np.int64)


def _read_labels(path: Path) -> np.ndarray:
    """The labels array of a ``.npy`` or NIRData file (one line when unreadable)."""
    input_file(path, "give a .npy array of integer labels", what="labels file")
    if path.suffix != ".npy":
        from ..nirio import read_nirdata_labels

        return read_nirdata_labels(path)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputFileError(f"{path}: not a readable .npy array ({type(exc).__name__})") \
            from None


def load_user_labels(path: Path, samples: int, limit: int | None = None,
                     classes: int | None = None, y=None) -> np.ndarray:
    """Integer labels ``(B,)`` of a user input file, from a ``.npy`` array or a NIRData file
    (node "labels", :func:`~nmc_deploy.nirio.read_nirdata_labels`), or the array ``y``
    already read; the first ``limit`` when ``--samples`` cut the inputs; their number must
    equal ``samples`` and, with ``classes``, each lie in ``[0, classes)``."""
    path = Path(path)
    if y is None:
        y = _read_labels(path)
    y = np.asarray(y).ravel() if np.asarray(y).ndim == 2 and 1 in np.shape(y) else np.asarray(y)
    if y.dtype.kind == "u" and y.size and y.max() > np.iinfo(np.int64).max:
        raise InputFileError(f"{path}: label ({y.max()}) outside the program's outputs; give "
                             "class indices")
    integral = y.dtype.kind in "iu" or (
        y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y))))
    if y.ndim != 1 or not integral:
        raise InputFileError(f"{path}: labels must be a 1-D array of integers, got shape "
                             f"{tuple(y.shape)} of {y.dtype}")
    y = y.astype(np.int64)[:limit] if limit is not None else y.astype(np.int64)
    if len(y) != samples:
        raise InputFileError(f"{path}: labels ({len(y)}) differ in number from the input "
                             f"samples ({samples}); give one label per sample")
    if classes is not None and len(y) and (y.min() < 0 or y.max() >= classes):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise InputFileError(f"{path}: label ({bad}) outside the program's {classes} outputs "
                             f"(0 to {classes - 1}); give class indices")
    return y


def check_outputs(build_dir: Path, record: Path | None, inputs=()) -> Path | None:
    """Before a simulation: the build directory it writes its results into is writable, and
    ``record`` (if given; :func:`check_record_path`) is neither an input nor a build file."""
    from ..checks import output_dir

    output_dir(build_dir, option="build directory")
    if record is None:
        return None
    return check_record_path(record, (*inputs, *Path(build_dir).iterdir()))


def check_record_path(record: Path, inputs=()) -> Path:
    """Check that ``record`` can be written (its directory is created) and is none of the
    run's ``inputs``; return it as a Path."""
    record = output_file(record, inputs, option="--record")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{record}: cannot create its directory ({exc.strerror}); "
                             "choose another --record path") from None
    if not os.access(record.parent, os.W_OK):
        raise InputFileError(f"{record.parent}: not writable; choose another --record path")
    return record


def simulation_inputs(program, inputs, samples, dataset, data_path, labels=None, *,
                      log=None):
    """``(x, y, name)``: a user input file (labels from ``labels``, else from a NIRData
    input's "labels" node, else none) or the test split of a data set; ``log`` receives
    the line saying where NIRData labels came from."""
    from ..data import load_dataset

    if labels is not None and inputs is None:
        raise InputFileError(f"{labels}: --labels goes with --input (a data set brings its "
                             "own labels); add --input x.npy")
    if inputs is not None:
        x = load_user_inputs(inputs, program)
        x = x[:samples] if samples is not None else x
        y = None if labels is None else load_user_labels(
            labels, len(x), samples, program.readout.num_outputs)
        if labels is None and Path(inputs).suffix != ".npy":  # a NIRData "labels" node
            from ..nirio import read_nirdata_labels

            found = read_nirdata_labels(inputs, required=False)
            if found is not None:
                y = load_user_labels(inputs, len(x), samples, program.readout.num_outputs,
                                     y=found)
                if log is not None:
                    log(f"labels: the 'labels' node of {inputs} ({len(y)} samples)")
        return x, y, str(inputs)
    name = dataset or program.metadata.get("dataset", "digits")
    data = load_dataset(name, data_path)
    if data.levels != program.input_levels:
        raise InputFileError(f"dataset '{name}': intensity levels ({data.levels}) differ "
                             f"from the program's input_levels ({program.input_levels})")
    x, y = data.test_subset(samples)
    return x, y, name
