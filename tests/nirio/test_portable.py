"""`export --portable`: standard NIR only, plus a manifest; compile joins it back exactly."""
import json
import subprocess
import sys
import warnings

import nir
import numpy as np

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.export.spikformer import export_spikformer
from nmc_deploy.nirio import read_portable, write_portable
from nmc_deploy.simulate.reference import simulate_reference

STANDARD = {"Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d",
            "AvgPool2d", "Flatten", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI",
            "CubaLIF", "NIRGraph"}


def test_portable_file_is_standard_nir_and_joins_back_exactly(tmp_path, digits):
    from conftest import make_token_spikformer

    graph = export_spikformer(make_token_spikformer(), {"input_levels": 16})
    out = write_portable(graph, tmp_path / "portable")
    plain = nir.read(str(out / "graph.nir"))  # plain read, type-checked
    assert {type(n).__name__ for n in plain.nodes.values()} <= STANDARD
    manifest = json.loads((out / "manifest.json").read_text())
    kinds = sorted(op["type"] for op in manifest["extension_ops"])
    assert kinds == ["SpikingSelfAttention"] * 2 + ["TokenSelect"] * 2
    back = read_portable(out)
    assert set(back.nodes) == set(graph.nodes) and set(back.edges) == set(graph.edges)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p1, p2 = (quantize_program(lower_graph(g)) for g in (graph, back))
    r1, r2 = (simulate_reference(p, digits.x_test[:4]) for p in (p1, p2))
    assert sum(int(np.count_nonzero(r1.spikes[k] != r2.spikes[k])) for k in r1.spikes) == 0
    assert all(np.array_equal(r1.token_masks[k], r2.token_masks[k]) for k in r1.token_masks)


def test_cli_portable_export_compiles(tmp_path, tiny_model):
    from nmc_deploy.models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model, {"dataset": "digits",
                                                          "input_levels": 16})
    run = lambda *a: subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    r = run("export", ckpt, "--portable", "-o", tmp_path / "port")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "port").iterdir()) == [
        "extensions.npz", "graph.nir", "manifest.json"]
    r = run("compile", tmp_path / "port", "-o", tmp_path / "build")
    assert r.returncode == 0, r.stderr
    r = run("compile", tmp_path / "nothing", "-o", tmp_path / "b2")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1


def test_failed_portable_write_leaves_no_partial_output(tmp_path, tiny_graph, monkeypatch):
    import pytest

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)  # the last of the three files
    with pytest.raises(RuntimeError):
        write_portable(tiny_graph, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text("old")
    with pytest.raises(RuntimeError):
        write_portable(tiny_graph, old)
    assert sorted(p.name for p in old.iterdir()) == ["manifest.json"]
    assert (old / "manifest.json").read_text() == "old"


def test_unknown_extension_op_type_is_one_line(tmp_path, tiny_graph):
    import pytest

    from nmc_deploy.errors import GraphError

    out = write_portable(tiny_graph, tmp_path / "p")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["extension_ops"][0]["type"] = "Softmax"
    (out / "manifest.json").write_text(json.dumps(manifest))
    name = manifest["extension_ops"][0]["name"]
    with pytest.raises(GraphError, match=f"extension op '{name}' has unknown type 'Softmax'"):
        read_portable(out)
