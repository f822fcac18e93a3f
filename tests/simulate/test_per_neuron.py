"""Per-neuron thresholds and leaks (sLIF) compile, simulate, and match Lava exactly."""
import warnings

import numpy as np
import pytest

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.ir import Affine, Graph, Input, Integrator, LIF, Output
from nmc_deploy.simulate.reference import simulate_float, simulate_reference


def per_neuron_graph(rng, n_in=64, n_hidden=40, n_out=10):
    dt = 1e-4
    k = rng.uniform(0.3, 0.9, n_hidden)  # input gain 1/tau per neuron
    th = rng.uniform(0.5, 1.5, n_hidden)
    nodes = {
        "input": Input(shape=(1, 8, 8)),
        "fc": Affine(weight=rng.normal(0, 0.6, (n_hidden, n_in)), bias=rng.uniform(0, 0.3, n_hidden)),
        "lif": LIF(tau=dt / k, r=np.ones(n_hidden), v_leak=np.zeros(n_hidden),
                   v_threshold=th, v_reset=np.zeros(n_hidden),
                   metadata={"threshold_comparison": ">="}),
        "head": Affine(weight=rng.normal(0, 1, (n_out, n_hidden)), bias=np.zeros(n_out)),
        "mean": Integrator(r=np.full(n_out, 1 / (4 * dt))),
        "output": Output(shape=(n_out,)),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "head"), ("head", "mean"), ("mean", "output")]
    return Graph(nodes, tuple(edges), {"dt": dt, "time_steps": 4, "input_levels": 16})


def test_per_neuron_parameters_quantize_to_vectors_and_track_float(rng, digits):
    g = per_neuron_graph(rng)
    fp = lower_graph(g)
    assert isinstance(fp.populations[0].v_threshold, np.ndarray)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = quantize_program(fp)
    pop = prog.populations[0]
    assert isinstance(pop.dv, np.ndarray) and len(np.unique(pop.dv)) > 10
    x = digits.x_test[:100]
    fl, fx = simulate_float(fp, x), simulate_reference(prog, x)
    agree = np.mean(fl.spikes["lif"] == fx.spikes["lif"])
    assert fx.spikes["lif"].mean() > 0.05 and agree > 0.97


def test_program_with_per_neuron_decays_round_trips(rng, tmp_path):
    from nmc_deploy.program import load_program, save_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = quantize_program(lower_graph(per_neuron_graph(rng)))
    save_program(prog, tmp_path)
    back = load_program(tmp_path)
    assert np.array_equal(back.populations[0].dv, prog.populations[0].dv)


@pytest.mark.lava
def test_per_neuron_lif_equals_lava(rng, digits):
    from nmc_deploy.simulate.lava.backend import simulate_lava

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = quantize_program(lower_graph(per_neuron_graph(rng)))
    x = digits.x_test[:5]
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    assert ref.spikes["lif"].sum() > 50
    assert np.count_nonzero(ref.spikes["lif"] != lav.spikes["lif"]) == 0
