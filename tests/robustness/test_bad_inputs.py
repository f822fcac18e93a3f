"""Every case of the bad-input corpus (corpus.py) fails cleanly: nonzero exit, exactly one
non-empty line on stderr naming the file or field, no traceback, no hang, no crash, and the
case's directory (inputs and earlier outputs) byte for byte as it was.

Cases run in this interpreter through ``nmc_deploy.cli.main`` (fast) under a watchdog: after
:data:`TIMEOUT_S` it unblocks any FIFO of the case and interrupts the run (a hang fails the
case); cases that read devices or may crash the interpreter run ``python -m nmc_deploy.cli``
in a child process with a memory limit.
"""
from __future__ import annotations

import hashlib
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from corpus import all_cases, build_artefacts, stage, writable

TIMEOUT_S = 10
REPO = Path(__file__).resolve().parents[2]
CASES = all_cases()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory):
    return build_artefacts(tmp_path_factory.mktemp("artefacts"))


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (not following links): kind and, for regular files, a
    digest (size and mtime for files over 64 MiB, e.g. sparse ones)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                if st.st_size > 64 << 20:
                    out[rel] = ("big", st.st_size, st.st_mtime_ns)
                else:
                    out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = (stat.S_IFMT(st.st_mode), os.readlink(p) if p.is_symlink() else "")
    return out


class _Hang(BaseException):
    pass


def _unblock_fifos(root: Path) -> None:
    """Open the other end of every FIFO under ``root`` (a reader or writer blocked on one
    returns), then close it."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if stat.S_ISFIFO(os.lstat(p).st_mode):
                for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                    try:
                        os.close(os.open(p, flags))
                    except OSError:
                        pass


def run_in_process(argv, cwd: Path, capfd) -> tuple[object, str, str]:
    from nmc_deploy.cli import main

    done, hung = threading.Event(), []

    def watchdog():
        if not done.wait(TIMEOUT_S):
            hung.append(True)
            os.kill(os.getpid(), signal.SIGALRM)
            for _ in range(50):  # until the main thread got out of its blocking call
                _unblock_fifos(cwd)
                if done.wait(0.1):
                    break

    def on_alarm(signum, frame):
        raise _Hang()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_cwd = os.getcwd()
    thread = threading.Thread(target=watchdog, daemon=True)
    capfd.readouterr()
    os.chdir(cwd)
    thread.start()
    try:
        with warnings.catch_warnings(record=True) as caught:  # as a fresh process prints them
            warnings.simplefilter("always")
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                           ResourceWarning):  # hidden by Python's default filters
                warnings.filterwarnings("ignore", category=hidden)
            rc = main(list(argv))
    except _Hang:
        rc = "hang"
    except BaseException as exc:  # what would be a traceback on the command line
        rc = f"uncaught {type(exc).__name__}: {exc}"
    finally:
        done.set()
        thread.join()
        os.chdir(old_cwd)
        signal.signal(signal.SIGALRM, old_handler)
    if hung:
        rc = "hang"
    out, err = capfd.readouterr()
    err = "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n"
                  for w in (caught if "caught" in locals() else ())) + err
    return rc, out, err


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def run_subprocess(argv, cwd: Path) -> tuple[object, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *argv], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=TIMEOUT_S + 40,
                           preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as exc:
        return "hang", exc.stdout or "", exc.stderr or ""
    rc = r.returncode if r.returncode >= 0 else f"crash (signal {-r.returncode})"
    return rc, r.stdout, r.stderr


def check_failure(case, rc, out, err) -> None:
    """Nonzero exit, one non-empty stderr line naming the needle, no traceback."""
    assert rc != "hang", f"{case.id}: hangs (no result after {TIMEOUT_S} s)"
    assert isinstance(rc, int), f"{case.id}: {rc}\n{err[-2000:]}"
    assert rc != 0, f"{case.id}: accepted (exit 0)\n{err[-2000:]}"
    assert "Traceback" not in out + err, f"{case.id}: traceback\n{err[-3000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case.id}: {len(lines)} lines on stderr:\n" + "\n".join(lines[:20])
    assert lines[0].startswith("error: "), lines[0]
    assert case.needle.lower() in lines[0].lower(), \
        f"{case.id}: the line does not name {case.needle!r}: {lines[0]}"


def _params():
    for case in CASES:
        marks = [pytest.mark.slow] if case.slow else []
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input_fails_cleanly(case, artefacts, tmp_path, capfd):
    work = tmp_path / "w"
    work.mkdir()
    stage(artefacts, work)
    try:
        if case.setup is not None:
            case.setup(work)
        before = snapshot(work)
        if case.subprocess:
            rc, out, err = run_subprocess(case.argv, work)
        else:
            rc, out, err = run_in_process(case.argv, work, capfd)
        check_failure(case, rc, out, err)
        after = snapshot(work)
    finally:
        writable(work)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not new and not changed, f"{case.id}: new files {new}, changed or removed {changed}"


def test_corpus_is_large_and_covers_every_class():
    ids = [c.id for c in CASES]
    assert len(ids) >= 150
    for part in ("checkpoint-", "nir-", "netx-", "program.json-", "program.npz-",
                 "placement.json-", "activity.json-", "input.npy-", "input-nirdata-",
                 "labels.npy-", "target.toml-", "-fifo", "-devzero", "-dir", "nan", "inf",
                 "csr-indices", "version-99", "out-is-input", "out-under-file", "option--samples"):
        assert any(part in i for i in ids), part


VALID = [  # the corpus's commands on the untouched artefacts: each succeeds
    ("export", "ck.pt", "-o", "out.nir"),
    ("export", "ck.pt", "--portable", "-o", "port"),
    ("compile", "port", "-o", "b2"),
    ("compile", "model.nir", "--target", "target.toml", "-o", "build"),
    ("compile", "net.net", "-o", "b3"),
    ("compile", "model.nir", "--placement", "traffic", "--rates", "rates.json", "-o", "b4"),
    ("simulate", "build", "--input", "x.npy", "--labels", "y.npy"),
    ("simulate", "build", "--input", "xy.h5"),
    ("simulate", "build", "--input", "x.npy", "--labels", "labels.h5", "--record", "r.h5"),
    ("report", "build"),
    ("report", "build", "-o", "r.txt"),
]


def test_the_valid_artefacts_pass(artefacts, tmp_path, capfd):
    """The control: without a fault every command of the corpus exits 0 (so a case fails
    because of its fault, not because the set-up is broken)."""
    stage(artefacts, tmp_path)
    for argv in VALID:
        rc, out, err = run_in_process(argv, tmp_path, capfd)
        assert rc == 0, f"{argv}: {rc}\n{err[-2000:]}"


SAMPLE = ("checkpoint-fifo", "checkpoint-pickled-code", "nir-weight-nan", "nir-dt-nan",
          "program.json-version-99", "program.npz-weights-off-grid", "input.npy-strings",
          "target.toml-weight-bits-1", "export-out-is-input", "simulate-option--samples=0",
          "build-activity-synops-nan", "readonly-compile")


@pytest.mark.parametrize("case_id", SAMPLE)
def test_a_sample_through_the_real_command_line(case_id, artefacts, tmp_path):
    """Cases run in-process above behave the same as ``python -m nmc_deploy.cli``."""
    case = next(c for c in CASES if c.id == case_id)
    stage(artefacts, tmp_path)
    try:
        if case.setup is not None:
            case.setup(tmp_path)
        before = snapshot(tmp_path)
        check_failure(case, *run_subprocess(case.argv, tmp_path))
        assert snapshot(tmp_path) == before
    finally:
        writable(tmp_path)
