"""A NIR file from another tool through the CLI: compile with its convention, simulate user
input (.npy and NIRData), compare reference and Lava, record activity as NIRData."""
import json
import subprocess
import sys

import nir
import numpy as np
import pytest

from oracles.nir_examples import example_inputs, make_example


def run(*args):
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, args)],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_missing_dt_is_one_clear_line(tmp_path):
    ex = make_example("norse")
    nir.write(tmp_path / "n.nir", ex.graph)
    rc, out, err = run("compile", tmp_path / "n.nir", "-o", tmp_path / "build")
    assert rc == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "dt" in err and "--convention" in err
    assert not (tmp_path / "build").exists()


@pytest.mark.lava
def test_snntorch_file_through_the_cli(tmp_path):
    ex = make_example("snntorch")
    nir.write(tmp_path / "snn.nir", ex.graph)
    x = example_inputs(ex, batch=3, steps=16)
    np.save(tmp_path / "in.npy", x)
    rc, out, err = run("compile", tmp_path / "snn.nir", "-o", tmp_path / "build",
                       "--convention", "snntorch", "--reset", "zero")
    assert rc == 0, err
    rc, out, err = run("simulate", tmp_path / "build", "--input", tmp_path / "in.npy",
                       "--compare", "--record", tmp_path / "rec.h5")
    assert rc == 0, err
    result = json.loads((tmp_path / "build" / "simulation_compare.json").read_text())
    assert result["spike_mismatches_reference_vs_lava"] == 0
    assert result["spikes_compared"] > 0
    outs = np.load(tmp_path / "build" / "outputs_reference.npz")
    assert outs["reference"].shape == (3, 16, 3) and np.array_equal(outs["reference"], outs["lava"])
    rec = nir.read_data(str(tmp_path / "rec.h5"))
    assert set(rec.nodes) == {"rsyn", "syn2"} and set(rec.nodes["rsyn"].nodes) == {"lif"}
    spikes = rec.nodes["syn2"].observables["spikes"].data
    assert spikes.shape == (3, 16, 3)
    # the same input as NIRData gives the same outputs
    data = nir.NIRGraphData(nodes={"input": nir.NIRNodeData(observables={
        "spikes": nir.TimeGriddedData(data=x, dt=1e-4)})})
    nir.write_data(str(tmp_path / "in.h5"), data)
    rc, out, err = run("simulate", tmp_path / "build", "--input", tmp_path / "in.h5")
    assert rc == 0, err
    again = np.load(tmp_path / "build" / "outputs_reference.npz")
    assert np.array_equal(again["reference"], outs["reference"])
    # a --record path that is a directory fails before simulating, in one line
    (tmp_path / "recdir").mkdir()
    rc, out, err = run("simulate", tmp_path / "build", "--input", tmp_path / "in.npy",
                       "--record", tmp_path / "recdir")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "directory" in err
    # a bad input: wrong shape, one line
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 7)))
    rc, out, err = run("simulate", tmp_path / "build", "--input", tmp_path / "bad.npy")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "shape" in err


def test_sinabs_multi_spike_file_through_the_cli(tmp_path):
    """--convention sinabs says the spike rule it assumed (MultiSpike, -theta on IF) in one
    line; --spikes/--v-min override it; loihi1 refuses multi spikes in one line; simulate
    records the counts."""
    pytest.importorskip("sinabs")
    from sinabs.activation import MultiSpike

    from interop.test_tool_runs_sinabs import STRONG, export, inputs, sinabs_net

    nir.write(tmp_path / "s.nir", export(sinabs_net("iaf", "subtract", spike_fn=MultiSpike,
                                                    min_v_mem=-1.0, **STRONG)))
    np.save(tmp_path / "in.npy", inputs(B=2, T=10).astype(np.int64))
    rc, out, err = run("compile", tmp_path / "s.nir", "-o", tmp_path / "b", "--convention",
                       "sinabs")
    assert rc == 0, err
    assumed = [line for line in (out + err).splitlines() if line.startswith("assumed:")]
    assert len(assumed) == 1 and "spikes 'multi'" in assumed[0] and "-theta on IF" in assumed[0]
    program = json.loads((tmp_path / "b" / "program.json").read_text())
    assert all(p["max_spikes"] > 1 and p["v_min"] < 0 for p in program["populations"])
    rc, out, err = run("simulate", tmp_path / "b", "--input", tmp_path / "in.npy",
                       "--record", tmp_path / "rec.h5")
    assert rc == 0, err
    counts = [n.observables["spikes"].data for n in nir.read_data(str(tmp_path / "rec.h5")
                                                                  ).nodes.values()]
    assert max(float(c.max()) for c in counts) > 1
    rc, out, err = run("compile", tmp_path / "s.nir", "-o", tmp_path / "b1", "--convention",
                       "sinabs", "--target", "loihi1")
    last = err.strip().splitlines()[-1]  # the log lines, then the error in one line
    assert rc == 1 and "Traceback" not in err and last.startswith("error: ")
    assert "graded_spike_bits 0" in last and "--spikes single" in last
    rc, out, err = run("compile", tmp_path / "s.nir", "-o", tmp_path / "b2", "--convention",
                       "sinabs", "--spikes", "single", "--v-min", "none", "--reset", "zero")
    assert rc == 0, err
    assert "assumed:" not in out + err
    program = json.loads((tmp_path / "b2" / "program.json").read_text())
    assert all(p["max_spikes"] == 1 and p["v_min"] is None for p in program["populations"])
