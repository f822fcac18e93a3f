"""Lowering and quantizing the standard NIR neurons (IF, LIF exact, CubaLIF, LI, CubaLI),
AvgPool2d, Delay and self-recurrence; recurrent topological order; sequence inputs."""
import warnings

import numpy as np
import pytest

from nmc_deploy.compile.lower import delay_steps, lower_graph
from nmc_deploy.compile.matrices import sumpool2d_matrix
from nmc_deploy.program import load_program, save_program
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.errors import LoweringError, QuantizationWarning, SimulationError
from nmc_deploy.ir import (IF, LI, LIF, Affine, AvgPool2d, CubaLIF, Delay, Flatten, Graph, Input,
                           Output, topo_order)
from nmc_deploy.ir.graph import back_edges, split_port

DT = 1e-3


def full(v, n):
    return np.full(n, float(v))


def chain(neuron, n_in=5, n=4, rng=None, pre=(), md=None):
    """input -> [pre nodes] -> fc -> neuron -> output."""
    rng = rng or np.random.default_rng(0)
    w = rng.normal(0.5, 0.3, (n, n_in))
    nodes = {"input": Input(shape=(n_in,)), **dict(pre),
             "fc": Affine(weight=w, bias=full(0.1, n)), "neuron": neuron,
             "output": Output(shape=(n,))}
    names = ["input", *dict(pre), "fc", "neuron", "output"]
    edges = tuple(zip(names[:-1], names[1:]))
    return Graph(nodes, edges, {"dt": DT, "time_steps": 4, "input_levels": 1, **(md or {})}), w


def quantize_quietly(fp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(fp)


def test_back_edges_and_topo_order_of_a_recurrent_graph():
    n = 3
    lif = LIF(tau=full(2 * DT, n), r=full(1, n), v_leak=full(0, n), v_threshold=full(1, n),
              v_reset=full(0, n))
    nodes = {"input": Input(shape=(n,)), "fc": Affine(weight=np.eye(n), bias=full(0, n)),
             "lif": lif, "rec": Affine(weight=np.eye(n), bias=full(0, n)),
             "output": Output(shape=(n,))}
    edges = (("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output"))
    g = Graph(nodes, edges, {"dt": DT})
    assert back_edges(g) == [("rec", "lif")]
    assert topo_order(g) == ["input", "fc", "lif", "rec", "output"]


def test_acyclic_graph_has_no_back_edges_and_a_valid_order(tiny_graph):
    assert back_edges(tiny_graph) == []
    order = topo_order(tiny_graph)
    pos = {n: i for i, n in enumerate(order)}
    assert all(pos[a] < pos[split_port(b, tiny_graph.nodes)[0]] for a, b in tiny_graph.edges)


def test_if_has_no_leak_and_gain_r_dt():
    g, w = chain(IF(r=full(250, 4), v_threshold=full(1, 4), v_reset=full(0, 4)))
    fp = lower_graph(g)
    pop = fp.population("neuron")
    assert pop.alpha == 1.0 and np.allclose(pop.bias, 250 * DT * 0.1)
    assert np.allclose(fp.groups[0].weight.toarray(), 250 * DT * w)
    assert quantize_quietly(fp).population("neuron").dv == 0


def test_exact_integrator_uses_exponential_decay():
    tau = np.array([2, 3, 4, 5]) * DT
    lif = LIF(tau=tau, r=full(2, 4), v_leak=full(0.5, 4), v_threshold=full(1, 4),
              v_reset=full(0, 4))
    g, w = chain(lif, md={"integrator": "exact"})
    pop = lower_graph(g).population("neuron")
    k = 1 - np.exp(-DT / tau)
    assert np.allclose(pop.alpha, np.exp(-DT / tau))
    assert np.allclose(pop.bias, 2 * k * 0.1 + 0.5 * k)
    g_euler, _ = chain(lif)
    assert np.allclose(lower_graph(g_euler).population("neuron").alpha, 1 - DT / tau)
    with pytest.raises(LoweringError, match="integrator 'rk4' is not one of"):
        lower_graph(chain(lif, md={"integrator": "rk4"})[0])


def test_cubalif_current_folds_gains_and_decays_exactly():
    cuba = CubaLIF(tau_syn=full(4 * DT, 4), tau_mem=full(8 * DT, 4), r=full(3, 4),
                   v_leak=full(0.2, 4), v_threshold=full(1, 4), v_reset=full(0, 4),
                   w_in=full(2, 4))
    g, w = chain(cuba)
    fp = lower_graph(g)
    pop = fp.population("neuron")
    gain = 2 * 0.25 * 3 * 0.125  # w_in dt/tau_syn r dt/tau_mem
    assert pop.alpha_syn == 0.75 and pop.alpha == 0.875
    assert np.allclose(pop.bias, 0.2 * 0.125)  # v_leak only: the fc bias is a current
    by_src = {gr.source: gr.weight.toarray() for gr in fp.groups}
    assert np.allclose(by_src["input"], gain * w)
    assert np.allclose(by_src["const"], gain * full(0.1, 4)[:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact decays: no rounding warning
        prog = quantize_program(fp)
    assert (prog.population("neuron").du, prog.population("neuron").dv) == (1023, 512)


def test_inexact_current_decay_is_warned():
    cuba = CubaLIF(tau_syn=full(3 * DT, 4), tau_mem=full(8 * DT, 4), r=full(1, 4),
                   v_leak=full(0, 4), v_threshold=full(1, 4), v_reset=full(0, 4), w_in=full(1, 4))
    fp = lower_graph(chain(cuba)[0])
    with pytest.warns(QuantizationWarning, match="neuron: current decay rounded"):
        prog = quantize_program(fp)
    assert prog.population("neuron").du == round(4096 / 3) - 1
    assert "neuron.current" in prog.metadata["quantization"]["decay_rounding"]


def test_avgpool_is_sumpool_over_window_size():
    n_in = 2 * 4 * 4
    pre = {"pool": AvgPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                             input_chw=(2, 4, 4)),
           "flat": Flatten(input_type=(2, 2, 2), start_dim=0)}
    nodes = {"input": Input(shape=(2, 4, 4)), **pre,
             "neuron": IF(r=full(1, 8), v_threshold=full(1, 8), v_reset=full(0, 8)),
             "output": Output(shape=(8,))}
    edges = (("input", "pool"), ("pool", "flat"), ("flat", "neuron"), ("neuron", "output"))
    fp = lower_graph(Graph(nodes, edges, {"dt": 1.0}))
    expected = sumpool2d_matrix((2, 4, 4), (2, 2), (2, 2), (0, 0)).toarray() / 4
    assert fp.groups[0].weight.shape == (8, n_in)
    assert np.allclose(fp.groups[0].weight.toarray(), expected)


def test_delay_steps_must_be_whole_and_uniform():
    assert delay_steps(full(3 * DT, 4), DT, "d") == 3
    with pytest.raises(LoweringError, match="d: delay .* is not a whole number of steps"):
        delay_steps(full(2.5 * DT, 4), DT, "d")
    with pytest.raises(LoweringError, match="d: delays differ across elements"):
        delay_steps(np.array([DT, 2 * DT]), DT, "d")


def test_delay_becomes_a_lag_and_its_constant_starts_late():
    lif = LIF(tau=full(2 * DT, 4), r=full(1, 4), v_leak=full(0, 4), v_threshold=full(1, 4),
              v_reset=full(0, 4))
    g, w = chain(lif)
    nodes = dict(g.nodes)
    nodes["d"] = Delay(delay=full(2 * DT, 4))
    edges = (("input", "fc"), ("fc", "d"), ("d", "neuron"), ("neuron", "output"))
    fp = lower_graph(Graph(nodes, edges, g.metadata))
    assert {(gr.source, gr.lag) for gr in fp.groups} == {("input", 2), ("const", 2)}
    assert not np.any(fp.population("neuron").bias)
    prog = quantize_quietly(fp)
    assert prog.sample_gap == 2 and {gr.delay for gr in prog.groups} == {2}


@pytest.mark.parametrize("cmp,ge", [(">", 0), (">=", 1)])
def test_subtractive_reset_subtracts_the_scaled_threshold(cmp, ge):
    node = IF(r=full(1, 4), v_threshold=np.array([0.5, 1, 2, 3]), v_reset=full(0, 4))
    g, _ = chain(node, md={"reset": "subtract", "threshold_comparison": cmp})
    prog = quantize_quietly(lower_graph(g))
    pop = prog.population("neuron")
    assert pop.reset_subtract == 64 * pop.vth + ge
    g0, _ = chain(node)
    assert quantize_quietly(lower_graph(g0)).population("neuron").reset_subtract == 0


def test_li_readout_reports_voltages_per_step():
    from nmc_deploy.simulate.reference import simulate_float, simulate_reference

    li = LI(tau=full(4 * DT, 4), r=full(1, 4), v_leak=full(0, 4))
    fp = lower_graph(chain(li)[0])
    assert fp.population("neuron").kind == "li" and set(fp.readout.weights) == {"neuron"}
    prog = quantize_quietly(fp)
    x = np.random.default_rng(1).integers(0, 2, (3, 6, 5))
    fl, fx = simulate_float(fp, x), simulate_reference(prog, x)
    assert fx.voltages["neuron"].shape == (6, 3, 4) and fx.voltages["neuron"].dtype == np.int64
    volts = fx.voltages["neuron"] / fx.voltage_scales["neuron"]
    assert np.array_equal(fx.output_steps, volts.transpose(1, 0, 2))
    assert np.allclose(volts, fl.voltages["neuron"], atol=0.02)
    assert not fx.spikes and fx.stats["populations"][0]["spikes"] == 0


def test_program_round_trip_keeps_new_fields(tmp_path):
    cuba = CubaLIF(tau_syn=np.array([2, 4, 8, 4]) * DT, tau_mem=full(8 * DT, 4), r=full(1, 4),
                   v_leak=full(0, 4), v_threshold=full(1, 4), v_reset=full(0, 4),
                   w_in=full(1, 4))
    g, _ = chain(cuba, md={"reset": "subtract"})
    nodes = dict(g.nodes)
    nodes["rec"] = Affine(weight=np.eye(4) * 0.3, bias=full(0.05, 4))
    g = Graph(nodes, g.edges + (("neuron", "rec"), ("rec", "neuron")), g.metadata)
    prog = quantize_quietly(lower_graph(g))
    save_program(prog, tmp_path)
    back = load_program(tmp_path)
    pop, pop_b = prog.population("neuron"), back.population("neuron")
    assert isinstance(pop.du, np.ndarray) and np.array_equal(pop.du, pop_b.du)
    assert pop_b.reset_subtract == pop.reset_subtract > 0
    assert [(gr.name, gr.lag, gr.delay) for gr in back.groups] == \
        [(gr.name, gr.lag, gr.delay) for gr in prog.groups]
    assert any(gr.lag == 1 and gr.source == "neuron" for gr in back.groups)
    assert back.readout.cumulative == prog.readout.cumulative is False


def test_sequence_inputs_set_the_number_of_steps():
    from nmc_deploy.simulate.reference import as_input_sequence, simulate_reference

    g, _ = chain(IF(r=full(1000, 4), v_threshold=full(1, 4), v_reset=full(0, 4)))
    prog = quantize_quietly(lower_graph(g))
    images = np.ones((2, 5), np.int64)
    assert as_input_sequence(prog, images).shape == (2, 4, 5)  # the program's T
    seq = np.ones((2, 7, 5), np.int64)
    assert simulate_reference(prog, seq).spikes["neuron"].shape == (7, 2, 4)
    assert np.array_equal(simulate_reference(prog, images).spikes["neuron"],
                          simulate_reference(prog, seq[:, :4]).spikes["neuron"])
    with pytest.raises(SimulationError, match="needs integer inputs"):
        simulate_reference(prog, seq * 0.5)
    with pytest.raises(SimulationError, match=r"inputs: shape \(2, 7, 6\) is neither"):
        simulate_reference(prog, np.ones((2, 7, 6)))


def test_integrator_readout_per_step_ends_at_the_logits(tiny_program, digits):
    from nmc_deploy.simulate.reference import simulate_reference

    assert tiny_program.sample_gap == 0 and tiny_program.readout.cumulative
    res = simulate_reference(tiny_program, digits.x_test[:3])
    assert res.output_steps.shape == (3, tiny_program.time_steps, 10)
    assert np.allclose(res.output_steps[:, -1], res.logits)


def test_recurrent_group_from_another_population_must_come_first():
    lif = lambda: LIF(tau=full(2 * DT, 4), r=full(1, 4), v_leak=full(0, 4),  # noqa: E731
                      v_threshold=full(1, 4), v_reset=full(0, 4))
    nodes = {"input": Input(shape=(4,)), "a": lif(), "b": lif(),
             "w": Affine(weight=np.eye(4), bias=full(0, 4)), "output": Output(shape=(4,))}
    edges = (("input", "a"), ("a", "b"), ("b", "w"), ("w", "a"), ("b", "output"))
    with pytest.raises(LoweringError, match="recurrent cycle a -> b -> w -> a: passes through "
                                            "2 neuron populations"):
        lower_graph(Graph(nodes, edges, {"dt": DT}))
    nodes["w2"] = Affine(weight=np.eye(4), bias=full(0, 4))
    edges = (("input", "w2"), ("w2", "w2"), ("w2", "a"), ("a", "output"))
    with pytest.raises(LoweringError, match="recurrent cycle w2 -> w2: has no neuron"):
        lower_graph(Graph({k: nodes[k] for k in ("input", "w2", "a", "output")}, edges,
                          {"dt": DT}))
