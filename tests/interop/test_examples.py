"""NIR graphs in other tools' conventions: structure, firing, and nir.write/nir.read round trips."""

import numpy as np
import pytest
import torch

import nir

from oracles.nir_examples import (EXAMPLE_NAMES, example_inputs, make_example,
                                         sinabs_cnn, snntorch_model)
from oracles.nir_executor import count_mismatches, execute_nir

SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)


def run(ex, graph=None, steps=12, seed=0):
    d = ex.discretisation
    x = example_inputs(ex, batch=3, steps=steps, seed=seed)
    return execute_nir(graph if graph is not None else ex.graph, x, dt=d.dt,
                       integrator=d.integrator, threshold_comparison=d.threshold_comparison,
                       reset=d.reset)


def flat_nodes(graph, prefix=""):
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from flat_nodes(node, f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", node


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_round_trips_through_nir_files(name, tmp_path):
    ex = make_example(name)
    path = tmp_path / f"{name}.nir"
    nir.write(str(path), ex.graph)
    for type_check in (True, False):
        back = nir.read(str(path), type_check=type_check)
        assert {n for n, _ in flat_nodes(back)} == {n for n, _ in flat_nodes(ex.graph)}
        a, b = run(ex), run(ex, back)
        assert set(a) == set(b)
        assert sum(count_mismatches(a[k], b[k]) for k in a) == 0
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_layer_fires_but_not_always(name):
    ex = make_example(name)
    assert "dt" not in ex.graph.metadata  # the tools write no timing
    out = run(ex)
    spiking = [n for n, node in flat_nodes(ex.graph) if isinstance(node, SPIKING)]
    assert spiking
    for n in spiking:
        rate = float(out[n].mean())
        assert 0.05 < rate < 0.9, (n, rate)
    for n in ex.voltage_outputs:
        assert float(out[n].abs().max()) > 0


def test_sinabs_graph_leaves_shapes_to_the_reader():
    raw = sinabs_cnn(infer_types=False)
    assert raw.nodes["0"].input_shape is None and raw.nodes["3"].input_shape is None
    assert raw.nodes["6"].input_type["input"] is None
    assert [type(raw.nodes[k]).__name__ for k in "012345678"] == \
        ["Conv2d", "IF", "SumPool2d", "Conv2d", "IF", "SumPool2d", "Flatten", "Affine", "IF"]
    ex = make_example("sinabs")
    inferred = run(ex)
    as_sinabs_writes = run(ex, raw)
    assert sum(count_mismatches(inferred[k], as_sinabs_writes[k]) for k in inferred) == 0
    # subtract reset (sinabs' default) changes the spikes of the same graph
    sub = make_example("sinabs_subtract")
    assert count_mismatches(run(sub)["1"], inferred["1"]) > 0


def test_snntorch_nested_recurrent_subgraph_equals_flat_export():
    nested, flat = make_example("snntorch"), make_example("snntorch_flat")
    sub = nested.graph.nodes["rsyn"]
    assert isinstance(sub, nir.NIRGraph)
    assert isinstance(sub.nodes["lif"], nir.CubaLIF) and isinstance(sub.nodes["w_rec"], nir.Affine)
    assert ("w_rec", "lif") in [tuple(e) for e in sub.edges]
    assert {"rsyn.lif", "rsyn.w_rec"} <= set(flat.graph.nodes)
    lif = sub.nodes["lif"]  # snnTorch's formulas with dt = 1e-4, alpha 0.5, beta 0.75
    np.testing.assert_allclose(lif.tau_syn, 2e-4, rtol=1e-6)
    np.testing.assert_allclose(lif.tau_mem, 4e-4, rtol=1e-6)
    np.testing.assert_allclose(lif.r, 4.0, rtol=1e-6)
    np.testing.assert_allclose(lif.w_in, 2.0, rtol=1e-6)
    a, b = run(nested, steps=20), run(flat, steps=20)
    assert count_mismatches(a["rsyn/lif"], b["rsyn.lif"]) == 0
    assert count_mismatches(a["output"], b["output"]) == 0


def test_snntorch_example_is_snntorchs_own_export():
    """The nested graph holds the parameters of the snnTorch module (weights as exported)."""
    net = snntorch_model()
    g = make_example("snntorch").graph
    np.testing.assert_array_equal(g.nodes["fc1"].weight, net.fc1.weight.detach().numpy())
    np.testing.assert_array_equal(g.nodes["rsyn"].nodes["w_rec"].weight,
                                  net.rsyn.recurrent.weight.detach().numpy())
    np.testing.assert_array_equal(g.nodes["fc2"].bias, net.fc2.bias.detach().numpy())


def test_norse_example_has_tau_in_seconds_and_no_batch_dim():
    g = make_example("norse").graph
    lifs = [n for n in g.nodes.values() if isinstance(n, nir.LIF)]
    assert len(lifs) == 2
    np.testing.assert_allclose(lifs[0].tau, 1 / 200.0)  # norse 1.1.0 would write 5e-6
    np.testing.assert_allclose(lifs[1].tau, 1 / 100.0)
    assert all(np.all(n.r == 1) for n in lifs)
    assert list(g.nodes["input"].input_type["input"]) == [4]
    assert list(g.nodes["output"].output_type["output"]) == [3]


def test_rockpool_example_hides_dt_in_r_and_ends_in_li():
    import math

    ex = make_example("rockpool")
    cuba = [n for n in ex.graph.nodes.values() if isinstance(n, nir.CubaLIF)]
    li = [n for n in ex.graph.nodes.values() if isinstance(n, nir.LI)]
    assert len(cuba) == 1 and len(li) == 1 and ex.voltage_outputs
    tau = np.asarray(cuba[0].tau_mem, np.float64)
    expect_r = tau * np.exp(-1e-3 / tau) / 1e-3
    np.testing.assert_allclose(cuba[0].r, expect_r, rtol=1e-6)
    assert np.all(cuba[0].w_in == 1) and np.all(cuba[0].v_leak == 0)
    assert math.isclose(float(li[0].r[0]), 0.02 * math.exp(-1e-3 / 0.02) / 1e-3, rel_tol=1e-6)
