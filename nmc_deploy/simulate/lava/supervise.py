"""Run a Lava simulation in a supervised child process that can always be stopped.

Lava 0.10.0's runtime forks one OS process per Lava Process plus a runtime service and a
``multiprocessing`` manager, and exchanges data through POSIX shared memory (``/dev/shm``,
created with ``multiprocessing.shared_memory`` by the process that builds the channels,
unlinked by the manager at ``stop()``). On a signal its workers either die unsynchronized
or wait for each other forever; ``stop()`` then blocks, and whatever is killed leaves
processes and segments behind. So nmc-deploy never runs Lava in its own process:

* :func:`simulate_lava` writes the program and the inputs into a private temporary
  directory (``nmc-lava-*``, mode 0700) and starts ``python -m
  nmc_deploy.simulate.lava.child DIR`` in a **new session** (its own process group, which
  every Lava process it forks joins; a terminal's Ctrl-C reaches only the parent);
* the child names its shared-memory segments ``/dev/shm/nmc-lava-<child pid>-*`` and puts
  its temporary files into DIR (``TMPDIR``); it writes the :class:`SimulationResult` to
  ``DIR/result.pkl`` (a pickle we wrote ourselves, in a directory only we can write) or its
  one-line error to ``DIR/error.txt``;
* whatever happens in the parent (success, error, :class:`~nmc_deploy.interrupts.Interrupted`,
  ``KeyboardInterrupt``), its ``finally`` SIGKILLs every process of the child's session,
  waits until none is left, unlinks the child's segments and removes DIR;
* a watchdog ends a run whose processes stopped using CPU for ``watchdog`` seconds (workers
  that stopped responding: dead, blocked on each other), with one line; default 60 s, or the
  environment variable ``NMC_DEPLOY_LAVA_WATCHDOG``.
"""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ...errors import SimulationError
from ...interrupts import deferred_signals
from ..inputs import as_input_sequence, check_input_steps
from ..result import SimulationResult

__all__ = ["simulate_lava", "SHM_PREFIX", "WATCHDOG_ENV", "DEFAULT_WATCHDOG",
           "session_pids", "session_cpu_ticks", "segment_names", "stop_session"]

SHM_PREFIX = "nmc-lava-"  # /dev/shm/nmc-lava-<child pid>-<hex>; temp dirs nmc-lava-*
WATCHDOG_ENV = "NMC_DEPLOY_LAVA_WATCHDOG"
DEFAULT_WATCHDOG = 60.0
POLL = 0.2


def _proc_stats():
    """``(pid, fields after the command name)`` of every live process (from /proc)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields and fields[0] not in ("Z", "X"):  # zombies hold no memory and no segment
            yield int(entry.name), fields


def session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid`` (the child's pid: it called setsid)."""
    return [pid for pid, f in _proc_stats() if int(f[3]) == sid]


def session_cpu_ticks(sid: int) -> int:
    """User + system CPU ticks of the live processes of session ``sid`` (and of their
    reaped children): it stops changing when every process of the run waits."""
    return sum(int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
               for _, f in _proc_stats() if int(f[3]) == sid)


def segment_names(child_pid: int) -> list[str]:
    """The shared-memory segments of the child ``child_pid`` still in /dev/shm."""
    prefix = f"{SHM_PREFIX}{child_pid}-"
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except OSError:
        return []


def stop_session(sid: int, timeout: float = 10.0) -> int:
    """SIGKILL every process of session ``sid`` until none is left (or ``timeout``);
    returns how many were still alive at the first pass."""
    first = None
    deadline = time.monotonic() + timeout
    while True:
        pids = session_pids(sid)
        if first is None:
            first = len(pids)
        if not pids or time.monotonic() > deadline:
            return first
        try:
            os.killpg(sid, signal.SIGKILL)  # the group: also what forks right now
        except OSError:
            pass
        for pid in pids:  # anything that left the group but not the session
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def _unlink_segments(child_pid: int) -> None:
    for name in segment_names(child_pid):
        try:
            os.unlink(f"/dev/shm/{name}")
        except OSError:
            pass


def _watchdog_seconds(watchdog) -> float:
    if watchdog is None:
        text = os.environ.get(WATCHDOG_ENV, "")
        try:
            watchdog = float(text) if text else DEFAULT_WATCHDOG
        except ValueError:
            raise SimulationError(f"lava: {WATCHDOG_ENV} ({text!r}) is not a number of "
                                  "seconds; set e.g. 60") from None
    if not np.isfinite(watchdog) or watchdog <= 0:
        raise SimulationError(f"lava: watchdog ({watchdog}) must be a positive number of "
                              "seconds")
    return float(watchdog)


def _run_dir() -> Path:
    """A fresh private directory for the run. Lava's ``multiprocessing`` manager listens on
    a Unix socket inside it (``pymp-*/listener-*``, about 50 more characters), and a socket
    path has at most 107: under a long TMPDIR, /tmp is used instead."""
    base = tempfile.gettempdir()
    if len(base) > 48 and os.access("/tmp", os.W_OK):
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=SHM_PREFIX, dir=base))


def _child_env(run_dir: Path) -> dict:
    """The child imports this very nmc_deploy (first on its path) and keeps every temporary
    file of the run in ``run_dir``."""
    import nmc_deploy

    env = dict(os.environ)
    root = str(Path(nmc_deploy.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env["TMPDIR"] = str(run_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait(proc: subprocess.Popen, watchdog: float) -> int:
    """Wait for the child; raise when its processes use no CPU for ``watchdog`` seconds."""
    last, since = None, time.monotonic()
    while True:
        try:
            return proc.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            pass
        ticks, now = session_cpu_ticks(proc.pid), time.monotonic()
        if ticks != last:
            last, since = ticks, now
        elif now - since > watchdog:
            raise SimulationError(
                f"lava: no progress for {watchdog:g} s (its processes stopped responding); "
                f"the run was stopped; set {WATCHDOG_ENV} to wait longer")


def _child_failure(run_dir: Path, rc: int) -> SimulationError:
    error = run_dir / "error.txt"
    text = error.read_text(errors="replace").strip() if error.exists() else ""
    if text:
        return SimulationError(text.splitlines()[0])
    how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}"
    last = ""
    log = run_dir / "child.log"
    if log.exists():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        last = f" ({lines[-1].strip()[:160]})" if lines else ""
    return SimulationError(f"lava: the simulation process {how}{last}")


def _relay(log: Path) -> None:
    """Show what the child printed (warnings not known to be harmless) on our stderr."""
    text = log.read_text(errors="replace") if log.exists() else ""
    if text.strip():
        sys.stderr.write(text if text.endswith("\n") else text + "\n")


def simulate_lava(program, inputs: np.ndarray, *, cache_delay_weights: bool = True,
                  watchdog: float | None = None) -> SimulationResult:
    """:func:`~nmc_deploy.simulate.lava.backend.simulate_lava` in a supervised child
    process (module docstring): the same result; nothing of the run is left behind,
    whatever stops it. ``watchdog``: seconds without CPU progress before the run is ended
    (default: ``NMC_DEPLOY_LAVA_WATCHDOG`` or 60)."""
    watchdog = _watchdog_seconds(watchdog)
    check_input_steps(program, as_input_sequence(program, inputs))  # errors before a child
    run_dir = proc = None
    try:
        with deferred_signals():  # the directory exists only once run_dir is known
            run_dir = _run_dir()
        with open(run_dir / "job.pkl", "wb") as f:
            pickle.dump({"program": program, "inputs": np.asarray(inputs),
                         "cache_delay_weights": cache_delay_weights}, f, protocol=5)
        with deferred_signals(), open(run_dir / "child.log", "wb") as log:
            proc = subprocess.Popen(  # the child exists only once proc is known
                [sys.executable, "-m", "nmc_deploy.simulate.lava.child", str(run_dir)],
                cwd=run_dir, env=_child_env(run_dir), start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        rc = _wait(proc, watchdog)
        result = run_dir / "result.pkl"
        if rc != 0 or not result.exists():
            raise _child_failure(run_dir, rc)
        with open(result, "rb") as f:
            out = pickle.load(f)  # noqa: S301 (written by our child into our 0700 dir)
        _relay(run_dir / "child.log")
        return out
    finally:
        with deferred_signals():  # a second Ctrl-C must not cut the cleanup short
            if proc is not None:
                stop_session(proc.pid)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                _unlink_segments(proc.pid)
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
