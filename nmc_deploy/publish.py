"""Publishing outputs: a lock per output, directories staged beside it and published at once.

Every stage that writes is wrapped by :func:`publishes` (``nmc_deploy.pipeline``):

* **Lock.** ``fcntl.flock`` on ``.<OUT>.lock`` beside the output (same parent directory),
  taken without waiting: a second writer of the same output fails at once with one line
  (:class:`~nmc_deploy.errors.OutputBusyError`, naming the holder's pid). The kernel releases
  the lock when its holder dies, so a killed writer never blocks the next; the holder removes
  the file when it is done (a waiter that locked a removed file notices and tries again).
* **Staging.** A directory output (a build, a portable export, the demo's OUT) is written
  into ``.<OUT>.stage-<pid>-<hex>`` beside it: a copy of the current OUT made of hard links
  (free; every writer replaces a file by a new one, never edits it in place), into which the
  stage writes as it always did. On success the staging directory and OUT are swapped by one
  ``renameat2(RENAME_EXCHANGE)`` (SIGINT/SIGTERM deferred for those few system calls:
  :func:`nmc_deploy.interrupts.deferred_signals`) and the old
  contents are removed; on failure or interruption the staging directory is removed and OUT
  was never touched. Single-file outputs were already atomic (:mod:`nmc_deploy.fileio`).
* **Leftovers.** A writer killed with SIGKILL leaves its staging directory; the next writer of
  the same OUT removes every ``.<OUT>.stage-*`` / ``.old-*`` / ``.tmp-*`` entry once it holds
  the lock (holding it proves their owners are gone).
* **Readers** take no lock: a directory is only ever replaced as a whole, and
  :func:`consistent` re-reads when the directory was swapped during a read.
* **Write errors** (disk full, file too large, read-only or immutable directory, permission)
  become one line naming OUT and the fix (:class:`~nmc_deploy.errors.OutputWriteError`).

Standard library only (plus :mod:`nmc_deploy.checks` for the output checks).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import inspect
import os
import re
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import NmcDeployError, OutputBusyError, OutputWriteError
from .interrupts import deferred_signals

__all__ = ["publishes", "output_lock", "staged_dir", "consistent", "final_path",
           "staged_path", "lock_path", "write_error"]

_HELD: dict[str, int] = {}  # outputs (per thread) this process holds the lock of -> depth
_ACTIVE: dict[Path, Path] = {}  # final directory -> its staging directory (this process)
_SHOWN: dict[Path, Path] = {}  # staging directory -> its output as the user named it
_FULL = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (quota exceeded)",
         errno.EFBIG: "free disk space or raise the file-size limit (ulimit -f)"}
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def lock_path(out: Path) -> Path:
    """The lock file of the output ``out``: ``.<name>.lock`` in its parent directory."""
    return out.parent / f".{out.name}.lock"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _mkdirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents; the ones created, deepest first."""
    made = []
    p = path
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return made


@contextmanager
def output_lock(out, *, hint: str = "choose another -o", shown=None) -> Iterator[None]:
    """Hold the lock of the output ``out`` (re-entrant within one thread); another process
    (or thread) gets :class:`OutputBusyError` at once, naming ``shown`` (default ``out``)."""
    out = Path(out)
    key = f"{out.absolute()}@{threading.get_ident()}"  # another thread: another writer
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    lock = lock_path(out)
    made = _mkdirs(out.parent)
    ok = False
    try:
        fd = _acquire(Path(shown) if shown is not None else out, lock, hint)
        _HELD[key] = 1
        try:
            _sweep(out)
            yield
            ok = True
        finally:
            del _HELD[key]
            lock.unlink(missing_ok=True)  # while held: a waiter re-checks the path
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    finally:
        if not ok:
            for d in made:  # directories made for this output only, if still empty
                try:
                    d.rmdir()
                except OSError:
                    break


def _acquire(out: Path, lock: Path, hint: str) -> int:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise OutputBusyError(f"{out}: another nmc-deploy process ({who}) is writing it; "
                                  f"wait for it or {hint}") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed it just before releasing: lock the new one
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # (a full disk: the pid stays unknown, the lock holds)
        return fd


def _sweep(out: Path) -> None:
    """Remove what killed writers of ``out`` left beside it (we hold the lock)."""
    name = re.escape(out.name)
    leftover = re.compile(rf"^\.{{1,2}}{name}\.(stage|old|tmp)-|^\.{name}\.\d+\.[0-9a-f]{{12}}"
                          r"\.tmp")
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return
    for e in entries:
        if leftover.match(e.name):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                try:
                    os.unlink(e.path)
                except OSError:
                    pass


# ------------------------------------------------------------------------------- staging

# what nmc-deploy itself leaves in a directory: a staging or old directory of an output
# inside it (.<name>.stage-<pid>-<hex8>), a fileio temporary (.<name>.<pid>.<hex12>.tmp).
# (A lock file inside it is kept: a hard link is the same inode, so its flock holds.)
_OWN_LEFTOVER = re.compile(r"^\.{1,2}[^/]+\.(stage|old)-\d+-[0-9a-f]{8}$"
                           r"|^\.[^/]+\.\d+\.[0-9a-f]{12}\.tmp")


def _link_tree(src: Path, dst: Path, top: bool = True) -> None:
    """``dst`` as a copy of the directory ``src`` made of hard links (copies where links
    fail); our own leftovers at its top level (:data:`_OWN_LEFTOVER`) are not copied."""
    dst.mkdir()
    for e in os.scandir(src):
        if top and _OWN_LEFTOVER.match(e.name):
            continue
        s, d = Path(e.path), dst / e.name
        if e.is_symlink():
            os.symlink(os.readlink(s), d)
        elif e.is_dir():
            _link_tree(s, d, top=False)
        else:
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the directories ``a`` and ``b`` atomically; False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: outputs this process has published (an interrupt after the swap says so, not "unchanged")
PUBLISHED: set[str] = set()


def _publish(stage: Path, out: Path, before: set[str]) -> None:
    """Put ``stage`` in place of ``out`` (an absolute real path) at once; ``stage`` then
    holds the old contents, of which the top-level entries created while the stage ran (not
    in ``before``: another program writing into OUT meanwhile) are moved into the new OUT,
    and the rest removed; a process whose working directory was inside OUT moves to the
    same place in the new one. Signals wait for all of it."""
    try:  # a process working inside OUT (`simulate .`) follows it into the new directory
        cwd = os.getcwd()
        inside = os.path.commonpath([cwd, str(out)]) == str(out)
    except (OSError, ValueError):
        inside = False
    with deferred_signals():  # (nmc_deploy.interrupts: a signal waits for the swap)
        if not out.exists():
            os.rename(stage, out)
        elif not _exchange(stage, out):  # no RENAME_EXCHANGE: OUT is missing for a moment
            old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            os.rename(stage, out)
            os.rename(old, stage)
        PUBLISHED.add(str(out))
        if stage.is_dir():
            for name in set(os.listdir(stage)) - before:
                if not _OWN_LEFTOVER.match(name) and not (out / name).exists():
                    os.rename(stage / name, out / name)
        if inside:
            here = out / os.path.relpath(cwd, out)
            os.chdir(here if here.is_dir() else out)
        shutil.rmtree(stage, ignore_errors=True)
    _fsync_dir(out.parent)


@contextmanager
def staged_dir(out, shown=None) -> Iterator[Path]:
    """A staging directory beside ``out`` holding its current contents; published in place
    of ``out`` when the block ends normally, removed otherwise. Hold :func:`output_lock`.
    ``shown``: the output as the user named it (what :func:`final_path` gives back)."""
    out = Path(out)
    stage = out.parent / f".{out.name}.stage-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    before: set[str] = set()
    try:
        if out.is_dir():
            before = set(os.listdir(out))
            _link_tree(out, stage)
        else:
            stage.mkdir()
        _ACTIVE[out] = stage
        _SHOWN[stage] = Path(shown) if shown is not None else out
        yield stage
        _publish(stage, out, before)
    finally:
        _ACTIVE.pop(out, None)
        _SHOWN.pop(stage, None)
        shutil.rmtree(stage, ignore_errors=True)


def staged_path(path) -> Path:
    """``path`` as this process reads it now: under a directory being staged, the staged
    file (e.g. the demo's checkpoint, recorded by its final name)."""
    p = Path(path).absolute()
    for final, stage in reversed(list(_ACTIVE.items())):
        try:
            p = stage.absolute() / p.relative_to(final.absolute())
        except ValueError:
            continue
    return p if p != Path(path).absolute() else Path(path)


def final_path(path) -> Path:
    """``path`` by the name it will have once published (files under a staging directory)."""
    text = str(path)
    for final, stage in reversed(list(_ACTIVE.items())):  # innermost first
        text = _unstage_text(text, stage, _SHOWN.get(stage, final))
    return Path(text)


def _unstage_text(text: str, stage: Path, out: Path) -> str:
    """``text`` with the staging directory's path (absolute or as made) replaced by
    ``out`` as the user gave it."""
    return text.replace(str(stage.absolute()), str(out)).replace(str(stage), str(out))


def _unstage(value, stage: Path, out: Path):
    if isinstance(value, str):
        return _unstage_text(value, stage, out)
    if isinstance(value, dict):
        return {k: _unstage(v, stage, out) for k, v in value.items()}
    return value


# -------------------------------------------------------------------------------- errors

def write_error(exc: BaseException, out: Path, hint: str) -> OutputWriteError | None:
    """One line for a failed write of the output ``out`` (None: not a write failure)."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code is None:
        found = re.search(r"errno = (\d+)", text)  # h5py's message
        code = int(found.group(1)) if found else None
    if code is None and isinstance(exc, RuntimeError) and "write" in text.lower() \
            and "fail" in text.lower():  # torch's stream writer says no more
        return OutputWriteError(f"{out}: cannot be written (the file system refused the data: "
                                "disk full or file-size limit?); free disk space and run "
                                "again")
    if code in _FULL:
        return OutputWriteError(f"{out}: cannot be written ({os.strerror(code)}); "
                                f"{_FULL[code]} and run again")
    name = getattr(exc, "filename", None)
    if code in _DENIED and name is not None and os.path.commonpath(
            [os.path.abspath(name), os.path.abspath(out.parent)]) != os.path.abspath(out.parent):
        return None  # an input that cannot be read: the stage's own message
    if code in _DENIED:
        return OutputWriteError(f"{out}: cannot be written ({os.strerror(code)}); make its "
                                f"directory writable or {hint}")
    return None


@contextmanager
def _one_line(out: Path, hint: str, stage: Path | None) -> Iterator[None]:
    try:
        yield
    except NmcDeployError as exc:
        if stage is not None and exc.args and isinstance(exc.args[0], str):
            exc.args = (_unstage_text(exc.args[0], stage, out),) + exc.args[1:]
        raise
    except (OSError, RuntimeError) as exc:
        err = write_error(exc, out, hint)
        if err is None:
            raise
        raise err from None


# ------------------------------------------------------------------------------ readers

def consistent(directory, read: Callable[[], object], tries: int = 5):
    """``read()`` of files in ``directory``, again when the directory was replaced while it
    ran (a publish between two of its files: one consistent snapshot, no lock)."""
    directory = Path(directory)

    def ino():
        try:
            return os.stat(directory).st_ino
        except OSError:
            return None

    for attempt in range(tries):
        before = ino()
        try:
            value = read()
        except Exception:
            if ino() != before and attempt + 1 < tries:
                continue
            raise
        if ino() == before:
            return value
    return value


# ----------------------------------------------------------------------------- decorator

def publishes(out: str, *, kind="dir", inputs: tuple = (), option: str = "-o",
              update: bool = False, paths: tuple = (), emit=None):
    """Wrap a stage writing the output named by its argument ``out``: check the output path
    (with the arguments ``inputs``), lock it, and for a directory (``kind`` "dir", or a
    function of the bound arguments) run the stage on a staging directory published at the
    end. ``update``: the output is an existing directory the stage adds to (simulate);
    ``paths``: other path arguments mapped into the staging directory when inside OUT;
    ``emit(msg, log)``: the stage's printer, for log lines with the staging name replaced."""
    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def stage_fn(*args, **kwargs):
            ba = sig.bind(*args, **kwargs)
            ba.apply_defaults()
            target = ba.arguments.get(out)
            if target is None or (update and not Path(target).is_dir()):
                return fn(*args, **kwargs)  # the stage's own checks say what is wrong
            target = Path(target)
            # locked, staged and swapped by its real path ("." or a symlink: the directory
            # itself); messages keep the name the user gave
            real = Path(os.path.realpath(target))
            k = kind(ba.arguments) if callable(kind) else kind
            hint = f"choose another {option}" if not update else "simulate a copy of it"
            from .checks import output_dir, output_file

            if update:  # (the staging directory is writable: check the build itself)
                output_dir(target, option="build directory")
            else:
                (output_dir if k == "dir" else output_file)(
                    target, [ba.arguments.get(i) for i in inputs], option=option)
            with _one_line(target, hint, None), output_lock(real, hint=hint, shown=target):
                if k != "dir":
                    return fn(*ba.args, **ba.kwargs)
                with staged_dir(real, target) as stage, _one_line(target, hint, stage):
                    _redirect(ba, out, stage, real, paths, emit, target)
                    result = fn(*ba.args, **ba.kwargs)
                return _unstage(result, stage, target)
        stage_fn.__wrapped_stage__ = fn
        return stage_fn
    return wrap


def _redirect(ba, out: str, stage: Path, real: Path, paths: tuple, emit,
              shown: Path) -> None:
    """The bound arguments pointed at ``stage`` (which stands for ``real``, the user's
    ``shown``): OUT itself, paths inside it, the log."""
    ba.arguments[out] = stage
    for name in paths:
        if ba.arguments.get(name) is not None:
            ba.arguments[name] = staged_path(os.path.realpath(ba.arguments[name]))
    if emit is not None and "log" in ba.arguments:
        log = ba.arguments["log"]
        def unstaged(msg):  # keeps the line's kind (a console Result is a str subclass)
            text = _unstage_text(str(msg), stage, shown)
            return type(msg)(text) if isinstance(msg, str) else text
        ba.arguments["log"] = lambda msg: emit(unstaged(msg), log)
