"""nmc_deploy.publish in one process: the lock, staging and publication, readers, errors.
(The real command line in child processes: tests/robustness/test_publish.py; named
apart from it: pytest imports test files by their base name.)"""
from __future__ import annotations

import errno
import os
import threading

import pytest

from nmc_deploy.errors import OutputBusyError, OutputWriteError
from nmc_deploy.publish import (consistent, final_path, lock_path, output_lock, staged_dir,
                                staged_path, write_error)


def test_the_lock_is_reentrant_in_a_thread_and_refuses_another_thread(tmp_path):
    out = tmp_path / "b"
    errors = []
    with output_lock(out):
        with output_lock(out):  # the demo's nested stages
            assert lock_path(out).read_text().strip() == str(os.getpid())

        def other():
            try:
                with output_lock(out):
                    pass
            except OutputBusyError as exc:
                errors.append(str(exc))
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert errors == [f"{out}: another nmc-deploy process (pid {os.getpid()}) is writing it; "
                      "wait for it or choose another -o"]
    assert not lock_path(out).exists()
    with output_lock(out):  # free again
        pass


def test_a_lock_makes_missing_parents_and_removes_them_on_failure(tmp_path):
    out = tmp_path / "x" / "y" / "b"
    with pytest.raises(RuntimeError):
        with output_lock(out):
            assert out.parent.is_dir()
            raise RuntimeError("stage failed")
    assert os.listdir(tmp_path) == []


def test_staging_publishes_the_whole_directory_or_nothing(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("kept")
    (out / "old.json").write_text("old")
    ino = os.stat(out).st_ino
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(out) as stage:
            (stage / "old.json").unlink()
            (stage / "new.json").write_text("new")
            raise KeyboardInterrupt
    assert sorted(os.listdir(out)) == ["keep.txt", "old.json"]
    assert os.listdir(tmp_path) == ["b"] and os.stat(out).st_ino == ino
    with staged_dir(out) as stage:
        assert os.stat(stage / "keep.txt").st_ino == os.stat(out / "keep.txt").st_ino  # link
        assert staged_path(out / "keep.txt") == (stage / "keep.txt").absolute()
        assert final_path(stage / "new.json") == out / "new.json"
        (stage / "old.json").unlink()
        (stage / "new.json").write_text("new")
    assert sorted(os.listdir(out)) == ["keep.txt", "new.json"]
    assert os.listdir(tmp_path) == ["b"] and os.stat(out).st_ino != ino
    assert staged_path(out / "keep.txt") == out / "keep.txt"  # nothing staged any more


def test_consistent_reads_again_when_the_directory_was_swapped(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 1:  # a publish in the middle of the first read
            with staged_dir(out) as stage:
                (stage / "f").write_text("new")
        return (out / "f").read_text() if (out / "f").exists() else None

    assert consistent(out, read) == "new" and len(calls) == 2


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EFBIG, "File too large"),
                                         (errno.EROFS, "Read-only file system")])
def test_write_errors_become_one_line_naming_the_output(tmp_path, code, words):
    err = write_error(OSError(code, os.strerror(code), str(tmp_path / "b" / "x")),
                      tmp_path / "b", "choose another -o")
    assert isinstance(err, OutputWriteError)
    assert str(err).startswith(f"{tmp_path / 'b'}: cannot be written ({words}); ")
    assert "\n" not in str(err)
    h5 = RuntimeError("Can't decrement id ref count (file write failed: errno = 28, error "
                      "message = 'No space left on device')")
    assert "No space left" in str(write_error(h5, tmp_path / "b", "-"))
    assert write_error(OSError(errno.ENOENT, "x"), tmp_path / "b", "-") is None


def _stage_writer(**kw):
    """A stage writing ``new.txt`` into the directory ``out`` (publishes(update=True))."""
    from nmc_deploy.publish import publishes

    @publishes("out", update=True, **kw)
    def stage(out, during=None):
        (out / "new.txt").write_text("new")
        if during is not None:
            during()
        return str(out / "new.txt")
    return stage


def test_publishing_keeps_what_others_wrote_into_out_meanwhile(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def user_writes():  # e.g. `report -o b/report.html` while simulate runs
        (out / "report.html").write_text("report")
        (out / ".git.lock").write_text("")  # a user's dot-file
    _stage_writer()(out, during=user_writes)
    assert sorted(os.listdir(out)) == [".git.lock", "new.txt", "old.txt", "report.html"]
    _stage_writer()(out)  # a user's dot-files survive the next publication too
    assert (out / ".git.lock").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".b.")]


def test_dot_and_a_symlink_publish_the_real_directory(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (real / "old.txt").write_text("old")
    link = tmp_path / "latest"
    link.symlink_to(real)
    shown = _stage_writer()(link)
    assert link.is_symlink() and (real / "new.txt").read_text() == "new"
    assert shown == str(link.absolute() / "new.txt") or "new.txt" in shown
    monkeypatch.chdir(real)  # `simulate .` inside the build directory
    (real / "new.txt").unlink()
    _stage_writer()(".")
    assert (real / "new.txt").exists() and (real / "old.txt").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith((".real.", ".latest."))]


def test_an_interrupt_after_the_swap_is_reported_as_published(tmp_path):
    from nmc_deploy.publish import PUBLISHED

    out = tmp_path / "b"
    out.mkdir()
    _stage_writer()(out)
    assert os.path.realpath(out) in PUBLISHED
