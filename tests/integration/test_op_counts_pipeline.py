"""simulate writes the NeuroBench-compatible counts of the build's checkpoint; the report
names them next to the hardware-event count (pipeline: run_simulation, make_report)."""
import json

import pytest

from nmc_deploy.pipeline import compile_model, export_checkpoint, make_report, run_simulation


def _build(tmp, tiny_model):
    from nmc_deploy.models.checkpoint import save_checkpoint

    save_checkpoint(tmp / "tiny.pt", tiny_model, {"dataset": "digits", "input_levels": 16})
    export_checkpoint(tmp / "tiny.pt", tmp / "m.nir")
    compile_model(tmp / "m.nir", "loihi2", tmp / "b")
    run_simulation(tmp / "b", "reference", samples=4)
    return tmp


@pytest.fixture(scope="module")
def build(tmp_path_factory, tiny_model):
    return _build(tmp_path_factory.mktemp("opc"), tiny_model)


def test_simulate_counts_the_checkpoint_as_neurobench_does(build, tiny_model, digits):
    from nmc_deploy.models.op_counts import count_neurobench_ops
    from nmc_deploy.models.train import images_to_float

    written = json.loads((build / "b" / "op_counts_neurobench.json").read_text())
    x, _ = digits.test_subset(4)
    expected = count_neurobench_ops(tiny_model, images_to_float(x, digits.levels))
    assert {k: written[k] for k in expected} == expected
    report = make_report(build / "b", "json", out=build / "r.json")
    nb = report["op_counts"]["neurobench"]
    assert nb["available"] and nb["Effective_ACs"] == expected["Effective_ACs"]
    hw = report["op_counts"]["hardware_events"]
    assert hw["synaptic_events"] == report["per_sample"]["synops"]
    assert "op_counts" in json.loads((build / "r.json").read_text())


def test_without_the_checkpoint_the_report_says_so(tmp_path, tiny_model):
    build = _build(tmp_path, tiny_model)  # its own build: the checkpoint is removed
    assert (build / "b" / "op_counts_neurobench.json").exists()
    (build / "tiny.pt").unlink()
    run_simulation(build / "b", "reference", samples=2)
    assert not (build / "b" / "op_counts_neurobench.json").exists()
    report = make_report(build / "b", "json", out=build / "r2.json")
    assert report["op_counts"]["neurobench"]["available"] is False
