"""The CLI: instant help, one-line errors without tracebacks or partial output, a full run."""
import json
from pathlib import Path
import subprocess
import sys

import pytest

COMMANDS = ["train", "prune", "export", "compile", "simulate", "report", "demo"]


def run(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def test_help_imports_no_heavy_dependency():
    code = ("import sys; from nmc_deploy.cli import main\n"
            "for args in [['--help']] + [[c, '--help'] for c in %r]:\n"
            "    assert main(args) == 0\n"
            "heavy = [m for m in ('torch', 'lava', 'nir', 'scipy', 'h5py', 'sklearn') if m in sys.modules]\n"
            "print(heavy)" % COMMANDS)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def _one_line_error(rc, out, err, *needles):
    assert rc == 1
    assert "Traceback" not in err + out
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0]


def test_bad_inputs_give_one_line_and_no_output(tmp_path):
    out = tmp_path / "out.nir"
    _one_line_error(*run("export", tmp_path / "missing.pt", "-o", out), "no such file")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    _one_line_error(*run("export", text, "-o", out), str(text))
    corrupt = tmp_path / "model.nir"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    _one_line_error(*run("compile", corrupt, "-o", tmp_path / "build"), "NIR")
    _one_line_error(*run("compile", corrupt, "--target", "loihi9", "-o", tmp_path / "build"),
                    "target 'loihi9': unknown")
    _one_line_error(*run("simulate", tmp_path), "no compiled program")
    _one_line_error(*run("report", tmp_path / "nope"), "no such directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nir", "notes.pt"]


def test_debug_flag_shows_the_traceback(tmp_path):
    rc, out, err = run("--debug", "export", tmp_path / "missing.pt")
    assert rc != 0 and "Traceback" in err


@pytest.mark.lava
def test_pipeline_through_the_cli(tmp_path, tiny_model):
    from nmc_deploy.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny_model, {"dataset": "digits", "input_levels": 16})
    assert run("export", ckpt, "-o", tmp_path / "m.nir")[0] == 0
    rc, out, err = run("compile", tmp_path / "m.nir", "--target", "loihi2", "-o", tmp_path / "b")
    assert rc == 0, err
    assert "cores used:" in out and "cores used:" not in err  # a result: stdout
    rc, out, err = run("simulate", tmp_path / "b", "--samples", "3", "--compare")
    assert rc == 0, err
    sim = json.loads((tmp_path / "b" / "simulation_compare.json").read_text())
    assert sim["spike_mismatches_reference_vs_lava"] == 0 and sim["spikes_compared"] > 100
    rc, out, err = run("report", tmp_path / "b", "--format", "html", "-o", tmp_path / "r.html")
    assert rc == 0, err
    assert "<svg" in (tmp_path / "r.html").read_text()
    rc, out, err = run("report", tmp_path / "b")
    assert rc == 0 and "blocks.0.attn.ssa" in out
    # both weight-storage answers and the attention deployment are on the page
    placed = json.loads((tmp_path / "b" / "placement.json").read_text())["weight_sharing"]
    on, off = placed["forms"]["on"], placed["forms"]["off"]
    assert f"sharing on: {on['cores']} cores" in out and f"sharing off: {off['cores']} cores" in out
    assert "attention unit(s) on programmable cores" in out


@pytest.mark.lava
def test_low_rank_relay_through_the_cli(tmp_path, tiny_model):
    from nmc_deploy.models.checkpoint import save_checkpoint
    from nmc_deploy.prune.dsp import factorize_model

    ckpt = tmp_path / "dsp.pt"
    save_checkpoint(ckpt, factorize_model(tiny_model, energy=0.6),
                    {"dataset": "digits", "input_levels": 16})
    assert run("export", ckpt, "-o", tmp_path / "m.nir")[0] == 0
    rc, out, err = run("compile", tmp_path / "m.nir", "--low-rank", "relay", "-o", tmp_path / "b")
    assert rc == 0, err
    assert "low-rank factors: 6 pairs" in out and "<- written" in out
    info = json.loads((tmp_path / "b" / "placement.json").read_text())["low_rank"]
    assert info["written"] == "relay"
    fused, relay = info["forms"]["fused"], info["forms"]["relay"]
    assert relay["synapses"] < fused["synapses"]
    assert relay["synapse_memory_bits"] < fused["synapse_memory_bits"]
    assert relay["pipeline_depth"] > fused["pipeline_depth"] and relay["relay_neurons"] > 0
    # no graded spikes on Loihi 1: relay is refused, and listed as not deployable next to fused
    _one_line_error(*run("compile", tmp_path / "m.nir", "--low-rank", "relay", "--target",
                         "loihi1", "-o", tmp_path / "b1"), "graded")
    rc, out, err = run("compile", tmp_path / "m.nir", "--target", "loihi1", "-o", tmp_path / "b1")
    assert rc == 0 and "not deployable" in out, err
    rc, out, err = run("simulate", tmp_path / "b", "--samples", "3", "--compare")
    assert rc == 0, err
    sim = json.loads((tmp_path / "b" / "simulation_compare.json").read_text())
    assert sim["spike_mismatches_reference_vs_lava"] == 0 and sim["spikes_compared"] > 100
    assert "blocks.0.mlp.fc1_linear.down" in sim["spike_mismatches_per_population"]
    rc, out, err = run("report", tmp_path / "b", "--format", "json")
    assert rc == 0, err
    rep = json.loads(out)
    layers = {ly["name"]: ly for ly in rep["layers"]}
    assert layers["blocks.0.mlp.fc1_linear.down"]["synops_per_sample"] > 0
    assert layers["blocks.0.mlp.fc1_linear"]["synops_per_sample"] > 0
    assert any("graded relay" in a for a in rep["assumptions"])


def test_compile_help_lists_every_shipped_target():
    from nmc_deploy.targets import load_target, target_names

    rc, out, _ = run("compile", "--help")
    assert rc == 0
    text = " ".join(out.split())
    for name in target_names():
        target = load_target(name)
        assert name in text
        if target.chip_target:  # a system: its chips and chip named
            assert f"{name}: {target.max_chips:,} x {target.chip_target}" in text


def test_program_larger_than_a_chip_is_refused_in_one_line(tmp_path):
    from factories import wide_conv_graph
    from nmc_deploy.nirio import write_nir

    write_nir(wide_conv_graph(), tmp_path / "wide.nir")
    rc, out, err = run("compile", tmp_path / "wide.nir", "--target", "loihi2", "-o",
                       tmp_path / "build")
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert rc == 1 and "Traceback" not in err + out and len(errors) == 1
    assert err.strip().splitlines()[-1] == errors[0]  # after the progress line, the error
    # the design-rule check refuses it before lowering (its cores bound is exact here)
    for needle in ("cores (lower bound, by neurons) (129) exceeds the cores of target loihi2",
                   "use a system of >= 2 chips", "--target kapoho_point"):
        assert needle in errors[0]
    assert not (tmp_path / "build").exists()


def test_system_target_through_compile_simulate_report(tmp_path, tiny_model):
    """Without Lava: compile for kapoho_point, simulate on the reference, report chips and
    traffic."""
    from nmc_deploy.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, tiny_model, meta={"dataset": "digits"})
    assert run("export", ckpt, "-o", tmp_path / "m.nir")[0] == 0
    rc, out, err = run("compile", tmp_path / "m.nir", "--target", "kapoho_point", "-o",
                     tmp_path / "b")
    assert rc == 0, err
    assert "chips used: 1 of 8 (kapoho_point: loihi2 chips of 128 cores" in out
    placement = json.loads((tmp_path / "b" / "placement.json").read_text())
    assert placement["chips_used"] == 1 and placement["system"]["chip_grid"] == [4, 2]
    rc, _, err = run("simulate", tmp_path / "b", "--samples", "4")
    assert rc == 0, err
    activity = json.loads((tmp_path / "b" / "activity_reference.json").read_text())
    assert activity["traffic"]["messages"] > 0
    rc, out, err = run("report", tmp_path / "b")
    assert rc == 0, err
    assert "cores used on 1 of 8 chips (kapoho_point: loihi2 chips of 128 cores)" in out
    assert "Mesh traffic" in out and "binds" in out
    assert out.startswith(f"Verdict: fits on kapoho_point: {placement['cores_used']} of 1,024 "
                          "cores on 1 of 8 chips")
    assert "spike mismatches reference vs Lava: not run" in out
    # the one page: every section; its JSON's headline figures reproduce (docs script)
    rc, out, err = run("report", tmp_path / "b", "--format", "json", "-o", tmp_path / "r.json")
    assert rc == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["traffic_matrix"]["totals"]["messages"] == activity["traffic"]["messages"]
    assert len(rep["utilization"]["cores"]) == placement["cores_used"]
    script = Path(__file__).resolve().parents[2] / "docs" / "reproduce_report.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "0 mismatched" in done.stdout, done.stdout
    rc, out, err = run("report", tmp_path / "b", "--format", "html", "-o", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert rc == 0 and all(f'<section id="{s}"' in page for s in ("verdict", "fidelity", "cost",
                                                                   "utilization", "traffic"))
    (tmp_path / "b" / "simulation_lava.json").write_text("{not json")
    _one_line_error(*run("report", tmp_path / "b"), "simulation_lava.json: unreadable")


def test_report_prices_with_the_users_own_target_file(tmp_path, tiny_graph):
    """A build compiled for a .toml outside hw_targets/ is reported with that file, also
    once the file is gone (the build keeps its text)."""
    import re

    from nmc_deploy.nirio import write_nir
    from nmc_deploy.targets import load_target

    write_nir(tiny_graph, tmp_path / "m.nir")
    own = re.sub(r'(e_synop_pj = \{ value = )[0-9.]+', r'\g<1>47.2',
                 Path(load_target("loihi2").path).read_text())
    (tmp_path / "mine.toml").write_text(own)
    rc, out, err = run("compile", tmp_path / "m.nir", "--target", tmp_path / "mine.toml",
                       "-o", tmp_path / "b")
    assert rc == 0, err
    assert run("simulate", tmp_path / "b", "--samples", "2")[0] == 0
    rc, out, err = run("report", tmp_path / "b", "--format", "json")
    assert rc == 0, err
    assert "47.2" in json.dumps(json.loads(out)["energy_models"])
    (tmp_path / "mine.toml").unlink()  # gone: the build recorded its text (target.json)
    rc, out, err = run("report", tmp_path / "b", "--format", "json")
    assert rc == 0 and "47.2" in json.dumps(json.loads(out)["energy_models"]), err
    record = json.loads((tmp_path / "b" / "target.json").read_text())
    record.pop("toml")  # a build from before the record: the shipped target of its name
    (tmp_path / "b" / "target.json").write_text(json.dumps(record))
    rc, out, err = run("report", tmp_path / "b", "--format", "json")
    assert rc == 0 and "47.2" not in json.dumps(json.loads(out)["energy_models"]), err


def test_residual_relay_through_the_cli(tmp_path, tiny_graph):
    """--residual relay writes the relay form; the log and placement.json give both forms."""
    from nmc_deploy.nirio import write_nir

    write_nir(tiny_graph, tmp_path / "m.nir")
    rc, out, err = run("compile", tmp_path / "m.nir", "--residual", "relay", "-o", tmp_path / "b")
    assert rc == 0, err
    info = json.loads((tmp_path / "b" / "placement.json").read_text())["residual"]
    fan, relay = info["forms"]["fan-in"], info["forms"]["relay"]
    assert info["written"] == "relay" and info["relays"] == 2
    assert f"residual stream: fan-in {fan['cores']} cores, relay {relay['cores']} cores" in out
    assert relay["groups"] < fan["groups"] and relay["max_out_degree"] < fan["max_out_degree"]
    assert run("simulate", tmp_path / "b", "--samples", "2")[0] == 0
    rc, out, err = run("report", tmp_path / "b")
    assert rc == 0, err
    assert "Residual stream (compiled, deployment decision 3): 2 relays" in out
    assert f"  relay: {relay['cores']} cores, {relay['synapses']:,} synapses" in out
    assert f"  fan-in: {fan['cores']} cores, {fan['synapses']:,} synapses" in out
    # no graded spikes on Loihi 1: relay is refused in one line, and listed next to fan-in
    _one_line_error(*run("compile", tmp_path / "m.nir", "--residual", "relay", "--target",
                         "loihi1", "-o", tmp_path / "b1"), "graded", "--residual fan-in")
    rc, out, err = run("compile", tmp_path / "m.nir", "--target", "loihi1", "-o", tmp_path / "b1")
    assert rc == 0 and "relay   not deployable" in out, err


def _netx_chain_file(path, rng):
    """A netx file of a small dense chain (write_netx of a compiled chain program)."""
    import warnings

    import numpy as np

    from factories import chain_graph
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.netx import write_netx
    from nmc_deploy.compile.quantize import quantize_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(lower_graph(chain_graph(rng)))
    write_netx(program, path)
    x = (rng.random((4, program.time_steps, 32)) < 0.5).astype(np.int64)
    return program, x


@pytest.mark.lava
def test_compile_simulate_report_a_netx_file(tmp_path):
    """`compile model.net` places the netx file's fixed-point chain; `simulate --compare`
    runs it on the reference and Lava (0 mismatches, no float graph); `report` prices it. A
    netx build replaces an older NIR build in the same directory (no stale model.nir)."""
    import numpy as np

    rng = np.random.default_rng(3)
    program, x = _netx_chain_file(tmp_path / "chain.net", rng)
    np.save(tmp_path / "x.npy", x)
    build = tmp_path / "build"
    build.mkdir()
    (build / "model.nir").write_text("an older build's graph")
    (build / "design_rules.json").write_text("{}")
    rc, out, err = run("compile", tmp_path / "chain.net", "--target", "loihi2", "-o", build)
    assert rc == 0, err
    assert "(netx): 3 CUBA layers (3 dense)" in out + err
    assert not (build / "model.nir").exists() and not (build / "design_rules.json").exists()
    assert (build / "model.net.h5").exists()
    rc, out, err = run("simulate", build, "--input", tmp_path / "x.npy", "--compare")
    assert rc == 0, err
    result = json.loads((build / "simulation_compare.json").read_text())
    assert result["accuracy_float"] is None
    assert result["spike_mismatches_reference_vs_lava"] == 0 and result["spikes_compared"] > 0
    rc, out, err = run("report", build)
    assert rc == 0, err
    assert "synops/sample" in out


def test_a_netx_file_netx_cannot_be_read_fails_in_one_line(tmp_path):
    import h5py
    import numpy as np

    _netx_chain_file(tmp_path / "chain.net", np.random.default_rng(4))
    with h5py.File(tmp_path / "chain.net", "a") as f:
        del f["layer/2/type"]
        f["layer/2"].create_dataset("type", (1,), "S10", [b"convT"])
    _one_line_error(*run("compile", tmp_path / "chain.net", "-o", tmp_path / "b"),
                    "layer 2: type 'convT' is not supported")
    assert not (tmp_path / "b").exists()


@pytest.mark.lava
def test_compile_simulate_a_netx_conv_file(tmp_path):
    """`compile conv.net` reads a netx file of conv, pool, flatten and dense layers (graded
    input); `simulate --compare` runs the reference and Lava with 0 mismatches."""
    import numpy as np

    from factories import netx_conv_file

    rng = np.random.default_rng(6)
    netx_conv_file(tmp_path / "conv.net", rng, last="dense")
    np.save(tmp_path / "x.npy", rng.integers(0, 4, (3, 2, 7, 10)))
    build = tmp_path / "build"
    rc, out, err = run("compile", tmp_path / "conv.net", "--target", "loihi2", "-o", build)
    assert rc == 0, err
    assert "(netx): 4 CUBA layers (2 conv, 1 pool, 1 dense)" in out + err
    rc, out, err = run("simulate", build, "--input", tmp_path / "x.npy", "--compare")
    assert rc == 0, err
    result = json.loads((build / "simulation_compare.json").read_text())
    assert result["spike_mismatches_reference_vs_lava"] == 0
    assert result["spikes_compared"] > 0
    rc, out, err = run("report", build)
    assert rc == 0, err


def test_traffic_placement_through_the_cli(tmp_path, tiny_graph):
    """--placement traffic: the record in placement.json, one log line; a second compile
    into the same directory after a simulation uses its measured rates; the same seed gives
    the same placement.json; a missing --rates file is one line and writes nothing."""
    from nmc_deploy.nirio import write_nir

    write_nir(tiny_graph, tmp_path / "m.nir")
    b = tmp_path / "b"
    rc, out, err = run("compile", tmp_path / "m.nir", "--placement", "traffic", "-o", b)
    assert rc == 0, err
    rec = json.loads((b / "placement.json").read_text())["placement"]
    assert rec["method"] == "traffic" and rec["rates"].startswith("prior: 0.1")
    g, t = rec["estimates"]["greedy"], rec["estimates"]["traffic"]
    assert t["message_hops_per_step"] <= g["message_hops_per_step"]
    assert "placement traffic (seed 0): expected message hops per step" in out
    assert run("simulate", b, "--samples", "3")[0] == 0
    rc, out, err = run("compile", tmp_path / "m.nir", "--placement", "traffic", "-o", b)
    assert rc == 0, err
    rec = json.loads((b / "placement.json").read_text())["placement"]
    assert rec["rates"].startswith(f"measured: population firing rates of {b}")
    first = (b / "placement.json").read_bytes()
    assert run("simulate", b, "--samples", "3")[0] == 0  # same rates again
    assert run("compile", tmp_path / "m.nir", "--placement", "traffic", "-o", b)[0] == 0
    assert (b / "placement.json").read_bytes() == first
    assert run("simulate", b, "--samples", "3")[0] == 0  # compile removed the old activity
    assert run("report", b, "--format", "html", "-o", tmp_path / "r.html")[0] == 0
    assert 'class="layout-after"' in (tmp_path / "r.html").read_text()
    _one_line_error(*run("compile", tmp_path / "m.nir", "--placement", "traffic", "--rates",
                         tmp_path / "none.json", "-o", tmp_path / "c"), "no such activity file")
    assert not (tmp_path / "c").exists()
    # --rates prior: the prior even though b holds a simulation
    rc, out, err = run("compile", tmp_path / "m.nir", "--placement", "traffic", "--rates",
                       "prior", "-o", b)
    assert rc == 0, err
    assert json.loads((b / "placement.json").read_text())["placement"]["rates"].startswith(
        "prior: 0.1")
    rc, out, err = run("compile", tmp_path / "m.nir", "--seed", "-1", "-o", tmp_path / "c")
    assert rc == 2 and "Traceback" not in err and not (tmp_path / "c").exists()


def test_simulate_prints_fidelity_and_takes_labels(tmp_path, tiny_graph):
    """`simulate --input x.npy --labels y.npy` prints the per-population fidelity table
    (float vs fixed) and the three accuracies; the summary goes into simulation_*.json;
    --labels without --input and a wrong number of labels are one line each."""
    import numpy as np

    from nmc_deploy.nirio import write_nir

    write_nir(tiny_graph, tmp_path / "m.nir")
    b = tmp_path / "b"
    assert run("compile", tmp_path / "m.nir", "-o", b)[0] == 0
    rng = np.random.default_rng(2)
    np.save(tmp_path / "x.npy", rng.integers(0, 17, (4, 1, 8, 8)))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 3]))
    rc, out, err = run("simulate", b, "--input", tmp_path / "x.npy", "--labels",
                       tmp_path / "y.npy")
    assert rc == 0, err
    assert "float≠fixed" in out and "predictions agree: float vs fixed" in out
    assert "accuracy: fixed" in out and "float" in out.split("accuracy: fixed")[1]
    assert "per-step graph outputs ->" in out and "summary ->" in out
    assert "accuracy: fixed" not in err  # results on stdout only
    fid = json.loads((b / "simulation_reference.json").read_text())["fidelity"]
    assert fid["samples"] == 4 and set(fid["accuracy"]) == {"fixed", "float"}
    assert fid["float_vs_fixed"] == sum(r["float_vs_fixed"] or 0 for r in fid["populations"])
    _one_line_error(*run("simulate", b, "--labels", tmp_path / "y.npy"), "--labels goes with")
    np.save(tmp_path / "y3.npy", np.array([0, 1, 2]))
    _one_line_error(*run("simulate", b, "--input", tmp_path / "x.npy", "--labels",
                         tmp_path / "y3.npy"), "labels (3) differ in number")


def test_simulate_reads_labels_from_nirdata(tmp_path, tiny_graph):
    """A NIRData --input with a 'labels' node gives accuracies without --labels; --labels
    takes a NIRData file too; a NIRData file without the node is one line."""
    import nir
    import numpy as np

    from nmc_deploy.nirio import write_nir

    write_nir(tiny_graph, tmp_path / "m.nir")
    b = tmp_path / "b"
    assert run("compile", tmp_path / "m.nir", "-o", b)[0] == 0
    prog = json.loads((b / "program.json").read_text())
    dt = float(prog["metadata"]["dt"])
    x = np.random.default_rng(3).integers(0, 17, (4, 4, 64))
    y = np.array([3, 1, 0, 2])

    def node(a):
        return nir.NIRNodeData(observables={"data": nir.TimeGriddedData(data=a, dt=dt)})

    nir.write_data(str(tmp_path / "xy.h5"), nir.NIRGraphData(
        nodes={"input": node(x), "labels": node(y.reshape(4, 1, 1))}))
    rc, out, err = run("simulate", b, "--input", tmp_path / "xy.h5")
    assert rc == 0, err
    assert "labels: the 'labels' node of" in err and "accuracy: fixed" in out
    fid = json.loads((b / "simulation_reference.json").read_text())["fidelity"]
    np.save(tmp_path / "x.npy", x)
    rc, out, err = run("simulate", b, "--input", tmp_path / "x.npy", "--labels",
                       tmp_path / "xy.h5")
    assert rc == 0, err
    assert json.loads((b / "simulation_reference.json").read_text())["fidelity"]["accuracy"] \
        == fid["accuracy"]
    nir.write_data(str(tmp_path / "x.h5"), nir.NIRGraphData(nodes={"input": node(x)}))
    _one_line_error(*run("simulate", b, "--input", tmp_path / "x.npy", "--labels",
                         tmp_path / "x.h5"), "no 'labels' node")


def test_labels_outside_the_outputs_are_one_line(tmp_path, tiny_graph):
    import numpy as np

    from nmc_deploy.nirio import write_nir

    write_nir(tiny_graph, tmp_path / "m.nir")
    assert run("compile", tmp_path / "m.nir", "-o", tmp_path / "b")[0] == 0
    np.save(tmp_path / "x.npy", np.ones((2, 1, 8, 8), np.int64))
    np.save(tmp_path / "y.npy", np.array([0, 99]))
    _one_line_error(*run("simulate", tmp_path / "b", "--input", tmp_path / "x.npy", "--labels",
                         tmp_path / "y.npy"), "label (99) outside the program's")
