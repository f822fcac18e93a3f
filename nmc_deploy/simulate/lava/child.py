"""The Lava child process: ``python -m nmc_deploy.simulate.lava.child RUN_DIR``.

Started by :func:`nmc_deploy.simulate.lava.supervise.simulate_lava` in a new session. It
reads ``RUN_DIR/job.pkl``, runs :func:`nmc_deploy.simulate.lava.backend.simulate_lava` and
writes ``RUN_DIR/result.pkl`` (or a one-line ``RUN_DIR/error.txt``). Before Lava is
imported it names every shared-memory segment of the run ``/dev/shm/nmc-lava-<pid>-<hex>``
(so the supervisor can unlink exactly these), and it watches its parent: if the parent
disappears without cleaning up (SIGKILL, SIGTERM without a handler), it unlinks its segments
and kills its own process group. Known-harmless third-party warnings (scipy's
``SparseEfficiencyWarning`` from Lava's Sparse models, Lava's "Cannot import module") are
not printed but counted into ``stats["warnings_silenced"]``; every other warning goes to the
child's log. Importing this module does nothing (Lava's ProcessModel discovery imports every
module of this folder).
"""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

__all__ = ["main", "name_segments", "HARMLESS"]

# (category name, message start) of third-party warnings known to be harmless in a Lava run
HARMLESS = (("SparseEfficiencyWarning", ""), ("UserWarning", "Cannot import module"))


def name_segments(pid: int) -> None:
    """Make ``multiprocessing.shared_memory`` name new segments ``/nmc-lava-<pid>-<hex>``
    (the module's own name maker reads these two globals; forked processes inherit them)."""
    from multiprocessing import shared_memory

    from .supervise import SHM_PREFIX

    if not hasattr(shared_memory, "_SHM_NAME_PREFIX") or not hasattr(
            shared_memory, "_SHM_SAFE_NAME_LENGTH"):  # CPython 3.8-3.13 have both
        raise RuntimeError("multiprocessing.shared_memory has no _SHM_NAME_PREFIX: cannot "
                           "name this run's segments for their cleanup")
    prefix = f"/{SHM_PREFIX}{pid}-"
    shared_memory._SHM_NAME_PREFIX = prefix
    shared_memory._SHM_SAFE_NAME_LENGTH = len(prefix) + 16  # 8 random bytes


def _count_harmless(run_dir: Path) -> None:
    """Route warnings: harmless ones become a line in ``warnings.log`` (from any process of
    the run: appends of one short line), the others are shown as usual."""
    import warnings

    original = warnings.showwarning
    path = str(run_dir / "warnings.log")

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if any(category.__name__ == c and text.startswith(m) for c, m in HARMLESS):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{category.__name__}\n".encode())
            finally:
                os.close(fd)
            return
        original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _watch_parent(parent: int, run_dir: Path) -> None:
    """If the parent dies without stopping this run, end it here (segments, group)."""
    from .supervise import SHM_PREFIX

    while os.getppid() == parent:
        time.sleep(0.5)
    prefix = f"{SHM_PREFIX}{os.getpid()}-"
    for name in os.listdir("/dev/shm"):
        if name.startswith(prefix):
            try:
                os.unlink(f"/dev/shm/{name}")
            except OSError:
                pass
    shutil.rmtree(run_dir, ignore_errors=True)
    os.killpg(0, signal.SIGKILL)


def _fail(run_dir: Path, message: str, code: int) -> int:
    (run_dir / "error.txt").write_text(message + "\n")
    return code


def main(argv: list[str]) -> int:
    run_dir = Path(argv[1])
    try:
        name_segments(os.getpid())
    except RuntimeError as exc:
        return _fail(run_dir, f"lava: {exc}", 5)
    threading.Thread(target=_watch_parent, args=(os.getppid(), run_dir), daemon=True).start()
    _count_harmless(run_dir)
    with open(run_dir / "job.pkl", "rb") as f:
        job = pickle.load(f)  # noqa: S301 (written by our parent into its 0700 dir)
    from ...errors import NmcDeployError

    try:
        from .backend import simulate_lava

        result = simulate_lava(job["program"], job["inputs"],
                               cache_delay_weights=job["cache_delay_weights"])
    except NmcDeployError as exc:
        return _fail(run_dir, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 3)
    except Exception as exc:
        traceback.print_exc()
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        return _fail(run_dir, f"lava: run failed ({type(exc).__name__}: {first})", 4)
    log = run_dir / "warnings.log"
    result.stats["warnings_silenced"] = (
        len(log.read_text().splitlines()) if log.exists() else 0)
    tmp = run_dir / "result.pkl.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(result, f, protocol=5)
    os.replace(tmp, run_dir / "result.pkl")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
