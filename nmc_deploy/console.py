"""The command line's console: results on standard output, diagnostics on standard error,
and third-party warnings we know to be harmless hidden and counted.

The stages (:mod:`nmc_deploy.pipeline`) print through one ``log`` callable. A line that is
part of a stage's result (a table, a verdict, an accuracy, the path of a file written) is a
:class:`Result`, a ``str`` subclass, so every other caller (the Python API, a test collecting
lines) gets plain text and the CLI can still route it: :class:`Console` writes results to
standard output and everything else to standard error; ``--quiet`` keeps only results and
errors, ``--json`` replaces the result lines by one JSON document. docs/console.md.
"""
from __future__ import annotations

import json
import mmap
import os
import re
import struct
import sys
import warnings
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout
from typing import Callable, Iterator, TextIO

__all__ = ["Result", "result", "as_diagnostics", "Console", "HARMLESS", "harmless_kind",
           "WarningGate", "count_hidden", "show_caught", "QUIET", "NORMAL", "VERBOSE"]

QUIET, NORMAL, VERBOSE = 0, 1, 2


class Result(str):
    """Text that is (part of) a stage's result: standard output on the command line."""


def result(text: str) -> Result:
    return Result(text)


def as_diagnostics(log: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """``log`` with every :class:`Result` passed on as plain text (a diagnostic): ``demo``'s
    stages, whose result is the demo's summary, not their own tables."""
    if log is None:
        return lambda msg: print(str(msg), file=sys.stderr)
    return lambda msg: log(str(msg))


# ------------------------------------------------------------------- third-party warnings

_THIRD_PARTY = r"[\\/](torch|lava|scipy|numpy|h5py|nir|nirtorch|snntorch|sinabs|norse|rockpool|spikingjelly|tqdm)[\\/]"

# (kind, category names, message pattern, file pattern): a warning of one of the categories
# (or a subclass of the first) whose message and file match is known to be harmless here.
HARMLESS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    # Lava's ProcessModels edit a CSR matrix's structure while building their weights
    ("scipy SparseEfficiencyWarning", ("SparseEfficiencyWarning",), r"", r""),
    # Lava's compiler imports every module beside a Process's module as a top-level one
    ("lava 'Cannot import module'", ("UserWarning",), r"Cannot import module", r"lava"),
    # torch.jit.script and other deprecations inside torch (the stack is pinned)
    ("torch deprecation", ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning"),
     r"", r"[\\/]torch[\\/]|torch\.jit"),
    ("third-party deprecation",
     ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning"), r"", _THIRD_PARTY),
    ("tqdm", ("TqdmWarning", "TqdmExperimentalWarning", "TqdmMonitorWarning"), r"", r""),
    # counted by the Lava child process itself (simulate/lava/child.py: scipy's and Lava's
    # warnings of its workers) and reported in its stats["warnings_silenced"]: never matched
    ("Lava child process", (), r"", r""),
)
LAVA_CHILD = len(HARMLESS) - 1
_ACTIVE: list["WarningGate"] = []  # the gates installed, innermost last


def harmless_kind(message, category: type, filename: str) -> int | None:
    """The index in :data:`HARMLESS` of a warning known to be harmless, else None (our own
    warnings, e.g. ``QuantizationWarning``, are never matched)."""
    names = {c.__name__ for c in getattr(category, "__mro__", (category,))}
    text, where = str(message), str(filename)
    for i, (_, categories, msg_re, file_re) in enumerate(HARMLESS):
        if not names.intersection(categories):
            continue
        if msg_re and not re.search(msg_re, text):
            continue
        if file_re and not (re.search(file_re, where) or re.search(file_re, text)):
            continue
        return i
    return None


class WarningGate:
    """Hides the warnings of :data:`HARMLESS` (shows them too with ``verbose``) and counts
    them per kind, also those of forked worker processes (Lava's): the counts live in an
    anonymous shared mapping that a fork inherits (no file, nothing to clean up)."""

    def __init__(self, level: int = NORMAL, stream: TextIO | None = None):
        self.level = level
        self.stream = stream
        self._counts = mmap.mmap(-1, 4 * len(HARMLESS))

    def count(self, kind: int, n: int = 1) -> None:
        (old,) = struct.unpack_from("<I", self._counts, 4 * kind)
        struct.pack_into("<I", self._counts, 4 * kind, old + int(n))

    def counts(self) -> dict[str, int]:
        """Hidden warnings per kind (the kinds seen only)."""
        values = struct.unpack_from(f"<{len(HARMLESS)}I", self._counts, 0)
        return {HARMLESS[i][0]: n for i, n in enumerate(values) if n}

    def summary(self) -> str | None:
        """``N third-party warnings hidden (K kinds); --verbose shows them``, or None."""
        counts = self.counts()
        if not counts:
            return None
        n = sum(counts.values())
        kinds = f"{len(counts)} kind{'s' if len(counts) != 1 else ''}"
        if self.level >= VERBOSE:
            return (f"{n} third-party warning{'s' if n != 1 else ''} known to be harmless "
                    f"({kinds}: {', '.join(counts)})")
        return f"{n} third-party warning{'s' if n != 1 else ''} hidden ({kinds}); --verbose shows them"

    @contextmanager
    def installed(self) -> Iterator["WarningGate"]:
        """Route :func:`warnings.showwarning` through the gate (restored on exit)."""
        with warnings.catch_warnings():
            shown = warnings.showwarning  # the caller's (a test's record=True list, or print)

            def show(message, category, filename, lineno, file=None, line=None):
                kind = harmless_kind(message, category, filename)
                if kind is not None:
                    self.count(kind)
                    if self.level >= VERBOSE:
                        print(f"{filename}:{lineno}: {category.__name__}: {message}",
                              file=self.stream or sys.stderr)
                    return
                if self.level > QUIET:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            _ACTIVE.append(self)
            try:
                yield self
            finally:
                _ACTIVE.remove(self)


def count_hidden(n: int, kind: int = LAVA_CHILD) -> None:
    """Add ``n`` warnings hidden elsewhere (the Lava child's count) to the active gate."""
    if _ACTIVE and n:
        _ACTIVE[-1].count(kind, n)


def show_caught(caught, log: Callable[[str], None]) -> None:
    """Pass warnings recorded by ``catch_warnings(record=True)`` on as ``warning: ...`` lines,
    except those known to be harmless, which go to the active :class:`WarningGate` (through
    :func:`warnings.showwarning`) to be counted."""
    for w in caught:
        if harmless_kind(w.message, w.category, w.filename) is None:
            log(f"warning: {w.message}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


# ---------------------------------------------------------------------------- the console

def _json_default(obj):
    from .fileio import json_default

    return json_default(obj)


class Console:
    """One CLI command's console: ``level`` QUIET, NORMAL or VERBOSE; ``as_json`` prints the
    command's result record as one JSON document instead of its result lines."""

    def __init__(self, level: int = NORMAL, as_json: bool = False,
                 out: TextIO | None = None, err: TextIO | None = None):
        self.level = level
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.gate = WarningGate(level, self.err)

    def log(self, msg) -> None:
        """The stages' ``log``: a :class:`Result` to standard output (not with ``--json``),
        anything else to standard error (not with ``--quiet``)."""
        if isinstance(msg, Result):
            if not self.as_json:
                print(str(msg), file=self.out, flush=True)
        elif self.level > QUIET:
            print(str(msg), file=self.err, flush=True)

    def emit_json(self, record) -> None:
        """``record`` (a dict, or JSON text already rendered) as one document on stdout."""
        text = record if isinstance(record, str) else json.dumps(record, indent=1,
                                                                default=_json_default)
        print(text.rstrip("\n"), file=self.out, flush=True)

    @contextmanager
    def session(self) -> Iterator["Console"]:
        """Around a command: stray writes to ``sys.stdout`` (libraries, workers) go to standard
        error (with ``--quiet`` nowhere, as stray writes to ``sys.stderr``) so standard output
        holds results only; warnings go through the gate; tqdm bars
        only on a terminal (or with ``--verbose``), never with ``--quiet``; at the end, the
        count of hidden third-party warnings."""
        saved = os.environ.get("TQDM_DISABLE")
        bars = self.level >= VERBOSE or (self.level > QUIET and _isatty(self.err))
        if not bars:
            os.environ["TQDM_DISABLE"] = "1"
        try:
            with ExitStack() as stack:
                stack.enter_context(self.gate.installed())
                stack.enter_context(redirect_stdout(self.err))
                if self.level == QUIET:  # stray diagnostics too (a child's relayed log)
                    stack.enter_context(redirect_stderr(stack.enter_context(
                        open(os.devnull, "w"))))
                yield self
        finally:
            if not bars:
                if saved is None:
                    os.environ.pop("TQDM_DISABLE", None)
                else:
                    os.environ["TQDM_DISABLE"] = saved
        line = self.gate.summary()  # after a success only: an error stays the one line
        if line and self.level > QUIET:
            print(line, file=self.err, flush=True)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
