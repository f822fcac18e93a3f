"""The one atomic-write helper: all or nothing, no temporary files left, umask honoured."""
import json
import os
import stat

import numpy as np
import pytest

from nmc_deploy.fileio import atomic_path, write_atomic, write_json_atomic, write_text_atomic


def test_text_and_json_are_written_whole(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\n".encode()
    write_json_atomic(tmp_path / "a.json", {"x": np.int64(3), "y": np.arange(2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 3, "y": [0, 1]}
    assert (tmp_path / "a.json").read_text() == json.dumps({"x": 3, "y": [0, 1]}, indent=1)


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def writer(f):
        f.write(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_atomic(path, writer)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_path_renames_what_the_writer_created(tmp_path):
    with atomic_path(tmp_path / "x.npz", suffix=".npz") as tmp:
        assert tmp.parent == tmp_path and not tmp.exists()
        np.savez(tmp, a=np.ones(3))
    with np.load(tmp_path / "x.npz") as z:
        assert z["a"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.txt").stat().st_mode) == 0o644
