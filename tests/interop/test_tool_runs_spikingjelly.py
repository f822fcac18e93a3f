"""spikingjelly 2.0.0 runs itself against our float simulation of the graph its
``export_to_nir`` writes (issue 11, item 1): ``Linear -> LIFNode/IFNode -> Linear -> ...``
with hard reset (spikingjelly refuses to export a soft reset), compiled with
``--convention spikingjelly`` (dt 1e-4, forward Euler, ``v >= theta``, reset to 0). 0 spike
mismatches required.
"""
import warnings

import numpy as np
import pytest
import torch

import nir

sj = pytest.importorskip("spikingjelly.activation_based.neuron")

N_IN, N_H, N_OUT = 5, 8, 3


def sj_net(kind, seed=0):
    rng = np.random.default_rng(seed)

    def lin(n_in, n_out, mean, scale):
        m = torch.nn.Linear(n_in, n_out).double()
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(mean + scale * rng.standard_normal((n_out, n_in))))
            m.bias.copy_(torch.from_numpy(0.05 * rng.standard_normal(n_out)))
        return m

    def cell():
        if kind == "if":
            return sj.IFNode(v_threshold=1.0, v_reset=0.0)
        return sj.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0)

    gain = 2.0 if kind == "lif" else 1.0  # LIFNode adds x / tau (decay_input)
    return torch.nn.Sequential(lin(N_IN, N_H, 0.1 * gain, 0.5 * gain), cell(),
                               lin(N_H, N_OUT, 0.0, 0.6 * gain), cell())


def run_sj(net, x):
    """spikingjelly's own single-step loop; spikes (T, B, n) of both neuron layers."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    outs = {1: [], 3: []}
    with torch.no_grad():
        for t in range(x.shape[1]):
            h = torch.from_numpy(x[:, t])
            for i, m in enumerate(net):
                h = m(h)
                if i in outs:
                    outs[i].append(h.numpy().astype(bool))
    return [np.stack(outs[i]) for i in (1, 3)]


def compile_sj(net, tmp_path):
    from spikingjelly.activation_based.nir_exchange.to_nir import export_to_nir

    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.ir.conventions import apply_timing, resolve_timing
    from nmc_deploy.nirio import read_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(1, N_IN, dtype=torch.float64))
    path = tmp_path / "net.nir"
    nir.write(str(path), graph)
    g = read_nir(path)
    return graph, lower_graph(apply_timing(g, resolve_timing(g, convention="spikingjelly")))


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_spikingjelly_run_equals_float_simulation(kind, tmp_path):
    from nmc_deploy.simulate.reference import simulate_float

    net = sj_net(kind)
    graph, fp = compile_sj(net, tmp_path)
    rng = np.random.default_rng(2)
    x = (rng.random((4, 40, N_IN)) < 0.5).astype(np.float64)
    result = simulate_float(fp, x)
    names = [n for n, v in graph.nodes.items() if isinstance(v, (nir.LIF, nir.IF))]
    assert len(names) == 2
    names.sort(key=lambda n: list(graph.nodes).index(n))
    for name, theirs in zip(names, run_sj(net, x)):
        assert 0.05 < theirs.mean() < 0.95, (name, theirs.mean())
        assert int(np.count_nonzero(result.spikes[name] != theirs)) == 0, name


@pytest.mark.lava
def test_spikingjelly_reference_equals_lava(tmp_path):
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    _, fp = compile_sj(sj_net("lif"), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(fp)
    x = (np.random.default_rng(5).random((2, 10, N_IN)) < 0.5).astype(np.int64)
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    for pop, s in ref.spikes.items():
        assert np.count_nonzero(s != lav.spikes[pop]) == 0, pop
