"""Checks at the doors: every file a stage reads or writes, and the values it reads, are
checked before any work starts; a problem is one line naming the file, the field and the fix.

* :func:`input_file`: an existing, regular, non-empty file of bounded size, checked with
  ``os.stat`` alone: a FIFO, a device or a directory is refused without being opened (a FIFO
  would block the reader forever, ``/dev/zero`` never ends).
* :func:`output_file` / :func:`output_dir`: where a stage will write: not a directory (or not a
  file), not under a regular file, not a FIFO or device, and never one of the stage's inputs.
* :func:`finite` / :func:`number`: non-finite arrays and numbers outside their range.
* :func:`newer_version`: the one message of a file written by a newer nmc-deploy.

Only the standard library and numpy (imported lazily) are used.
"""
from __future__ import annotations

import math
import os
import stat
from pathlib import Path

from .errors import InputFileError, NmcDeployError

__all__ = ["input_file", "output_file", "output_dir", "finite", "number", "newer_version",
           "read_json", "MAX_TEXT_BYTES", "TARGET_RANGES", "target_range",
           "stage_options"]

#: Largest JSON/TOML file read whole into memory (the program.json of Spikformer-8-512 is a few
#: MB; a bigger file is not one nmc-deploy wrote).
MAX_TEXT_BYTES = 256 << 20


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def input_file(path, hint: str, *, error=InputFileError, max_bytes: int | None = None,
               what: str = "file") -> Path:
    """``path`` if it is an existing regular file that is not empty (and at most
    ``max_bytes``); else ``error`` (one line ending in ``hint``). Never opens the file."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file; {hint}") from None
    except NotADirectoryError:
        raise error(f"{path}: a part of the path is a regular file, not a directory; "
                    f"{hint}") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror}); {hint}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {_kind(st.st_mode)}, not a regular {what}; {hint}")
    if st.st_size == 0:
        raise error(f"{path}: is empty; {hint}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: size ({st.st_size:,} bytes) exceeds the limit of a {what} "
                    f"({max_bytes:,} bytes); {hint}")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: not readable (permission denied); {hint}")
    return path


def read_json(path, hint: str, *, error=InputFileError, what: str = "JSON file"):
    """The JSON value of a checked :func:`input_file` (size at most :data:`MAX_TEXT_BYTES`;
    NaN and Infinity literals refused); one line on any problem."""
    import json

    path = input_file(path, hint, error=error, max_bytes=MAX_TEXT_BYTES, what=what)

    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        text = str(exc).splitlines()[0][:80] if str(exc) else ""
        raise error(f"{path}: not a readable {what} ({type(exc).__name__}: {text}); "
                    f"{hint}") from None
    bad = _non_finite(data, "")
    if bad is not None:
        raise error(f"{path}: {bad[0] or 'the value'} is {bad[1]}, not a finite number; {hint}")
    return data


def _non_finite(value, where: str):
    """``(JSON path, value)`` of the first NaN or Infinity in a parsed JSON value."""
    stack = [(where, value)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where, value
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v)
                         for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable directory."""
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            break
        parent = parent.parent
    if not parent.is_dir():
        raise InputFileError(f"{path}: '{parent}' is not a directory; choose another "
                             f"{option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputFileError(f"{path}: directory '{parent}' is not writable; choose another "
                             f"{option}")


def _not_an_input(path: Path, inputs, option: str) -> None:
    for inp in inputs:
        if inp is not None and (_same(path, Path(inp)) or
                                path.absolute() == Path(inp).absolute()):
            raise InputFileError(f"{path}: is also an input of this command, writing it would "
                                 f"destroy the input; choose another {option}")


def _check_name(path: Path, option: str) -> None:
    """Refuse a name the file system cannot hold with the temporary suffix of an atomic
    write (:mod:`nmc_deploy.fileio`: ``.<name>.<pid>.<12 hex>.tmp<ext>``)."""
    if len(os.fsencode(path.name)) > _NAME_MAX - 48:
        raise InputFileError(f"{str(path)[:60]}...: name length ({len(os.fsencode(path.name))} "
                             f"bytes) exceeds the limit ({_NAME_MAX - 48}) of an output file "
                             f"name; choose a shorter {option}")
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise InputFileError(f"{str(path)[:80]}: cannot be used ({exc.strerror}); choose "
                             f"another {option}") from None


_NAME_MAX = 255  # bytes of one path component on Linux file systems


def output_file(path, inputs=(), *, option: str = "-o") -> Path:
    """``path`` as a file a stage may write (atomically replaced): not an existing directory,
    FIFO or device, not under a regular file, and none of ``inputs``."""
    path = Path(path)
    _check_name(path, option)
    if path.exists() or path.is_symlink():
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise InputFileError(f"{path}: is {_kind(mode)}; give a file name for {option}")
    _not_an_input(path, inputs, option)
    _check_parent(path, option)
    return path


def output_dir(path, inputs=(), *, option: str = "-o") -> Path:
    """``path`` as a directory a stage may write into: not an existing file, a writable
    directory if it exists, not under a regular file and none of ``inputs``."""
    path = Path(path)
    _check_name(path, option)
    if path.exists() and not path.is_dir():
        raise InputFileError(f"{path}: exists and is not a directory; choose another {option}")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise InputFileError(f"{path}: directory is not writable; choose another {option}")
    _not_an_input(path, inputs, option)
    _check_parent(path, option)
    return path


def finite(values, where: str, field: str, hint: str = "", *, error=InputFileError):
    """Refuse an array (or number) with NaN or infinite entries, or that is not real numeric
    (strings, objects, complex numbers)."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise error(f"{where}: {field} holds {arr.dtype} values, not real numbers; "
                    f"{hint or 'store real numbers'}")
    if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.ravel()))
        raise error(f"{where}: {field} has {len(bad)} non-finite value(s) ({arr.ravel()[bad[0]]} "
                    f"at index {int(bad[0])}); {hint or 'replace NaN and Inf by finite numbers'}")
    return arr


def number(value, where: str, field: str, *, lo=None, hi=None, integer: bool = False,
           lo_open: bool = False, hint: str = "", error=NmcDeployError):
    """``value`` as a finite int (``integer``) or float in ``[lo, hi]`` (``(lo, hi]`` with
    ``lo_open``); else one line in the project's form."""
    ok_type = (isinstance(value, int) if integer else isinstance(value, (int, float))) \
        and not isinstance(value, bool)
    if not ok_type and not integer and hasattr(value, "dtype") and value.dtype.kind in "iuf":
        value, ok_type = float(value), True
    if not ok_type and integer and hasattr(value, "dtype") and value.dtype.kind in "iu":
        value, ok_type = int(value), True
    if not ok_type:
        raise error(f"{where}: {field} ({value!r}) is not {'an integer' if integer else 'a number'}"
                    f"; {hint or 'give a number'}")
    if not integer and not math.isfinite(value):
        raise error(f"{where}: {field} ({value}) is not finite; {hint or 'give a finite number'}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise error(f"{where}: {field} ({value}) is below its minimum "
                    f"({'above ' if lo_open else ''}{lo}); {hint or 'give a larger value'}")
    if hi is not None and value > hi:
        raise error(f"{where}: {field} ({value}) exceeds its limit ({hi}); "
                    f"{hint or 'give a smaller value'}")
    return value


def newer_version(where: str, version, supported: int, *, error=InputFileError) -> None:
    """Refuse a file format version this code cannot read: newer ones ask for an upgrade."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise error(f"{where}: format version ({version!r}) is not a positive integer; the file "
                    "is corrupt, write it again")
    if version > supported:
        raise error(f"{where}: format version ({version}) exceeds this nmc-deploy's "
                    f"({supported}): written by a newer nmc-deploy; upgrade (pip install -U "
                    "nmc-deploy)")
    if version != supported:
        raise error(f"{where}: format version ({version}) is older than {supported}; write the "
                    "file again with this nmc-deploy")


# Target fields the simulators implement as constants (nmc_deploy.loihi.constants, Lava's
# PyLifModelBitAcc and Sparse): a target may not change them (the value would be ignored),
# and fields bounded by them. (low, high) per dotted key; tests/test_checks.py ties these
# numbers to LAVA_LIF / LAVA_SYNAPSE.
TARGET_RANGES = {
    "fixed_point.weight_bits": (2, 8),  # Sparse: at most 8 bits; 1 bit holds no magnitude
    "fixed_point.state_bits": (24, 24),  # u, v: 24 bits (LAVA_LIF.uv_bits)
    "fixed_point.threshold_mant_bits": (17, 17),  # LAVA_LIF.vth_bits
    "fixed_point.decay_bits": (12, 12),  # LAVA_LIF.decay_shift
    "fixed_point.bias_mant_bits": (13, 13),  # -4096..4095
    "fixed_point.bias_exp_max": (0, 7),  # LAVA_LIF.bias_exp_max
    "fixed_point.graded_spike_bits": (0, 24),  # GRADED_BITS
    "fixed_point.max_synaptic_delay": (0, 1_000_000),  # the longest simulation
    "synapse_memory.index_bits_max": (0, 32),
}
_COUNT_MAX = 2 ** 31 - 1  # every other integer: counts of neurons, axons, cores, chips, bits


def target_range(where: str, dotted: str, value, minimum, error=NmcDeployError) -> None:
    """Refuse a target value (a number or a grid of them) outside its range: the field's
    minimum, :data:`TARGET_RANGES`, at most ``2**31 - 1`` for integers."""
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, bool):
        return
    lo, hi = TARGET_RANGES.get(dotted, (minimum, _COUNT_MAX if isinstance(values[0], int)
                                        else math.inf))
    lo = max(lo, minimum)
    for v in values:
        if v < lo:
            raise error(f"{where}: {dotted} ({value}) is below its minimum ({lo})")
        if v > hi:
            fixed = " (the simulators implement this width only)" if lo == hi else ""
            raise error(f"{where}: {dotted} ({value}) exceeds its limit ({hi}){fixed}; give "
                        f"a value in {lo}..{hi}")


def stage_options(*, epochs=None, dt=None, vth_mant=None, samples=None, lava_samples=None,
                  out=None, inputs=(), directory: bool = False,
                  where: str = "options") -> None:
    """One line for an option value outside its range, or an output path ``out`` (a
    ``directory`` or a file) that cannot be written or is one of ``inputs`` (before any
    work)."""
    if out is not None:
        (output_dir if directory else output_file)(out, inputs)
    if epochs is not None:
        number(epochs, where, "--epochs", lo=1, hi=100_000, integer=True)
    if dt is not None:
        number(dt, where, "--dt", lo=0, lo_open=True, hi=3600.0,
               hint="give the time step in seconds, e.g. 1e-3")
    if vth_mant is not None:
        number(vth_mant, where, "--vth-mant", lo=1, hi=2 ** 17 - 1, integer=True,
               hint="the threshold mantissa is a 17-bit register (1..131071)")
    if samples is not None:
        number(samples, where, "--samples", lo=1, integer=True)
    if lava_samples is not None:
        number(lava_samples, where, "--lava-samples", lo=1, integer=True)
