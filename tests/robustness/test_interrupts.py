"""SIGINT and SIGTERM stop every stage quickly and leave nothing behind (issue 12, item 3).

Each case starts ``python -m nmc_deploy.cli ...`` in its own session (as a shell would),
sends a signal at one moment (our handlers just installed, Lava starting, Lava's workers
running, training) - SIGTERM to the process (``kill PID``) or SIGINT to its process
group (a terminal's Ctrl-C) - and checks within a timeout: exit status 130/143, one line
``interrupted: ...`` on stderr and no traceback, no process left in any session the run
made (the Lava child has its own), no shared-memory segment of the run left in /dev/shm,
no temporary directory left (the run's TMPDIR is private to the test), and the previous
outputs byte-identical.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")
STOP_TIMEOUT = 15.0  # seconds from the signal to the exit; measured: < 1 s


def _stat(pid):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _live():
    """pid -> (ppid, session) of every live (not zombie) process."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            f = _stat(d.name)
            if f and f[0] not in ("Z", "X"):
                out[int(d.name)] = (int(f[1]), int(f[3]))
    return out


_TMPDIRS: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_tmpdirs():
    yield
    while _TMPDIRS:
        shutil.rmtree(_TMPDIRS.pop(), ignore_errors=True)


class Run:
    """One CLI run in its own session; tracks the sessions and segments it makes."""

    def __init__(self, tmp_path: Path, *args, env=None):
        # the run's TMPDIR, private and short (Lava's manager puts a Unix socket in it)
        self.tmp = Path(tempfile.mkdtemp(prefix="nmc-it-", dir="/tmp"))
        _TMPDIRS.append(self.tmp)  # removed after the test, also when it fails
        self.err_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        self.shm_before = set(os.listdir(SHM))
        self.segments = set()
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(self.tmp),
                    **(env or {})}
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nmc_deploy.cli", *map(str, args)], cwd=tmp_path,
                env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)
        self.sessions = {self.proc.pid}

    def family(self) -> list[int]:
        """Live processes of every session this run made (found through the process tree
        while it runs; afterwards by session id, as orphans lose their parent)."""
        procs = _live()
        for pid in procs:
            q = pid
            while q in procs and q != self.proc.pid and q > 1:
                q = procs[q][0]
            if q == self.proc.pid:
                self.sessions.add(procs[pid][1])
        pids = [p for p, (_, sid) in procs.items() if sid in self.sessions]
        for p in pids:  # the shared memory they map
            try:
                for line in open(f"/proc/{p}/maps"):
                    if "/dev/shm/" in line:
                        self.segments.add(line.split("/dev/shm/")[1].split()[0])
            except OSError:
                pass
        return pids

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def handlers_installed(self) -> bool:
        """Our handlers are in place once SIGTERM is caught (Python catches only SIGINT)."""
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
        except OSError:
            pass
        return False

    def wait_for(self, condition, timeout=90.0, what=""):
        t0 = time.monotonic()
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (rc {self.proc.returncode}) before {what}: "
                            f"{self.stderr()[-500:]}")
            if time.monotonic() - t0 > timeout:
                self.kill()
                pytest.fail(f"timeout waiting for {what}")
            time.sleep(0.02)

    def lava_workers(self, n=10) -> bool:
        """Whether a session of the run other than its own holds ``n`` processes."""
        self.family()
        live = _live()
        return any(sum(s == sid for _, s in live.values()) >= n
                   for sid in self.sessions - {self.proc.pid})

    def signal(self, sig) -> float:
        self.family()
        if sig == signal.SIGINT:
            os.killpg(self.proc.pid, sig)  # a terminal's Ctrl-C: the foreground group
        else:
            os.kill(self.proc.pid, sig)  # kill PID
        return time.monotonic()

    def kill(self):
        for pid in self.family():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def check_stopped(self, sig, t_signal, code=None):
        """Exit status, one line, no traceback, nothing left; returns the seconds to stop."""
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"no exit {STOP_TIMEOUT} s after {sig.name}: {self.stderr()[-800:]}")
        seconds = time.monotonic() - t_signal
        err = self.stderr()
        assert rc == (code if code is not None else 128 + sig), (rc, err[-800:])
        assert "Traceback" not in err, err[-2000:]
        last = [ln for ln in err.splitlines() if ln.strip()][-1]
        if code is None:
            assert last.startswith("interrupted: ") and sig.name in last, err[-800:]
            assert sum(ln.startswith("interrupted") for ln in err.splitlines()) == 1
        deadline = time.monotonic() + 5  # orphans of a killed group vanish within ms
        while (left := self.family()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == [], f"{len(left)} processes left"
        ours = {n for n in set(os.listdir(SHM)) - self.shm_before
                if n.startswith("nmc-lava-")} | (self.segments & set(os.listdir(SHM)))
        assert not ours, f"{len(ours)} shared-memory segments left"
        # torch keeps its compile cache in the temp dir (torchinductor_<user>: shared by
        # every run, as after an uninterrupted one); nothing else may be left
        left = [p.name for p in self.tmp.iterdir() if not p.name.startswith("torchinductor_")]
        assert left == [], f"temporary files left: {left}"
        return seconds


def _snapshot(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _cli(*args, cwd):
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, args)], cwd=cwd,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A compiled tiny Spikformer with the outputs of an earlier Lava simulation."""
    from conftest import make_tiny_spikformer
    from nmc_deploy.models.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("interrupts")
    save_checkpoint(d / "tiny.pt", make_tiny_spikformer(),
                    {"dataset": "digits", "input_levels": 16})
    _cli("export", d / "tiny.pt", "-o", d / "m.nir", cwd=d)
    _cli("compile", d / "m.nir", "-o", d / "b", cwd=d)
    _cli("simulate", d / "b", "--backend", "lava", "--samples", "2", cwd=d)
    return d / "b"


LAVA_MOMENTS = [
    ("lava-starting", signal.SIGINT),
    ("workers-running", signal.SIGINT),
    ("workers-running-ctrl-c-3x", signal.SIGINT),  # impatient: Ctrl-C three times
    ("workers-running", signal.SIGTERM),
    ("lava-starting", signal.SIGTERM),
]


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("moment,sig", LAVA_MOMENTS, ids=[f"{m}-{s.name}" for m, s in LAVA_MOMENTS])
def test_lava_simulation_stops_cleanly(tmp_path, build, moment, sig):
    before = _snapshot(build)
    run = Run(tmp_path, "simulate", build, "--backend", "lava", "--samples", 400)
    if moment == "lava-starting":  # the child exists, Lava's workers do not yet
        run.wait_for(lambda: run.family() and len(run.sessions) > 1, what="the child")
    else:
        run.wait_for(lambda: run.lava_workers(20), what="Lava's workers")
        time.sleep(0.5)
        assert run.segments, "the run maps no shared memory: nothing was tested"
    t0 = run.signal(sig)
    if moment.endswith("3x"):
        for _ in range(2):
            time.sleep(0.1)
            run.signal(sig)
    assert run.check_stopped(sig, t0) < 5
    assert _snapshot(build) == before
    assert _beside(build) == []  # no staging dir or lock of the run next to the build


@pytest.mark.lava
@pytest.mark.slow
def test_watchdog_ends_a_lava_run_whose_workers_stop(tmp_path, build):
    """Workers that stop (SIGSTOP: no CPU progress) end the run after the watchdog's time
    with one error line; everything is cleaned up as after a signal."""
    before = _snapshot(build)
    run = Run(tmp_path, "simulate", build, "--backend", "lava", "--samples", "400",
              env={"NMC_DEPLOY_LAVA_WATCHDOG": "2"})
    run.wait_for(lambda: run.lava_workers(20), what="Lava's workers")
    t0 = time.monotonic()
    for pid in run.family():
        if pid != run.proc.pid:
            os.kill(pid, signal.SIGSTOP)
    seconds = run.check_stopped(signal.SIGTERM, t0, code=1)
    assert 2 <= seconds < 8
    last = run.stderr().strip().splitlines()[-1]
    assert last.startswith("error: lava: no progress for 2 s")
    assert "NMC_DEPLOY_LAVA_WATCHDOG" in last
    assert _snapshot(build) == before
    assert _beside(build) == []  # no staging dir or lock of the run next to the build


@pytest.mark.lava
@pytest.mark.slow
def test_a_killed_parent_leaves_no_lava_run_behind(tmp_path, build):
    """SIGKILL (no handler can run): the Lava child sees its parent gone, unlinks its
    segments, removes its directory and kills its process group."""
    run = Run(tmp_path, "simulate", build, "--backend", "lava", "--samples", "400")
    run.wait_for(lambda: run.lava_workers(20), what="Lava's workers")
    t0 = run.signal(signal.SIGKILL)
    assert run.proc.wait(timeout=5) == -signal.SIGKILL
    while run.family() and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert run.family() == [], "the Lava child outlived its parent"
    assert not run.segments & set(os.listdir(SHM))
    assert [p.name for p in run.tmp.iterdir()] == []


def _beside(build):
    """What a run left next to the build: its lock, staging or old directories."""
    return sorted(p.name for p in build.parent.iterdir() if p.name.startswith(f".{build.name}."))


REFERENCE_MOMENTS = [(0.5, signal.SIGINT), (2.0, signal.SIGTERM)]


@pytest.mark.slow
@pytest.mark.parametrize("delay,sig", REFERENCE_MOMENTS,
                         ids=[f"{d}s-{s.name}" for d, s in REFERENCE_MOMENTS])
def test_reference_simulation_stops_cleanly(tmp_path, build, delay, sig):
    """The whole test split on the reference (float model first): ~8 s uninterrupted."""
    before = _snapshot(build)
    run = Run(tmp_path, "simulate", build)
    run.wait_for(run.handlers_installed, what="the handlers")
    time.sleep(delay)
    assert run.check_stopped(sig, run.signal(sig)) < 5
    assert _snapshot(build) == before
    assert _beside(build) == []  # no staging dir or lock of the run next to the build


@pytest.fixture(scope="module")
def larger_nir(tmp_path_factory):
    """The digits preset's graph: its compile takes a few seconds."""
    import warnings

    from conftest import make_active_spikformer
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.models.spikformer import preset_config
    from nmc_deploy.nirio import write_nir

    d = tmp_path_factory.mktemp("compile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_spikformer(make_active_spikformer(preset_config("digits"), seed=3),
                                  {"dataset": "digits", "input_levels": 16})
    write_nir(graph, d / "digits.nir")
    return d / "digits.nir"


COMPILE_MOMENTS = [(0.0, signal.SIGINT), (1.0, signal.SIGTERM), (2.5, signal.SIGINT)]


@pytest.mark.slow
@pytest.mark.parametrize("delay,sig", COMPILE_MOMENTS,
                         ids=[f"{d}s-{s.name}" for d, s in COMPILE_MOMENTS])
def test_compile_stops_cleanly(tmp_path, larger_nir, build, delay, sig):
    out = tmp_path / "b"  # a previous build of another model
    _cli("compile", build.parent / "m.nir", "-o", out, cwd=tmp_path)
    before = _snapshot(out)
    run = Run(tmp_path, "compile", larger_nir, "-o", out)
    run.wait_for(run.handlers_installed, what="the handlers")
    time.sleep(delay)
    run.check_stopped(sig, run.signal(sig))
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


DEMO_MOMENTS = [("training", signal.SIGINT), ("lava", signal.SIGTERM)]


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("moment,sig", DEMO_MOMENTS, ids=[f"{m}-{s.name}" for m, s in DEMO_MOMENTS])
def test_demo_stops_cleanly(tmp_path, moment, sig):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "summary.json").write_text('{"earlier": true}\n')  # a previous demo's result
    (out / "report.txt").write_text("earlier report\n")
    before = _snapshot(out)
    run = Run(tmp_path, "demo", "--out", out, "--epochs", "1", "--lava-samples", "200")
    if moment == "training":
        run.wait_for(lambda: "== train" in run.stderr(), what="training")  # its stage line
    else:
        run.wait_for(lambda: run.lava_workers(20), timeout=150,
                     what="Lava's workers")
    run.check_stopped(sig, run.signal(sig))
    # the demo publishes its whole OUT at the end (docs/architecture.md, "Publishing
    # outputs"): stopped at any moment, OUT is the previous one byte for byte
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_deferred_signals_hold_a_signal_until_the_section_ends():
    from nmc_deploy.interrupts import Interrupted, deferred_signals, raise_on_signals, received

    done = []
    with pytest.raises(Interrupted) as info:
        with raise_on_signals(lambda: ("compile", "build")):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                done.append("section")  # not cut short
            done.append("after")  # never reached: the held signal is raised first
    assert done == ["section"]
    assert info.value.exit_code == 143 and received() == signal.SIGTERM
    assert str(info.value) == ("compile stopped by SIGTERM; previous outputs in build are "
                               "unchanged")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_a_second_signal_does_not_cut_the_cleanup_short():
    from nmc_deploy.interrupts import Interrupted, raise_on_signals

    cleaned = []
    # the handler on entry: Python's default_int_handler, or SIG_IGN when the test process was
    # started in the background of a non-interactive shell (`make test &`), which ignores SIGINT
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        with raise_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            finally:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, during the cleanup
                time.sleep(0.05)
                cleaned.append(True)
    assert cleaned == [True] and info.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # restored
