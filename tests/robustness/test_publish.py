"""Nothing half-written, ever (issue 12, item 2): locks, atomic publication, write errors.

Real processes through the real command line (``python -m nmc_deploy.cli``): two compiles
into one directory, a reader polling a build while it is replaced, disk full (a file-size
limit: writes fail with EFBIG), an immutable directory, kill -9 at random moments.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nmc_deploy.builds import BUILD_FILES

ROOT = Path(__file__).resolve().parents[2]
BUSY = re.compile(r"^error: (\S+): another nmc-deploy process \(pid \d+\) is writing it; "
                  r"wait for it or choose another (-o|--out)$")
LEFTOVER = re.compile(r"\.(stage|old|tmp)-|\.lock$|\.tmp")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*argv, cwd: Path, fsize: int | None = None, **kw) -> subprocess.Popen:
    """``nmc-deploy argv`` in a child process (with a file-size limit: writes beyond it fail
    with EFBIG, SIGXFSZ ignored)."""
    def limit():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.Popen([sys.executable, "-m", "nmc_deploy.cli", *map(str, argv)],
                            cwd=cwd, env=_env(), preexec_fn=limit, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def run(*argv, cwd: Path, fsize: int | None = None, timeout: float = 300):
    p = cli(*argv, cwd=cwd, fsize=fsize)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too) -> sha1 of its bytes ('dir' for dirs)."""
    snap = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            snap[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in files:
            p = os.path.join(dirpath, f)
            snap[os.path.relpath(p, root)] = hashlib.sha1(Path(p).read_bytes()).hexdigest()
    return snap


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines, "no message"
    assert "Traceback" not in err, err[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """tiny.pt, tiny.nir and a solo build ``solo`` (compiled, then simulated)."""
    from conftest import make_tiny_spikformer
    from nmc_deploy.models.checkpoint import save_checkpoint

    w = tmp_path_factory.mktemp("publish")
    save_checkpoint(w / "tiny.pt", make_tiny_spikformer(), {"dataset": "digits",
                                                           "input_levels": 16})
    assert run("export", "tiny.pt", "-o", "tiny.nir", cwd=w)[0] == 0
    assert run("compile", "tiny.nir", "-o", "solo", cwd=w)[0] == 0
    assert run("simulate", "solo", "--samples", "8", cwd=w)[0] == 0
    return w


def fresh(work: Path, tmp_path: Path, build: bool = True) -> Path:
    """A fresh directory with the inputs and (``build``) a copy of the simulated build."""
    for name in ("tiny.pt", "tiny.nir"):
        shutil.copy(work / name, tmp_path / name)
    if build:
        shutil.copytree(work / "solo", tmp_path / "b")
    return tmp_path


def test_two_concurrent_compiles_one_wins_the_other_fails_at_once(work, tmp_path):
    w = fresh(work, tmp_path, build=False)
    argv = ("compile", "tiny.nir", "--placement", "traffic", "-o")
    assert run(*argv, "solo", cwd=w)[0] == 0
    expected = tree(w / "solo")
    for attempt in range(3):  # started together; the loser fails at its lock
        out = f"b{attempt}"
        procs = [cli(*argv, out, cwd=w) for _ in range(2)]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        codes = sorted(rc for rc, _, _ in results)
        if codes == [0, 1]:
            break
    assert codes == [0, 1], f"both compiles ran: {[r[0] for r in results]}"
    loser = next(r for r in results if r[0] == 1)
    assert len([x for x in loser[2].splitlines() if x.strip()]) == 1, loser[2]
    assert BUSY.match(loser[2].strip()), loser[2]
    assert tree(w / out) == expected  # one complete build, byte for byte a solo compile's
    assert not [e for e in os.listdir(w) if LEFTOVER.search(e)]


def test_a_held_lock_refuses_every_writer_with_one_line(work, tmp_path):
    from nmc_deploy.publish import output_lock

    w = fresh(work, tmp_path)
    before = tree(w / "b")
    with output_lock(w / "b"):  # this test process is the writer
        for argv in (("compile", "tiny.nir", "-o", "b"), ("simulate", "b", "--samples", "2"),
                     ("demo", "--out", "b", "--epochs", "1")):  # (refused before training)
            rc, _, err = run(*argv, cwd=w)
            line = one_line(err)
            assert rc == 1 and f"(pid {os.getpid()})" in line and line.startswith("error: b:"), err
        assert tree(w / "b") == before
    assert not (w / ".b.lock").exists()  # the holder removes it
    rc, _, err = run("compile", "tiny.nir", "-o", "b", cwd=w)
    assert rc == 0, err


def test_stale_lock_and_staging_of_a_killed_writer_do_not_block_and_are_removed(work,
                                                                                tmp_path):
    w = fresh(work, tmp_path)
    (w / ".b.lock").write_text("999999\n")  # a lock file of a killed process (no flock)
    (w / ".b.stage-999999-deadbeef").mkdir()
    (w / ".b.stage-999999-deadbeef" / "program.json").write_text("{")
    (w / "..b.stage-999999-deadbeef.tmp-x1").mkdir()  # compile's own temp dir of it
    rc, _, err = run("compile", "tiny.nir", "-o", "b", cwd=w)
    assert rc == 0, err
    assert sorted(os.listdir(w)) == ["b", "tiny.nir", "tiny.pt"]


def test_a_compile_replaces_a_build_at_once_for_a_polling_reader(work, tmp_path):
    """Compiles alternating two different programs into b while this process polls
    api.load_build and the listing: never a missing file, never a mix of two builds."""
    import nmc_deploy.api as nd

    w = fresh(work, tmp_path)
    shutil.rmtree(w / "b")
    assert run("compile", "tiny.nir", "-o", "off", "--weight-sharing", "off", cwd=w)[0] == 0

    def key(build):
        return (len(build.program.groups), build.placement["cores_used"],
                int(sum(g.weights.nnz if hasattr(g.weights, "nnz") else 0
                        for g in build.program.groups)))

    known = {key(nd.load_build(work / "solo")), key(nd.load_build(w / "off"))}
    assert len(known) == 2
    shutil.copytree(work / "solo", w / "b")
    seen, errors, stop = [], [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                missing = set(BUILD_FILES) - set(os.listdir(w / "b"))
                if missing:
                    errors.append(f"missing {missing}")
                seen.append(key(nd.load_build(w / "b")))
            except Exception as exc:  # noqa: BLE001 (the test reports every kind)
                errors.append(f"{type(exc).__name__}: {exc}")

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for sharing in ("off", "on", "off", "on"):
            rc, _, err = run("compile", "tiny.nir", "-o", "b", "--weight-sharing", sharing,
                             cwd=w)
            assert rc == 0, err
    finally:
        stop.set()
        reader.join()
    assert not errors, errors[:3]
    assert set(seen) == known, (set(seen), known)  # both builds seen, nothing else
    assert len(seen) > 20


def _disk_full(w: Path, argv, out: str, fsize: int) -> None:
    before = tree(w)
    rc, _, err = run(*argv, cwd=w, fsize=fsize)
    line = one_line(err)
    assert rc == 1, err[-2000:]
    assert re.match(rf"^error: {re.escape(out)}(/\S+)?: cannot be written \((File too large|"
                    r"the file system refused the data)", line), line
    assert "free disk space" in line
    assert tree(w) == before  # previous outputs byte for byte, no staging, no lock


@pytest.mark.parametrize("fsize", [2_000, 20_000, 200_000])
def test_disk_full_during_compile_leaves_the_previous_build(work, tmp_path, fsize):
    _disk_full(fresh(work, tmp_path), ("compile", "tiny.nir", "-o", "b"), "b", fsize)


@pytest.mark.parametrize("fsize", [1_000, 6_000])
def test_disk_full_during_simulate_leaves_the_previous_results(work, tmp_path, fsize):
    w = fresh(work, tmp_path)
    _disk_full(w, ("simulate", "b", "--samples", "4"), "b", fsize)


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("fsize", [1_000, 100_000])
def test_disk_full_during_export_leaves_the_previous_file(work, tmp_path, fsize, portable):
    w = fresh(work, tmp_path, build=False)
    out = "port" if portable else "tiny.nir"
    if portable:
        assert run("export", "tiny.pt", "--portable", "-o", "port", cwd=w)[0] == 0
    _disk_full(w, ("export", "tiny.pt", "-o", out, *(("--portable",) if portable else ())),
               out, fsize)


def _previous_demo(w: Path) -> Path:
    """A previous demo OUT (its build is the solo build; a user's own file too)."""
    out = w / "demo"
    out.mkdir()
    shutil.copytree(w / "b", out / "build")
    for name in ("summary.json", "report.txt", "notes.txt"):
        (out / name).write_text(f"previous {name}\n")
    shutil.copy(w / "tiny.pt", out / "model.pt")
    return out


def test_disk_full_during_demo_leaves_the_previous_out(work, tmp_path):
    w = fresh(work, tmp_path)
    _previous_demo(w)
    _disk_full(w, ("demo", "--out", "demo", "--epochs", "1", "--lava-samples", "1"), "demo",
               20_000)


def _chattr(path: Path, flag: str) -> None:
    r = subprocess.run(["chattr", flag, str(path)], capture_output=True)
    if r.returncode:
        pytest.skip("chattr is not available here")


@pytest.mark.parametrize("immutable", ["b", "."])
def test_an_immutable_directory_fails_simulate_with_one_line(work, tmp_path, immutable):
    """An immutable build (or its parent: the build cannot be swapped) fails before any
    work, with one line; nothing changes."""
    w = fresh(work, tmp_path)
    before = tree(w)
    _chattr(w / immutable, "+i")
    try:
        rc, _, err = run("simulate", "b", "--samples", "2", cwd=w)
    finally:
        _chattr(w / immutable, "-i")
    line = one_line(err)
    assert rc == 1 and re.match(r"error: b: .*not writable; choose another build directory",
                                line), line
    assert tree(w) == before


def test_kill_9_during_compile_leaves_the_previous_build(work, tmp_path):
    w = fresh(work, tmp_path)
    before = tree(w)
    rng = random.Random(12)
    for _ in range(3):
        p = cli("compile", "tiny.nir", "-o", "b", "--weight-sharing", "off", cwd=w)
        time.sleep(rng.uniform(0.5, 2.0))
        p.kill()
        p.communicate()
        now = tree(w)
        assert {k: v for k, v in now.items() if not LEFTOVER.search(k)} == before \
            or p.returncode == 0
        if p.returncode != 0:
            b_now = {k: v for k, v in now.items() if k.startswith("b/")}
            if b_now != {k: v for k, v in before.items() if k.startswith("b/")}:
                # killed after the swap, before the exit: the new build, complete
                rc, _, err = run("compile", "tiny.nir", "-o", "whole", "--weight-sharing",
                                 "off", cwd=w)
                assert rc == 0, err
                whole = {f"b/{k}": v for k, v in tree(w / "whole").items()}
                shutil.rmtree(w / "whole")
                assert b_now == whole


@pytest.mark.slow
@pytest.mark.lava
def test_kill_9_during_demo_leaves_the_previous_out_then_a_demo_publishes_it_whole(
        work, tmp_path):
    """kill -9 at random moments of a demo (3 seeds): OUT byte for byte as before, or (killed
    after the exchange, before the exit) a whole new demo; the next writer removes the staging
    directories; a whole demo then replaces OUT at once."""
    w = fresh(work, tmp_path)
    out = _previous_demo(w)
    original = before = tree(out)
    argv = ("demo", "--out", "demo", "--epochs", "1", "--lava-samples", "1")
    for seed in (1, 2, 3):
        p = cli(*argv, cwd=w)
        time.sleep(random.Random(seed).uniform(1.0, 25.0))
        p.kill()
        p.communicate()
        now = tree(out)
        if p.returncode == 0 or now != before:  # published: the new demo, whole
            _assert_whole_new_demo(out, now, original)
            before = now
    rc, _, err = run("demo", "--out", "demo", "--target", "no-such-target", cwd=w)
    assert rc == 1 and "no-such-target" in one_line(err)
    assert tree(out) == before
    assert sorted(os.listdir(w)) == ["b", "demo", "tiny.nir", "tiny.pt"]  # swept
    rc, _, err = run(*argv, cwd=w)
    assert rc == 0, err[-2000:]
    assert sorted(os.listdir(w)) == ["b", "demo", "tiny.nir", "tiny.pt"]
    _assert_whole_new_demo(out, tree(out), original)


def _assert_whole_new_demo(out: Path, now: dict[str, str], original: dict[str, str]) -> None:
    """OUT holds a complete new demo (every output, the user's file kept, no staging path)."""
    assert (out / "notes.txt").read_text() == "previous notes.txt\n"  # a user's file stays
    assert now["summary.json"] != original["summary.json"]
    assert {"model.pt", "model.nir", "build/program.json", "build/simulation_compare.json",
            "report.html", "report.json", "report.txt", "summary.json"} <= set(now)
    for p in out.rglob("*.json"):  # recorded paths name OUT, never the staging directory
        assert ".stage-" not in p.read_text(), p
    assert '"demo/model.pt"' in (out / "build" / "program.json").read_text()
