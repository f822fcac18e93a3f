"""Reading NIR graphs written in the conventions of other tools (built with the nir package).

Each factory builds a graph the way that tool's exporter does (nir.md §2-§5): sinabs leaves
Conv2d/Flatten input shapes open, snnTorch nests a recurrent CubaLIF in a NIRGraph, norse
1.1.0 writes 0-d parameters and a batch dimension, rockpool hides dt in r.
"""
import dataclasses

import h5py
import numpy as np
import pytest

import nir
from nmc_deploy.errors import GraphError, InputFileError
from nmc_deploy.ir import nodes as ir
from nmc_deploy.ir.graph import Graph
from nmc_deploy.nirio import from_nir, read_nir, write_nir


def count_mismatches(a, b) -> int:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return max(a.size, b.size)
    return int(np.count_nonzero(a != b))


# --------------------------------------------------------------------------------- factories

def make_sinabs_cnn(rng, *, batch_params=False):
    """sinabs.to_nir style: IF/Conv2d(no bias, input_shape None)/SumPool2d/Flatten/Affine."""
    conv_w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    fc_w = rng.normal(size=(10, 64)).astype(np.float32)
    lead = (1,) if batch_params else ()  # sinabs copies v_mem's shape, batch included

    def if_node(shape, threshold):
        return nir.IF(r=np.ones(lead + shape, np.float32),
                      v_threshold=np.full(lead + shape, threshold, np.float32),
                      v_reset=np.zeros(lead + shape, np.float32))

    nodes = {
        "input": nir.Input(np.array([2, 8, 8])),
        "0": nir.Conv2d(input_shape=None, weight=conv_w, stride=1, padding=1, dilation=1,
                        groups=1, bias=np.zeros(4, np.float32)),
        "1": if_node((4, 8, 8), 1.0),
        "2": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                           padding=np.array([0, 0])),
        "3": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
        "4": nir.Affine(weight=fc_w, bias=np.zeros(10, np.float32)),
        "5": if_node((10,), 0.5),
        "output": nir.Output(np.array([10])),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "4"), ("4", "5"),
             ("5", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def write_with_open_shapes(path, graph_with_shapes):
    """Write a graph, then remove Conv input_shape / Flatten input_type as other tools leave
    them (nir 1.0.8 cannot write None)."""
    nir.write(path, graph_with_shapes)
    with h5py.File(path, "r+") as f:
        for name, grp in f["node/nodes"].items():
            kind = grp["type"][()].decode()
            if kind in ("Conv1d", "Conv2d") and "input_shape" in grp:
                del grp["input_shape"]
            if kind == "Flatten" and "input_type" in grp:
                del grp["input_type"]
    return path


def sinabs_file(tmp_path, rng, **kw):
    g = make_sinabs_cnn(rng, **kw)
    g.nodes["0"].input_shape = (8, 8)  # only so that nir.write can write it; removed again
    g.nodes["0"].__post_init__()
    g.nodes["3"] = nir.Flatten(input_type=np.array([4, 4, 4]), start_dim=0, end_dim=-1)
    return write_with_open_shapes(tmp_path / "sinabs.nir", g)


DT_SNNTORCH = 1e-4


def snntorch_cuba_params(n, beta, alpha, threshold=1.0):
    """snnTorch Synaptic export: tau = dt/(1-beta), r = tau/dt, tau_syn = dt/(1-alpha),
    w_in = tau_syn/dt (float64), v_leak = 0, no v_reset (NIR default 0)."""
    tau_mem = np.full(n, DT_SNNTORCH / (1 - beta))
    tau_syn = np.full(n, DT_SNNTORCH / (1 - alpha))
    return dict(tau_mem=tau_mem, tau_syn=tau_syn, r=tau_mem / DT_SNNTORCH,
                v_leak=np.zeros(n), v_threshold=np.full(n, threshold),
                w_in=tau_syn / DT_SNNTORCH)


def make_snntorch_rsynaptic(rng):
    """snnTorch style: Linear -> RSynaptic (NIRGraph: input, lif, w_rec, output; lif <-> w_rec)
    -> Linear -> Synaptic readout."""
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([6])),
               "lif": nir.CubaLIF(**snntorch_cuba_params(6, 0.9, 0.8)),
               "w_rec": nir.Linear(weight=rng.normal(size=(6, 6)).astype(np.float32)),
               "output": nir.Output(np.array([6]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        metadata={"source": "snntorch RSynaptic"})
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([4])),
               "fc1": nir.Affine(weight=rng.normal(size=(6, 4)).astype(np.float32),
                                 bias=rng.normal(size=6).astype(np.float32)),
               "rsyn1": sub,
               "fc2": nir.Linear(weight=rng.normal(size=(3, 6)).astype(np.float32)),
               "lif2": nir.CubaLIF(**snntorch_cuba_params(3, 0.95, 0.5)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "fc1"), ("fc1", "rsyn1"), ("rsyn1", "fc2"), ("fc2", "lif2"),
               ("lif2", "output")])


def make_norse_lif(rng):
    """norse 1.1.0 to_nir style: nodes named 0..3, 0-d float32 neuron params (tau = dt/inv =
    1e-5, its export bug), Input/Output with the batch dimension."""
    f32 = np.float32
    scalar = lambda v: np.array(v, f32)  # noqa: E731
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 4])),
               "0": nir.Affine(weight=rng.normal(size=(3, 4)).astype(f32),
                               bias=rng.normal(size=3).astype(f32)),
               "1": nir.LIF(tau=scalar(1e-5), r=scalar(1.0), v_leak=scalar(0.0),
                            v_threshold=scalar(1.0), v_reset=scalar(0.0)),
               "2": nir.Affine(weight=rng.normal(size=(2, 3)).astype(f32),
                               bias=rng.normal(size=2).astype(f32)),
               "3": nir.LI(tau=scalar(2e-5), r=scalar(1.0), v_leak=scalar(0.0)),
               "output": nir.Output(np.array([1, 2]))},
        edges=[("1", "2"), ("0", "1"), ("2", "3"), ("input", "0"), ("3", "output")],
        type_check=False)


DT_ROCKPOOL = 1e-3


def make_rockpool_cuba(rng):
    """rockpool to_nir style: LinearTorch -> Linear, LIFTorch -> CubaLIF with
    r = tau_mem exp(-dt/tau_mem)/dt, ExpSynTorch readout -> LI with the same r rule."""
    tau_mem = rng.uniform(0.01, 0.05, size=5)
    tau_syn = rng.uniform(0.005, 0.02, size=5)
    tau_li = rng.uniform(0.01, 0.03, size=2)
    r_of = lambda tau: tau * np.exp(-DT_ROCKPOOL / tau) / DT_ROCKPOOL  # noqa: E731
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])),
               "0_LinearTorch": nir.Linear(weight=rng.normal(size=(5, 3)).astype(np.float32)),
               "1_LIFTorch": nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r_of(tau_mem),
                                         v_leak=np.zeros(5), v_threshold=np.ones(5)),
               "2_LinearTorch": nir.Linear(weight=rng.normal(size=(2, 5)).astype(np.float32)),
               "3_ExpSynTorch": nir.LI(tau=tau_li, r=r_of(tau_li), v_leak=np.zeros(2)),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "0_LinearTorch"), ("0_LinearTorch", "1_LIFTorch"),
               ("1_LIFTorch", "2_LinearTorch"), ("2_LinearTorch", "3_ExpSynTorch"),
               ("3_ExpSynTorch", "output")])


def assert_same_graph(a: Graph, b: Graph):
    """Same names, edges, node types and every array bit-exact (dtype and shape included)."""
    assert set(a.nodes) == set(b.nodes)
    assert sorted(a.edges) == sorted(b.edges)
    mismatches = 0
    for name, node in a.nodes.items():
        other = b.nodes[name]
        assert type(other) is type(node), name
        for field, arr in node.array_fields().items():
            got = other.array_fields()[field]
            assert got.dtype == arr.dtype, (name, field)
            mismatches += count_mismatches(got, arr)
        assert node.input_shape == other.input_shape and node.output_shape == other.output_shape
    assert mismatches == 0


def assert_round_trip(tmp_path, graph: Graph, *, type_check=True):
    """write_nir(graph) opens with plain nir.read and reads back to the same graph."""
    path = write_nir(graph, tmp_path / "round_trip.nir")
    nir.read(path, type_check=type_check)
    again = read_nir(path)
    assert_same_graph(graph, again)
    return again


# ------------------------------------------------------------------------------------ sinabs

def test_sinabs_cnn_shapes_are_inferred_from_the_file(tmp_path, rng):
    path = sinabs_file(tmp_path, rng)
    with h5py.File(path) as f:  # the file really leaves them open
        assert "input_shape" not in f["node/nodes/0"] and "input_type" not in f["node/nodes/3"]
    g = read_nir(path)
    kinds = {n: type(v).__name__ for n, v in g.nodes.items()}
    assert kinds == {"input": "Input", "0": "Conv2d", "1": "IF", "2": "SumPool2d",
                     "3": "Flatten", "4": "Affine", "5": "IF", "output": "Output"}
    assert g.nodes["0"].input_hw == (8, 8) and g.nodes["0"].output_shape == (4, 8, 8)
    assert g.nodes["2"].input_chw == (4, 8, 8) and g.nodes["2"].output_shape == (4, 4, 4)
    assert g.nodes["3"].input_type == (4, 4, 4) and g.nodes["3"].output_shape == (64,)
    assert g.nodes["output"].shape == (10,)
    src = make_sinabs_cnn(np.random.default_rng(1234))
    mismatches = count_mismatches(g.nodes["0"].weight, src.nodes["0"].weight)
    mismatches += count_mismatches(g.nodes["4"].weight, src.nodes["4"].weight)
    mismatches += count_mismatches(g.nodes["1"].v_threshold, src.nodes["1"].v_threshold)
    assert mismatches == 0 and g.nodes["0"].weight.dtype == np.float32
    assert not any("nir_param_shape" in v.metadata for v in g.nodes.values())


def test_sinabs_cnn_in_memory_with_open_shapes(rng):
    g = from_nir(make_sinabs_cnn(rng))
    assert g.nodes["0"].input_hw == (8, 8) and g.nodes["3"].input_type == (4, 4, 4)


def test_sinabs_batch_shaped_neuron_params_take_the_conv_shape(rng):
    g = from_nir(make_sinabs_cnn(rng, batch_params=True))
    assert g.nodes["1"].r.shape == (4, 8, 8) and g.nodes["5"].r.shape == (10,)
    assert g.nodes["1"].metadata["nir_param_shape"] == "(1, 4, 8, 8)"
    assert g.nodes["2"].input_chw == (4, 8, 8)


def test_sinabs_round_trip(tmp_path, rng):
    g = read_nir(sinabs_file(tmp_path, rng))
    assert_round_trip(tmp_path, g)


# ---------------------------------------------------------------------------------- snnTorch

def test_snntorch_recurrent_subgraph_is_flattened(tmp_path, rng):
    path = tmp_path / "snntorch.nir"
    nir.write(path, make_snntorch_rsynaptic(rng))
    g = read_nir(path)
    assert set(g.nodes) == {"input", "fc1", "rsyn1/lif", "rsyn1/w_rec", "fc2", "lif2", "output"}
    assert set(g.edges) == {("input", "fc1"), ("fc1", "rsyn1/lif"),
                            ("rsyn1/lif", "rsyn1/w_rec"), ("rsyn1/w_rec", "rsyn1/lif"),
                            ("rsyn1/lif", "fc2"), ("fc2", "lif2"), ("lif2", "output")}
    assert isinstance(g.nodes["rsyn1/lif"], ir.CubaLIF)
    rec = g.nodes["rsyn1/w_rec"]
    assert isinstance(rec, ir.Affine) and rec.metadata["nir_type"] == "Linear"
    assert not np.any(rec.bias) and rec.bias.dtype == np.float32
    assert g.metadata["nir_subgraph_metadata"] == {"rsyn1": {"source": "snntorch RSynaptic"}}
    src = make_snntorch_rsynaptic(np.random.default_rng(1234))
    lif = src.nodes["rsyn1"].nodes["lif"]
    mismatches = sum(count_mismatches(getattr(g.nodes["rsyn1/lif"], f), getattr(lif, f))
                     for f in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset",
                               "w_in"))
    mismatches += count_mismatches(rec.weight, src.nodes["rsyn1"].nodes["w_rec"].weight)
    assert mismatches == 0


def test_snntorch_round_trip_nests_the_subgraph_again(tmp_path, rng):
    path = tmp_path / "snntorch.nir"
    nir.write(path, make_snntorch_rsynaptic(rng))
    g = read_nir(path)
    out = write_nir(g, tmp_path / "again.nir")
    plain = nir.read(out)  # type-checked by nir itself
    sub = plain.nodes["rsyn1"]
    assert isinstance(sub, nir.NIRGraph)
    assert {type(n).__name__ for n in sub.nodes.values()} == {"Input", "CubaLIF", "Linear",
                                                               "Output"}
    assert ("w_rec", "lif") in [tuple(e) for e in sub.edges]
    assert isinstance(plain.nodes["fc2"], nir.Linear)
    assert_same_graph(g, read_nir(out))


def test_recurrent_edge_into_a_flat_graph_is_kept(rng):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])),
               "fc": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
               "lif": nir.LIF(tau=np.full(3, 2e-4), r=np.ones(3), v_leak=np.zeros(3),
                              v_threshold=np.ones(3), v_reset=np.zeros(3)),
               "rec": nir.Linear(weight=rng.normal(size=(3, 3))),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
               ("lif", "output")])
    assert ("rec", "lif") in from_nir(g).edges


# ------------------------------------------------------------------------------------- norse

def test_norse_scalars_and_batch_dimension(tmp_path, rng):
    path = tmp_path / "norse.nir"
    nir.write(path, make_norse_lif(rng), compression=None)  # gzip cannot store 0-d arrays
    g = read_nir(path)
    assert g.nodes["input"].shape == (4,) and g.nodes["output"].shape == (2,)
    assert g.nodes["input"].metadata["nir_declared_shape"] == "(1, 4)"
    assert g.nodes["output"].metadata["nir_declared_shape"] == "(1, 2)"
    lif, li = g.nodes["1"], g.nodes["3"]
    assert isinstance(lif, ir.LIF) and lif.tau.shape == (3,) and li.tau.shape == (2,)
    assert lif.metadata["nir_param_shape"] == "()"
    mismatches = count_mismatches(lif.tau, np.full(3, np.float32(1e-5)))
    mismatches += count_mismatches(li.tau, np.full(2, np.float32(2e-5)))
    mismatches += count_mismatches(lif.v_threshold, np.ones(3))
    assert mismatches == 0
    assert_round_trip(tmp_path, g)


def test_batch_dimension_is_kept_when_the_graph_uses_it(rng):
    """Input (1, 4) into a Conv1d with 1 channel is a real shape, not a batch dimension."""
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 4])),
               "conv": nir.Conv1d(input_shape=4, weight=np.ones((2, 1, 1)), stride=1,
                                  padding=0, dilation=1, groups=1, bias=np.zeros(2)),
               "output": nir.Output(np.array([2, 4]))},
        edges=[("input", "conv"), ("conv", "output")])
    out = from_nir(g)
    assert out.nodes["input"].shape == (1, 4)
    assert "nir_declared_shape" not in out.nodes["input"].metadata


def test_batch_dimension_that_fits_nothing_is_an_error(rng):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 4])),
               "fc": nir.Affine(weight=np.ones((2, 5)), bias=np.zeros(2)),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "fc"), ("fc", "output")], type_check=False)
    with pytest.raises(GraphError, match=r"node 'fc' \(Affine\): inconsistent shapes: edge "
                                         r"input -> fc carries \(1, 4\) but fc takes \(5,\)"):
        from_nir(g)


def test_norse_export_reads(tmp_path):
    torch = pytest.importorskip("torch")
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(4, 3), norse.LIFBoxCell(),
                                  torch.nn.Linear(3, 2), norse.LIBoxCell())
    with pytest.warns(Warning):  # nirtorch's deprecated API
        graph = norse.to_nir(model, torch.zeros(1, 4))
    path = tmp_path / "norse_export.nir"
    nir.write(path, graph, compression=None)
    g = read_nir(path)
    assert g.nodes["input"].shape == (4,) and g.nodes["output"].shape == (2,)
    assert isinstance(g.nodes["1"], ir.LIF) and g.nodes["1"].tau.shape == (3,)
    assert isinstance(g.nodes["3"], ir.LI) and g.nodes["3"].tau.shape == (2,)
    w = model[0].weight.detach().numpy()
    assert count_mismatches(g.nodes["0"].weight, w) == 0
    # norse 1.1.0 writes tau = dt / tau_mem_inv (its #411): 1e-3 / 100, not 1e-2
    assert np.allclose(g.nodes["1"].tau, 1e-5)
    assert_round_trip(tmp_path, g)


def test_norse_none_node_is_named():
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([4])), "2": None,
                            "output": nir.Output(np.array([4]))},
                     edges=[("input", "2"), ("2", "output")], type_check=False)
    with pytest.raises(GraphError, match="node '2': is None, not a NIR node"):
        from_nir(g)


# ---------------------------------------------------------------------------------- rockpool

def test_rockpool_cuba_network(tmp_path, rng):
    path = tmp_path / "rockpool.nir"
    nir.write(path, make_rockpool_cuba(rng))
    g = read_nir(path)
    assert isinstance(g.nodes["1_LIFTorch"], ir.CubaLIF)
    assert isinstance(g.nodes["3_ExpSynTorch"], ir.LI)
    assert g.nodes["0_LinearTorch"].metadata["nir_type"] == "Linear"
    src = make_rockpool_cuba(np.random.default_rng(1234))
    lif = src.nodes["1_LIFTorch"]
    mismatches = sum(count_mismatches(getattr(g.nodes["1_LIFTorch"], f), getattr(lif, f))
                     for f in ("tau_syn", "tau_mem", "r", "v_threshold", "w_in"))
    assert mismatches == 0
    again = assert_round_trip(tmp_path, g)
    assert isinstance(nir.read(tmp_path / "round_trip.nir").nodes["2_LinearTorch"], nir.Linear)
    assert again.nodes["2_LinearTorch"].metadata["nir_type"] == "Linear"


# ------------------------------------------------------------------- every node, both ways

def _cases():
    r = np.random.default_rng(7)
    n3 = lambda v: np.full(3, v)  # noqa: E731
    return {
        "Affine": (3, ir.Affine(weight=r.normal(size=(3, 3)), bias=r.normal(size=3))),
        "Linear": (3, ir.Affine(weight=r.normal(size=(3, 3)).astype(np.float32),
                                bias=np.zeros(3, np.float32), metadata={"nir_type": "Linear"})),
        "Scale": (3, ir.Scale(scale=r.normal(size=3))),
        "Threshold": (3, ir.Threshold(threshold=n3(0.5))),
        "Delay": (3, ir.Delay(delay=n3(2e-4))),
        "I": (3, ir.Integrator(r=n3(2.0))),
        "IF": (3, ir.IF(r=n3(1.0), v_threshold=n3(1.0), v_reset=n3(0.0))),
        "LI": (3, ir.LI(tau=n3(2e-4), r=n3(1.0), v_leak=n3(0.1))),
        "LIF": (3, ir.LIF(tau=n3(2e-4), r=n3(1.0), v_leak=n3(0.0), v_threshold=n3(1.0),
                          v_reset=n3(0.0))),
        "CubaLI": (3, ir.CubaLI(tau_syn=n3(3e-4), tau_mem=n3(2e-4), r=n3(2.0), v_leak=n3(0.0),
                                w_in=n3(3.0))),
        "CubaLIF": (3, ir.CubaLIF(tau_syn=n3(3e-4), tau_mem=n3(2e-4), r=n3(2.0),
                                  v_leak=n3(0.0), v_threshold=n3(1.0), v_reset=n3(0.0),
                                  w_in=n3(3.0))),
        "Conv1d": ((2, 5), ir.Conv1d(weight=r.normal(size=(4, 2, 3)), bias=r.normal(size=4),
                                     input_length=5, padding=1)),
        "Conv2d": ((2, 5, 5), ir.Conv2d(weight=r.normal(size=(4, 1, 3, 3)),
                                        bias=r.normal(size=4), input_hw=(5, 5), stride=(2, 2),
                                        padding=(1, 1), groups=2)),
        "SumPool2d": ((2, 4, 4), ir.SumPool2d(kernel_size=(2, 2), stride=(2, 2),
                                              padding=(0, 0), input_chw=(2, 4, 4))),
        "AvgPool2d": ((2, 4, 4), ir.AvgPool2d(kernel_size=(3, 3), stride=(1, 1),
                                              padding=(1, 1), input_chw=(2, 4, 4))),
        "Flatten": ((2, 4, 4), ir.Flatten(input_type=(2, 4, 4), start_dim=1)),
    }


@pytest.mark.parametrize("nir_type", list(_cases()))
def test_every_standard_node_round_trips(tmp_path, nir_type):
    in_shape, node = _cases()[nir_type]
    in_shape = in_shape if isinstance(in_shape, tuple) else (in_shape,)
    g = Graph(nodes={"input": ir.Input(shape=in_shape), "x": node,
                     "output": ir.Output(shape=node.output_shape)},
              edges=(("input", "x"), ("x", "output")), metadata={"dt": 1e-4})
    path = write_nir(g, tmp_path / f"{nir_type}.nir")
    with h5py.File(path) as f:
        assert f["node/nodes/x/type"][()].decode() == nir_type
    # groups > 1: NIR 1.0.8's own type inference ignores groups (nir.md §5.1)
    nir.read(path, type_check=nir_type != "Conv2d")
    assert_same_graph(g, read_nir(path))


def test_input_ports_and_extensions_stay_readable(tmp_path, tiny_graph):
    g = read_nir(write_nir(tiny_graph, tmp_path / "m.nir"))
    assert not any("nir_param_shape" in n.metadata or "nir_declared_shape" in n.metadata
                   for n in g.nodes.values())
    assert_same_graph(tiny_graph, g)


# ------------------------------------------------------------------------------------ errors

def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_unsupported_node_type_in_memory_lists_supported():
    @dataclasses.dataclass(eq=False)
    class Spiky(nir.NIRNode):
        def __post_init__(self):
            self.input_type = {"input": np.array([2])}
            self.output_type = {"output": np.array([2])}

    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "s": Spiky(),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "s"), ("s", "output")], type_check=False)
    with pytest.raises(GraphError, match="node 's': unsupported NIR node type 'Spiky'; "
                                         "supported: Input, Output, NIRGraph, Affine") as e:
        from_nir(g)
    assert "CubaLIF" in one_line(e) and "SpikingSelfAttention" in one_line(e)


def test_extension_node_of_another_tool_inside_a_subgraph(tmp_path):
    @dataclasses.dataclass(eq=False)
    class SynSenseThing(nir.NIRNode):
        gain: np.ndarray

        def __post_init__(self):
            self.input_type = {"input": np.array([2])}
            self.output_type = {"output": np.array([2])}

    sub = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "x": SynSenseThing(np.ones(2)),
                              "output": nir.Output(np.array([2]))},
                       edges=[("input", "x"), ("x", "output")], type_check=False)
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "g": sub,
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "g"), ("g", "output")], type_check=False)
    path = tmp_path / "ext.nir"
    nir.write(path, g)
    with pytest.raises(AssertionError):  # what plain nir does
        nir.read(path)
    with pytest.raises(GraphError, match=r"ext.nir: node 'g/x': type 'SynSenseThing' is an "
                                         r"extension of another tool; only standard NIR nodes \("
                                         ".*nmc-deploy's extensions") as e:
        read_nir(path)
    one_line(e)


def test_inconsistent_fan_in_shapes(tmp_path):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([4])),
               "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
               "b": nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2)),
               "lif": nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3),
                              v_threshold=np.ones(3), v_reset=np.zeros(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")],
        type_check=False)
    nir.write(tmp_path / "fan.nir", g)
    with pytest.raises(GraphError, match=r"node 'lif' \(LIF\): inconsistent shapes: edge a -> "
                                         r"lif carries \(3,\) but edge b -> lif carries "
                                         r"\(2,\)") as e:
        read_nir(tmp_path / "fan.nir")
    one_line(e)


def test_inconsistent_parameter_shape():
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([4])),
               "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
               "lif": nir.LIF(tau=np.ones(5), r=np.ones(5), v_leak=np.zeros(5),
                              v_threshold=np.ones(5), v_reset=np.zeros(5)),
               "output": nir.Output(np.array([5]))},
        edges=[("input", "a"), ("a", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(GraphError, match=r"node 'lif' \(LIF\): inconsistent shapes: edge a -> "
                                         r"lif carries \(3,\) but lif takes \(5,\)"):
        from_nir(g)


def test_shape_that_cannot_be_inferred_names_the_node():
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2, 4, 4])),
               "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                     padding=np.array([0, 0])),
               "output": nir.Output(np.array([2, 2, 2]))},
        edges=[("pool", "output")], type_check=False)
    with pytest.raises(GraphError, match=r"node 'pool' \(SumPool2d\): cannot infer its input "
                                         "shape"):
        from_nir(g)


def test_edge_to_a_missing_node_is_named(tmp_path):
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "ghost"), ("input", "output")], type_check=False)
    nir.write(tmp_path / "dangling.nir", g)
    with pytest.raises(GraphError, match="edge input -> ghost: node 'ghost' does not exist") as e:
        read_nir(tmp_path / "dangling.nir")
    one_line(e)


def test_edge_to_a_missing_node_inside_a_subgraph(rng):
    g = make_snntorch_rsynaptic(rng)
    g.nodes["rsyn1"].edges.append(("lif", "nope"))
    with pytest.raises(GraphError, match="edge rsyn1/lif -> rsyn1/nope: node 'rsyn1/nope' "
                                         "does not exist"):
        from_nir(g)


@pytest.mark.parametrize("missing", ["Input", "Output"])
def test_subgraph_without_input_or_output(tmp_path, rng, missing):
    g = make_snntorch_rsynaptic(rng)
    sub = g.nodes["rsyn1"]
    drop = "input" if missing == "Input" else "output"
    del sub.nodes[drop]
    sub.edges[:] = [e for e in sub.edges if drop not in e]
    path = tmp_path / "sub.nir"
    nir.write(path, g)
    with pytest.raises(GraphError, match=f"node 'rsyn1': subgraph without {missing} node") as e:
        read_nir(path)
    one_line(e)


def test_malformed_node_fields_are_one_line(tmp_path):
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                            "t": nir.Threshold(threshold=np.ones(2)),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "t"), ("t", "output")])
    nir.write(tmp_path / "bad.nir", g)
    with h5py.File(tmp_path / "bad.nir", "r+") as f:
        del f["node/nodes/t/threshold"]
    with pytest.raises(InputFileError, match=r"bad.nir: node 't' \(Threshold\): cannot be "
                                             "read") as e:
        read_nir(tmp_path / "bad.nir")
    one_line(e)


# ------------------------------------------------------------------ nesting, ports, padding

def _lif(n, threshold=1.0):
    return nir.LIF(tau=np.full(n, 2e-4), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.full(n, threshold), v_reset=np.zeros(n))


def make_two_level(rng):
    """outer: input -> a (NIRGraph containing NIRGraph b) -> c (NIRGraph) -> output."""
    inner = nir.NIRGraph(nodes={"in": nir.Input(np.array([3])), "lif": _lif(3),
                                "out": nir.Output(np.array([3]))},
                         edges=[("in", "lif"), ("lif", "out")])
    a = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                            "fc": nir.Affine(weight=rng.normal(size=(3, 2)), bias=np.zeros(3)),
                            "b": inner, "output": nir.Output(np.array([3]))},
                     edges=[("input", "fc"), ("fc", "b"), ("b", "output")])
    c = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "lif": _lif(3, 0.5),
                            "output": nir.Output(np.array([3]))},
                     edges=[("input", "lif"), ("lif", "output")])
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": a, "c": c,
                               "output": nir.Output(np.array([3]))},
                        edges=[("input", "a"), ("a", "c"), ("c", "output")])


def test_two_levels_of_nesting_flatten_and_nest_again(tmp_path, rng):
    path = tmp_path / "nested.nir"
    nir.write(path, make_two_level(rng))
    g = read_nir(path)
    assert set(g.nodes) == {"input", "a/fc", "a/b/lif", "c/lif", "output"}
    assert set(g.edges) == {("input", "a/fc"), ("a/fc", "a/b/lif"), ("a/b/lif", "c/lif"),
                            ("c/lif", "output")}
    out = write_nir(g, tmp_path / "again.nir")
    plain = nir.read(out)
    assert isinstance(plain.nodes["a"].nodes["b"], nir.NIRGraph)
    assert_same_graph(g, read_nir(out))


def test_subgraph_inputs_addressed_by_port():
    sub = nir.NIRGraph(nodes={"x": nir.Input(np.array([2])), "y": nir.Input(np.array([2])),
                              "sx": nir.Scale(scale=np.full(2, 2.0)),
                              "sy": nir.Scale(scale=np.full(2, 3.0)),
                              "output": nir.Output(np.array([2]))},
                       edges=[("x", "sx"), ("y", "sy"), ("sx", "output"), ("sy", "output")],
                       type_check=False)
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                            "p": nir.Scale(scale=np.ones(2)), "g": sub,
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "p"), ("input", "g.x"), ("p", "g.y"), ("g", "output")],
                     type_check=False)
    out = from_nir(g)
    assert set(out.edges) == {("input", "p"), ("input", "g/sx"), ("p", "g/sy"),
                              ("g/sx", "output"), ("g/sy", "output")}
    g.edges[1] = ("input", "g")
    with pytest.raises(GraphError, match=r"edge input -> g: subgraph 'g' has 2 Input nodes "
                                         r"\(x, y\); address one as 'g.<input name>'"):
        from_nir(g)


def test_conv_padding_strings_become_integers(rng):
    w = rng.normal(size=(2, 1, 3, 3))
    for padding, hw in (("same", (6, 6)), ("valid", (4, 4))):
        g = nir.NIRGraph(
            nodes={"input": nir.Input(np.array([1, 6, 6])),
                   "conv": nir.Conv2d(input_shape=None, weight=w, stride=1, padding=padding,
                                      dilation=1, groups=1, bias=np.zeros(2)),
                   "output": nir.Output(np.array([2, *hw]))},
            edges=[("input", "conv"), ("conv", "output")], type_check=False)
        conv = from_nir(g).nodes["conv"]
        assert conv.padding == ((1, 1) if padding == "same" else (0, 0))
        assert conv.output_shape == (2, *hw)


def test_norse_export_in_memory_with_tensors():
    torch = pytest.importorskip("torch")
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(4, 3), norse.LIFBoxCell())
    with pytest.warns(Warning):
        graph = norse.to_nir(model, torch.zeros(1, 4))
    g = from_nir(graph)  # parameters are torch tensors here
    assert g.nodes["1"].tau.shape == (3,) and g.nodes["input"].shape == (4,)
    assert count_mismatches(g.nodes["0"].bias, model[0].bias.detach().numpy()) == 0


def test_zero_d_parameters_are_written_without_compression(tmp_path):
    z = np.array
    g = Graph(nodes={"input": ir.Input(shape=()),
                     "lif": ir.LIF(tau=z(1e-3), r=z(1.0), v_leak=z(0.0), v_threshold=z(1.0),
                                   v_reset=z(0.0)),
                     "output": ir.Output(shape=())},
              edges=(("input", "lif"), ("lif", "output")))
    assert_round_trip(tmp_path, g, type_check=False)


def test_slash_names_that_cannot_nest_are_refused(tmp_path):
    lif = lambda: ir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),  # noqa: E731
                         v_threshold=np.ones(2), v_reset=np.zeros(2))
    g = Graph(nodes={"input": ir.Input(shape=(2,)), "x": lif(), "g/a": lif(), "g/b": lif(),
                     "output": ir.Output(shape=(2,))},
              edges=(("input", "x"), ("input", "g/a"), ("x", "g/b"), ("g/a", "output"),
                     ("g/b", "output")))
    with pytest.raises(GraphError, match="nested NIR subgraph, but the edges around it cannot "
                                         "be written as one"):
        write_nir(g, tmp_path / "bad.nir")
    assert list(tmp_path.iterdir()) == []
