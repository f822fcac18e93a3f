"""The Python API (nmc_deploy.api) on in-memory objects: a Graph, a nir.NIRGraph, a build
without a directory, input arrays; the same numbers as the file-based stages, nothing printed."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nmc_deploy as nd
from nmc_deploy.errors import NmcDeployError, TargetError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build(tiny_graph):
    lines = []
    return nd.compile(tiny_graph, target="loihi2", progress=lines.append), lines


def test_compile_in_memory_returns_a_frozen_build_and_prints_nothing(tiny_graph, capfd):
    lines = []
    b = nd.compile(tiny_graph, target="loihi2", progress=lines.append)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert isinstance(b, nd.Build) and b.directory is None
    assert b.cores_used == len(b.utilization) > 0
    assert b.neurons == sum(p.size for p in b.program.populations)
    assert b.target.name == "loihi2" and b.graph is not None
    assert b.design_rules is not None
    assert any("design rule" in line.lower() for line in lines) and tuple(lines) == b.log
    with pytest.raises(AttributeError):
        b.program = None  # frozen
    with pytest.raises(TypeError):
        b.placement["cores_used"] = 0  # read-only


def test_in_memory_equals_the_build_directory(build, tiny_graph, tmp_path):
    b, _ = build
    on_disk = nd.compile(tiny_graph, target="loihi2", out=tmp_path / "b")
    assert on_disk.directory == tmp_path / "b" and (tmp_path / "b" / "program.npz").is_file()
    assert dict(on_disk.placement) == dict(b.placement)
    again = nd.load_build(tmp_path / "b")
    assert dict(again.placement) == dict(b.placement) and again.target == b.target
    assert [p.name for p in again.program.populations] == [p.name for p in b.program.populations]


def test_a_nir_graph_object_compiles_like_its_graph(build, tiny_graph):
    from nmc_deploy.nirio import to_nir

    b, _ = build
    from_nir = nd.compile(to_nir(tiny_graph), target="loihi2")
    assert from_nir.cores_used == b.cores_used and from_nir.synapses == b.synapses


def test_simulate_and_report_in_memory(build, tmp_path, capfd):
    b, _ = build
    capfd.readouterr()
    sim = nd.simulate(b, samples=3)
    assert isinstance(sim, nd.SimulationResult) and sim.samples == 3
    assert set(sim.accuracy) == {"float", "fixed", "lava"} and sim.accuracy["lava"] is None
    assert 0.0 <= sim.accuracy["fixed"] <= 1.0 and sim.spike_mismatches is None
    assert "activity_reference.json" in sim.records and sim.fidelity["samples"] == 3
    rep = nd.report(b, sim)
    assert capfd.readouterr() == ("", "")
    assert isinstance(rep, nd.Report) and rep.cores_used == b.cores_used and rep.fits
    assert rep.synops_per_sample > 0 and rep.latency_per_sample_us > 0
    assert set(rep.energy_per_sample_uj) == set(b.target.energy_models)
    assert "loihi2" in rep.render("table") and json.loads(rep.render("json"))["cores_used"]
    with pytest.raises(NmcDeployError, match="format 'pdf'"):
        rep.render("pdf")
    # the same numbers through the files, as the CLI computes them
    from nmc_deploy.pipeline import make_report, run_simulation

    disk = nd.compile(b.graph, target="loihi2", out=tmp_path / "b")
    result = run_simulation(tmp_path / "b", samples=3, log=lambda m: None)
    assert result["accuracy_fixed_reference"] == sim.accuracy["fixed"]
    assert result["fidelity"] == dict(sim.fidelity)
    data = make_report(disk.directory, "json", tmp_path / "r.json", log=lambda m: None)
    assert data["energy_per_sample_uj"] == dict(rep.energy_per_sample_uj)
    assert nd.report(disk).energy_per_sample_uj == rep.energy_per_sample_uj  # its records


def test_simulate_input_arrays_and_labels(build, rng):
    b, _ = build
    x = rng.integers(0, 2, size=(4, b.program.time_steps, *b.program.input_shape))
    y = np.arange(4) % b.program.readout.num_outputs
    sim = nd.simulate(b, inputs=x, labels=y)
    assert sim.dataset.endswith("inputs.npy") and sim.samples == 4
    assert sim.outputs["reference"].shape[0] == 4 and "float" in sim.outputs
    pred = sim.outputs["reference"].sum(axis=1).reshape(4, -1).argmax(axis=1)
    assert sim.accuracy["fixed"] == pytest.approx(float(np.mean(pred == y)))


def test_a_build_directory_gets_the_cli_files_with_mode_0644(tiny_graph, tmp_path):
    old = os.umask(0o022)
    try:
        b = nd.compile(tiny_graph, out=tmp_path / "b")
        nd.simulate(b, samples=2)
        nd.simulate(tmp_path / "b", samples=2, backend="reference")
    finally:
        os.umask(old)
    names = {p.name for p in (tmp_path / "b").iterdir()}
    assert {"program.json", "target.json", "activity_reference.json",
            "simulation_reference.json"} <= names
    for p in (tmp_path / "b").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o755


def test_export_a_module_in_memory(tiny_model, tmp_path):
    graph = nd.export(tiny_model)
    assert graph.nodes and not list(tmp_path.iterdir())
    again = nd.export(tiny_model, tmp_path / "m.nir")
    assert (tmp_path / "m.nir").is_file() and set(again.nodes) == set(graph.nodes)


def test_errors_are_one_line_nmc_deploy_errors(tiny_graph):
    with pytest.raises(NmcDeployError, match="model of type 'object'"):
        nd.compile(object())
    with pytest.raises(TargetError, match="target 'loihi9': unknown"):
        nd.compile(tiny_graph, target="loihi9")
    with pytest.raises(NmcDeployError, match="expected a Build or a build directory"):
        nd.simulate(42)
    with pytest.raises(NmcDeployError, match="pass its simulation"):
        nd.report(nd.compile(tiny_graph))
    with pytest.raises(NmcDeployError, match="placement 'best' is not one of"):
        nd.compile(tiny_graph, placement="best")


def test_stage_names_are_functions_and_subpackages():
    import inspect

    import nmc_deploy.compile.quantize as q

    assert q.__name__ == "nmc_deploy.compile.quantize"
    assert nd.compile.quantize is q and nd.compile.compile_graph.__module__.startswith(
        "nmc_deploy.compile")
    assert "target" in inspect.signature(nd.compile).parameters
    assert "Compile a model" in nd.compile.__doc__
    from nmc_deploy import report as rep_stage

    assert rep_stage is nd.report and callable(rep_stage)


def test_import_is_cheap():
    code = ("import sys, nmc_deploy\n"
            "print([m for m in ('nmc_deploy.api', 'nmc_deploy.pipeline', 'torch', 'nir', "
            "'scipy', 'numpy') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
