"""The supervised Lava run (a child process in its own session) gives the reference's spikes
and leaves no process, segment or directory behind; a child that fails gives one line."""
import os
import shutil
import tempfile

import numpy as np
import pytest

from nmc_deploy.errors import SimulationError
from nmc_deploy.simulate.reference import simulate_reference



@pytest.fixture
def private_tempdir(monkeypatch):
    """A temp dir of this test only (other sessions may run Lava at the same time; the
    in-process backend names its directories nmc-lava-* too); short, for Lava's socket."""
    d = tempfile.mkdtemp(prefix="nmc-ls-", dir="/tmp")
    monkeypatch.setattr(tempfile, "tempdir", d)
    yield
    left = os.listdir(d)
    shutil.rmtree(d)
    assert left == [], f"left in the temp dir: {left}"


def _ours():
    shm = {n for n in os.listdir("/dev/shm") if n.startswith("nmc-lava-")}
    tmp = set(os.listdir(tempfile.gettempdir()))
    return shm, tmp


@pytest.mark.lava
def test_supervised_lava_equals_the_reference_and_leaves_nothing(tiny_program, digits,
                                                                private_tempdir):
    from nmc_deploy.simulate.lava.supervise import simulate_lava

    before = _ours()
    x = digits.x_test[:4]
    ref, lav = simulate_reference(tiny_program, x), simulate_lava(tiny_program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 500
    assert all(np.array_equal(ref.spikes[k], lav.spikes[k]) for k in ref.spikes)
    assert np.array_equal(ref.logits, lav.logits)
    assert lav.stats["backend"] == "lava" and lav.stats["warnings_silenced"] >= 0
    shm, tmp = _ours()  # other sessions may run Lava too: only new names count
    assert shm - before[0] == set() and tmp - before[1] == set()


@pytest.mark.lava
def test_a_killed_child_gives_one_line_and_its_workers_go(tiny_program, digits,
                                                          private_tempdir):
    """The OOM killer's case: the child dies while its Lava workers run."""
    import signal
    import threading
    import time

    from nmc_deploy.simulate.lava.supervise import (segment_names, session_pids,
                                                    simulate_lava)

    found = {}

    def kill_child():
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            for entry in os.scandir("/proc"):
                try:
                    cmd = open(f"/proc/{entry.name}/cmdline", "rb").read()
                except OSError:
                    continue
                if b"nmc_deploy.simulate.lava.child" in cmd and entry.name.isdigit():
                    pid = int(entry.name)
                    if len(session_pids(pid)) >= 10 and segment_names(pid):
                        found["pid"] = pid
                        os.kill(pid, signal.SIGKILL)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_child)
    killer.start()
    with pytest.raises(SimulationError) as info:
        simulate_lava(tiny_program, digits.x_test[:300])
    killer.join()
    assert "pid" in found, "the child was never seen running"
    assert str(info.value) == "lava: the simulation process was killed by SIGKILL"
    assert session_pids(found["pid"]) == [] and segment_names(found["pid"]) == []


def test_bad_inputs_are_refused_before_a_child_starts(tiny_program, private_tempdir):
    from nmc_deploy.errors import NmcDeployError
    from nmc_deploy.simulate.lava.supervise import simulate_lava

    before = _ours()
    with pytest.raises(NmcDeployError):
        simulate_lava(tiny_program, np.zeros((2, 3), np.int64))
    assert _ours() == before


def test_the_watchdog_must_be_positive(tiny_program, digits, monkeypatch):
    from nmc_deploy.simulate.lava.supervise import WATCHDOG_ENV, simulate_lava

    monkeypatch.setenv(WATCHDOG_ENV, "soon")
    with pytest.raises(SimulationError, match=WATCHDOG_ENV):
        simulate_lava(tiny_program, digits.x_test[:1])
    with pytest.raises(SimulationError, match="positive"):
        simulate_lava(tiny_program, digits.x_test[:1], watchdog=0)


def test_harmless_warnings_are_counted_not_printed(tmp_path):
    """scipy's SparseEfficiencyWarning (Lava's Sparse models assign into CSR matrices) is
    counted into warnings.log; any other warning is still printed."""
    import subprocess
    import sys

    code = ("import warnings, pathlib, scipy.sparse as sp\n"
            "from nmc_deploy.simulate.lava.child import _count_harmless\n"
            f"_count_harmless(pathlib.Path({str(tmp_path)!r}))\n"
            "m = sp.csr_matrix((3, 3)); m[0, 0] = 1; m[1, 1] = 2\n"
            "warnings.warn('Cannot import module x when searching ProcessModels')\n"
            "warnings.warn('something else')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "warnings.log").read_text().split() == [
        "SparseEfficiencyWarning", "UserWarning"]
    assert "SparseEfficiency" not in r.stderr and "something else" in r.stderr


def test_segments_of_a_child_carry_its_pid():
    """What the supervisor unlinks after killing a child: /dev/shm/nmc-lava-<pid>-*."""
    import subprocess
    import sys

    code = ("import os\n"
            "from multiprocessing import shared_memory\n"
            "from nmc_deploy.simulate.lava.child import name_segments\n"
            "name_segments(os.getpid())\n"
            "shm = [shared_memory.SharedMemory(create=True, size=64) for _ in range(300)]\n"
            "print(os.getpid(), len({s.name for s in shm}), shm[0].name)\n"
            "for s in shm: s.close(); s.unlink()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pid, distinct, name = r.stdout.split()
    assert distinct == "300" and name.startswith(f"nmc-lava-{pid}-")
