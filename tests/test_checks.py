"""The door checks (nmc_deploy.checks): files are refused by os.stat alone, outputs never
overwrite inputs, numbers outside their range are one line, and the target ranges are the
constants the simulators implement."""
import math
import os
import threading

import numpy as np
import pytest

from nmc_deploy import checks
from nmc_deploy.errors import InputFileError, NmcDeployError, TargetError


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "in.nir"
    os.mkfifo(fifo)
    result = []
    t = threading.Thread(target=lambda: result.append(
        pytest.raises(InputFileError, checks.input_file, fifo, "give a file")), daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():  # the check opened the FIFO: unblock it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("input_file opened the FIFO")
    assert "a FIFO (named pipe), not a regular file" in str(result[0].value)


@pytest.mark.parametrize("make, text", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.symlink_to("/dev/zero"), "a character device"),
    (lambda p: p.symlink_to(p), "cannot be read"),
])
def test_input_file_names_the_problem(tmp_path, make, text):
    path = tmp_path / "x.json"
    make(path)
    with pytest.raises(InputFileError, match=text):
        checks.input_file(path, "give a file")


def test_input_file_limits_the_size_without_reading(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(checks.MAX_TEXT_BYTES + 1)
    with pytest.raises(InputFileError, match=r"size \(268,435,457 bytes\) exceeds the limit"):
        checks.read_json(path, "write it again")


def test_read_json_names_the_first_non_finite_field(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"layers": [{"synops": 3}, {"synops": NaN}]}')
    with pytest.raises(InputFileError, match=r"layers\[1\]\.synops is nan, not a finite number"):
        checks.read_json(path, "simulate again")


def test_outputs(tmp_path):
    (tmp_path / "in.pt").write_bytes(b"x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for out, inputs, text in ((tmp_path / "in.pt", (tmp_path / "in.pt",), "is also an input"),
                              (tmp_path / "d", (), "is a directory"),
                              (tmp_path / "fifo", (), "FIFO"),
                              (tmp_path / "file" / "x" / "y.nir", (), "is not a directory")):
        with pytest.raises(InputFileError, match=text):
            checks.output_file(out, inputs)
    with pytest.raises(InputFileError, match="not a directory"):
        checks.output_dir(tmp_path / "file")
    assert checks.output_file(tmp_path / "new" / "deeper" / "x.nir") == \
        tmp_path / "new" / "deeper" / "x.nir"


def test_number():
    assert checks.number(3, "w", "f", lo=1, integer=True) == 3
    for value, kw, text in ((math.nan, {}, "not finite"), (0.0, {"lo": 0, "lo_open": True},
                                                            "below its minimum"),
                            (2 ** 40, {"hi": 100, "integer": True}, r"exceeds its limit \(100\)"),
                            ("x", {}, "is not a number"), (True, {"integer": True}, "integer")):
        with pytest.raises(NmcDeployError, match=text):
            checks.number(value, "where", "field", **kw)


def test_finite_refuses_non_real_arrays():
    for arr in (np.array([1.0, np.inf]), np.array(["a"]), np.ones(2, complex)):
        with pytest.raises(InputFileError, match="where: w"):
            checks.finite(arr, "where", "w")


def test_newer_version_asks_for_an_upgrade():
    with pytest.raises(InputFileError, match="written by a newer nmc-deploy; upgrade"):
        checks.newer_version("f.json", 99, 1)
    checks.newer_version("f.json", 1, 1)


def test_target_ranges_are_the_simulated_constants():
    from nmc_deploy.loihi.constants import GRADED_BITS, LAVA_LIF, LAVA_SYNAPSE
    from nmc_deploy.targets import load_target, target_names

    r = checks.TARGET_RANGES
    assert r["fixed_point.weight_bits"][1] == LAVA_SYNAPSE.max_weight_bits
    assert r["fixed_point.state_bits"] == (LAVA_LIF.uv_bits,) * 2
    assert r["fixed_point.threshold_mant_bits"] == (LAVA_LIF.vth_bits,) * 2
    assert r["fixed_point.decay_bits"] == (LAVA_LIF.decay_shift,) * 2
    assert 2 ** (r["fixed_point.bias_mant_bits"][0] - 1) == LAVA_LIF.bias_mant_max + 1
    assert r["fixed_point.bias_exp_max"][1] == LAVA_LIF.bias_exp_max
    assert r["fixed_point.graded_spike_bits"][1] == GRADED_BITS
    for name in target_names():  # every shipped target is inside them
        load_target(name)
    with pytest.raises(TargetError, match=r"decay_bits \(40\) exceeds its limit \(12\) \(the "
                                          r"simulators implement this width only\)"):
        checks.target_range("t.toml", "fixed_point.decay_bits", 40, 1, TargetError)
