"""SIGINT and SIGTERM as a typed exception, and short sections that a signal must not split.

Nothing here acts at import. :func:`raise_on_signals` (the CLI's ``main`` uses it; a Python
caller may too) turns the first SIGINT or SIGTERM into :class:`Interrupted`, raised in the
main thread wherever it runs; the ``finally`` blocks on the way up clean up (the Lava
supervisor kills its child's process group and unlinks its shared memory, atomic writers
remove their temporary files). Later signals of the same run are recorded but not raised,
so that a second Ctrl-C cannot break that cleanup. :func:`deferred_signals` holds signals
during a short section (starting a child process, moving finished files into place) and
delivers them when it ends. Without :func:`raise_on_signals`, Python's defaults apply
(SIGINT raises ``KeyboardInterrupt``, SIGTERM ends the process); the Lava child then notices
its parent is gone and removes itself (``simulate/lava/child.py``).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["Interrupted", "raise_on_signals", "deferred_signals", "received", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run was stopped by a signal; ``exit_code`` is ``128 + signum`` (130, 143).

    Like ``KeyboardInterrupt`` and ``SystemExit`` it is not an ``Exception`` (nor an
    :class:`~nmc_deploy.errors.NmcDeployError`): the stages catch ``NmcDeployError`` to try
    another deployment form and ``Exception`` to word a reader's error, and neither may
    swallow a signal (a SIGTERM during ``compile`` was lost that way). Not a
    ``KeyboardInterrupt`` either: click turns those into ``Abort`` after a blank line.
    """

    def __init__(self, signum: int, where: str | None = None, outputs: str | None = None):
        self.signum = int(signum)
        self.where, self.outputs = where, outputs
        self.exit_code = 128 + self.signum
        name = signal.Signals(self.signum).name
        kept = f"; previous outputs in {outputs} are unchanged" if outputs else ""
        super().__init__(f"{where or 'run'} stopped by {name}{kept}")


class _State:
    received: int | None = None  # the first signal of the current raise_on_signals scope
    describe: Callable[[], tuple] | None = None


def received() -> int | None:
    """The first signal caught by :func:`raise_on_signals` in its current scope, if any."""
    return _State.received


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum, frame):
    if _State.received is not None:  # a second signal: the first one's cleanup is running
        return
    _State.received = signum
    where = ()
    if _State.describe is not None:
        try:
            where = _State.describe()
        except Exception:
            where = ()
    raise Interrupted(signum, *where)


@contextmanager
def raise_on_signals(describe: Callable[[], tuple] | None = None, *,
                     exiting: bool = False) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (once).

    ``describe()`` returns ``(where, outputs)`` for the message: the work being stopped
    (e.g. "simulate") and where its earlier outputs are, or ``()``.
    Previous handlers are restored at exit; with ``exiting`` (the caller ends the process
    after an interrupt, as the CLI does) they stay ignored once a signal came, so that a
    repeated Ctrl-C cannot turn the exit status 130 into a death by SIGINT.
    Outside the main thread this does nothing.
    """
    if not _main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _State.received, _State.describe = None, describe
    try:
        for s in SIGNALS:
            signal.signal(s, _raise)
        yield
    finally:
        keep = exiting and _State.received is not None
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_IGN if keep else handler)
        _State.describe = None


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM during the block; deliver the first one held when it ends.

    For short sections whose half-done state would leak (a child process started but not yet
    known to its supervisor; a set of files half moved into place). Outside the main thread
    this does nothing.
    """
    if not _main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        for s in SIGNALS:
            signal.signal(s, lambda signum, frame: held.append(signum))
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])
