"""The README's worked interop example (examples/snntorch_digits.py) through the CLI.

snnTorch trains and exports its network (snnTorch's defaults: subtract reset with
``reset_delay=True``); ``compile --convention snntorch`` and ``simulate --input --labels``
must then reproduce snnTorch's own output spikes in float (0 mismatches), print the fidelity
table with the accuracies and, with ``--compare``, reference == Lava.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("snntorch")

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 48


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("snn_example")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "snntorch_digits.py"),
                           str(out), "--epochs", "2"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "snnTorch: test accuracy" in proc.stdout
    for name in ("spikes.npy", "labels.npy", "snntorch_outputs.npy"):  # a quick subset
        np.save(out / name, np.load(out / name)[:SAMPLES])
    return out


def _cli(*args):
    """``nmc-deploy ARGS`` in a subprocess, as a user runs it: (exit code, stdout + stderr)."""
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, args)],
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def _simulate(example, build, *extra):
    code, text = _cli("simulate", build, "--input", example / "spikes.npy", "--labels",
                      example / "labels.npy", *extra)
    assert code == 0, text
    return text


def test_float_equals_snntorch_and_the_table_is_printed(example, tmp_path):
    build = tmp_path / "build_snn"
    code, text = _cli("compile", example / "snn.nir", "--convention", "snntorch", "-o", build)
    assert code == 0, text
    assert "assumed: reset 'subtract-delayed'" in text
    text = _simulate(example, build)
    assert "float≠fixed" in text and "predictions agree: float vs fixed" in text
    assert "accuracy: fixed" in text
    theirs = np.load(example / "snntorch_outputs.npy")
    ours = np.load(build / "outputs_reference.npz")
    assert theirs.sum() > 0.05 * theirs.size  # the outputs spike
    assert int(np.count_nonzero(ours["float"] != theirs)) == 0
    fid = json.loads((build / "simulation_reference.json").read_text())["fidelity"]
    labels = np.load(example / "labels.npy")
    snn_acc = float(np.mean(theirs.sum(axis=1).argmax(axis=1) == labels))
    assert fid["accuracy"]["float"] == pytest.approx(snn_acc)


@pytest.mark.lava
def test_reference_equals_lava_on_the_example(example, tmp_path):
    build = tmp_path / "build_snn"
    assert _cli("compile", example / "snn.nir", "--convention", "snntorch", "-o", build)[0] == 0
    text = _simulate(example, build, "--compare")
    fid = json.loads((build / "simulation_compare.json").read_text())["fidelity"]
    assert fid["reference_vs_lava"] == 0 and "ref≠Lava" in text
    assert fid["predictions_agree"]["fixed_vs_lava"] == SAMPLES
    assert set(fid["accuracy"]) == {"fixed", "float", "lava"}
