"""NIR files: written with standard nodes + our extension, read back exactly."""
import warnings

import numpy as np
import pytest

import nir
from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.errors import GraphError, InputFileError
from nmc_deploy.nirio import read_nir, write_nir
from nmc_deploy.simulate.reference import simulate_reference


def test_plain_nir_read_opens_our_file(tmp_path, tiny_graph):
    path = write_nir(tiny_graph, tmp_path / "m.nir")
    g = nir.read(path, type_check=False)
    assert set(g.nodes) == set(tiny_graph.nodes)
    standard = {"Input", "Output", "Conv2d", "Conv1d", "LIF", "SumPool2d", "Threshold",
                "Flatten", "Scale", "Affine", "I"}
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert kinds - standard == {"SpikingSelfAttention"}


def test_round_trip_preserves_every_array_bit_exactly(tmp_path, tiny_graph):
    g2 = read_nir(write_nir(tiny_graph, tmp_path / "m.nir"))
    assert set(g2.edges) == set(tiny_graph.edges)
    for name, node in tiny_graph.nodes.items():
        other = g2.nodes[name]
        assert type(other) is type(node)
        for field, arr in node.array_fields().items():
            got = other.array_fields()[field]
            assert got.dtype == arr.dtype and np.array_equal(got, arr), (name, field)
    for key in ("dt", "time_steps", "threshold_comparison", "input_levels"):
        assert g2.metadata[key] == tiny_graph.metadata[key]


def test_reimported_graph_compiles_to_identical_spikes(tmp_path, tiny_graph, digits):
    g2 = read_nir(write_nir(tiny_graph, tmp_path / "m.nir"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p1 = quantize_program(lower_graph(tiny_graph))
        p2 = quantize_program(lower_graph(g2))
    x = digits.x_test[:10]
    r1, r2 = simulate_reference(p1, x), simulate_reference(p2, x)
    assert sum(int(np.count_nonzero(r1.spikes[k] != r2.spikes[k])) for k in r1.spikes) == 0
    assert sum(int(s.sum()) for s in r1.spikes.values()) > 1000


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_nir(tmp_path / "missing.nir")
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    with pytest.raises(InputFileError, match="not a NIR file"):
        read_nir(bad)
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(InputFileError, match="not a NIR graph"):
        read_nir(tmp_path / "other.h5")


def test_node_type_of_another_tools_extension_is_named(tmp_path):
    import dataclasses

    @dataclasses.dataclass(eq=False)
    class ForeignSpikingConv(nir.NIRNode):  # another tool's extension, written by nir.write
        weight: np.ndarray

        def __post_init__(self):
            self.input_type = {"input": np.array([2])}
            self.output_type = {"output": np.array([2])}

    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                            "d": ForeignSpikingConv(weight=np.ones(2)),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "d"), ("d", "output")], type_check=False)
    nir.write(tmp_path / "d.nir", g)
    with pytest.raises(GraphError, match="node 'd': type 'ForeignSpikingConv' is an extension "
                                         "of another tool; only standard NIR nodes"):
        read_nir(tmp_path / "d.nir")


def test_write_leaves_no_partial_file(tmp_path, tiny_graph, monkeypatch):
    import nmc_deploy.nirio.write as nio

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nio.nir, "write", boom)
    with pytest.raises(RuntimeError):
        write_nir(tiny_graph, tmp_path / "m.nir")
    assert list(tmp_path.iterdir()) == []


def test_token_select_node_round_trips_and_opens_with_plain_nir(tmp_path, digits):
    from conftest import make_token_spikformer
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.simulate.reference import simulate_reference

    graph = export_spikformer(make_token_spikformer(), {"input_levels": 16})
    path = write_nir(graph, tmp_path / "tok.nir")
    kinds = {type(n).__name__ for n in nir.read(path, type_check=False).nodes.values()}
    assert {"TokenSelect", "SpikingSelfAttention"} <= kinds
    g2 = read_nir(path)
    for name in ("blocks.0.token_select", "blocks.1.token_select"):
        a, b = graph.nodes[name], g2.nodes[name]
        assert (a.gates, a.previous, a.n_keep, a.time_steps) == (b.gates, b.previous, b.n_keep,
                                                                b.time_steps)
        assert all(np.array_equal(a.array_fields()[k], b.array_fields()[k]) for k in
                   ("w1", "b1", "w2", "b2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p1, p2 = (quantize_program(lower_graph(g)) for g in (graph, g2))
    r1, r2 = (simulate_reference(p, digits.x_test[:4]) for p in (p1, p2))
    assert all(np.array_equal(r1.spikes[k], r2.spikes[k]) for k in r1.spikes)


def test_nirdata_events_of_several_samples_and_bad_events(tmp_path):
    import pytest

    from nmc_deploy.errors import InputFileError
    from nmc_deploy.nirio import read_nirdata_input

    def write(idx, time, t_max=0.004):
        data = nir.NIRGraphData(nodes={"input": nir.NIRNodeData(observables={"ev": nir.EventData(
            idx=np.array(idx), time=np.array(time, float), n_neurons=3, t_max=t_max)})})
        path = tmp_path / f"ev{len(list(tmp_path.iterdir()))}.h5"
        nir.write_data(str(path), data)
        return path

    # nir pads the sample with fewer events with idx -1, time inf
    x = read_nirdata_input(write([[0, 2], [1, -1]], [[0.0, 0.0021], [0.001, np.inf]]),
                           "input", 1e-3)
    expected = np.zeros((2, 4, 3), int)
    expected[0, 0, 0] = expected[0, 2, 2] = expected[1, 1, 1] = 1
    assert np.array_equal(x, expected)
    for idx, time in (([[0]], [[-0.001]]), ([[0]], [[0.004]]), ([[3]], [[0.0]])):
        with pytest.raises(InputFileError, match="outside"):
            read_nirdata_input(write(idx, time), "input", 1e-3)


def test_corrupt_portable_export_is_one_line(tmp_path, tiny_graph):
    import json

    import pytest

    from nmc_deploy.errors import InputFileError
    from nmc_deploy.nirio import read_portable, write_portable

    out = write_portable(tiny_graph, tmp_path / "p")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["extension_ops"][0]["arrays"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputFileError, match="corrupt portable export"):
        read_portable(out)


def test_nirdata_labels_node(tmp_path):
    import pytest

    from nmc_deploy.errors import InputFileError
    from nmc_deploy.nirio import read_nirdata_input, read_nirdata_labels

    x = (np.random.default_rng(0).random((3, 4, 2)) < 0.5).astype(np.int64)
    labels = np.array([2, 0, 1])
    path = tmp_path / "d.h5"
    nir.write_data(str(path), nir.NIRGraphData(nodes={
        "in": nir.NIRNodeData(observables={"spikes": nir.TimeGriddedData(data=x, dt=1e-3)}),
        "labels": nir.NIRNodeData(observables={"y": nir.TimeGriddedData(
            data=labels.reshape(3, 1, 1), dt=1e-3)})}))
    assert np.array_equal(read_nirdata_labels(path), labels)
    # the input node is found beside the labels node whatever its name
    assert np.array_equal(read_nirdata_input(path, "input", 1e-3), x)
    bare = tmp_path / "bare.h5"
    nir.write_data(str(bare), nir.NIRGraphData(nodes={
        "in": nir.NIRNodeData(observables={"spikes": nir.TimeGriddedData(data=x, dt=1e-3)})}))
    assert read_nirdata_labels(bare, required=False) is None
    with pytest.raises(InputFileError, match="no 'labels' node"):
        read_nirdata_labels(bare)
