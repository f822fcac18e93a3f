"""sinabs 3.1.3 runs itself against our float simulation of the graph its ``to_nir`` writes
(issue 11, item 1): ``Linear -> IAF/LIF -> Linear -> IAF/LIF`` and a CNN, compiled with
``--convention sinabs`` (dt = 1 step, exact decays, ``v >= theta``), reset by subtraction
(default) or to zero (``MembraneReset``), with one spike per step (``SingleSpike``: compiled
with ``spikes="single"``) or sinabs' default ``MultiSpike`` (floor(v/theta) spikes per step,
the preset's rule, lowered as a graded payload), without or with ``min_v_mem``. Spike counts
compared entry for entry, 0 mismatches required; reference == Lava on multi-spike graphs.
"""
import warnings

import numpy as np
import pytest
import torch

import nir

sinabs = pytest.importorskip("sinabs")
sl = pytest.importorskip("sinabs.layers")

N_IN, N_H, N_OUT = 5, 8, 3


def sinabs_net(kind, reset, spike_fn=None, seed=0, w1=(0.05, 0.5), w2=(0.0, 0.5),
               min_v_mem=None):
    from sinabs.activation import MembraneReset, MembraneSubtract, SingleSpike

    rng = np.random.default_rng(seed)
    spike_fn = spike_fn or SingleSpike
    reset_fn = MembraneReset() if reset == "zero" else MembraneSubtract()

    def neuron(n):
        if kind == "iaf":
            return sl.IAF(spike_fn=spike_fn, reset_fn=reset_fn, min_v_mem=min_v_mem)
        return sl.LIF(tau_mem=torch.full((n,), 4.0), spike_threshold=torch.ones(n),
                      spike_fn=spike_fn, reset_fn=reset_fn, min_v_mem=min_v_mem)

    def lin(n_in, n_out, mean, scale):
        m = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(mean + scale * rng.standard_normal((n_out, n_in))))
            m.bias.copy_(torch.from_numpy(0.05 * rng.standard_normal(n_out)))
        return m

    gain = 4.0 if kind == "lif" else 1.0  # LIF adds (1 - alpha) x (norm_input)
    w1, w2 = (gain * w1[0] + 0.1 * (gain > 1), gain * w1[1]), (gain * w2[0], gain * w2[1])
    return torch.nn.Sequential(lin(N_IN, N_H, *w1), neuron(N_H), lin(N_H, N_OUT, *w2),
                               neuron(N_OUT))


def export(net):
    from oracles.nir_examples import _as_numpy_graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = sinabs.to_nir(net, torch.zeros(1, 1, N_IN))
    return _as_numpy_graph(graph)


def ours(graph, x, tmp_path, reset, **rule):
    """Our float simulation of ``graph`` written and read back as a file, compiled with
    ``--convention sinabs``, ``--reset`` and the spike rule ``rule`` (``spikes``,
    ``v_min``; None: the preset's, sinabs from_nir's MultiSpike and -theta on IF)."""
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.ir.conventions import apply_timing, resolve_timing
    from nmc_deploy.nirio import read_nir
    from nmc_deploy.simulate.reference import simulate_float

    path = tmp_path / "net.nir"
    nir.write(str(path), graph)
    g = read_nir(path)
    fp = lower_graph(apply_timing(g, resolve_timing(g, convention="sinabs", reset=reset,
                                                    **rule)))
    return fp, simulate_float(fp, x)


SINGLE = {"spikes": "single", "v_min": "none"}  # a model trained with SingleSpike, no clamp


def theirs(net, x):
    """sinabs' own run, every spiking layer's output (T, B, n) as sinabs counts spikes."""
    outs, h = [], torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        for m in net:
            m.reset_states() if hasattr(m, "reset_states") else None
            h = m(h)
            if isinstance(m, (sl.IAF, sl.LIF)):
                outs.append(h.numpy().transpose(1, 0, 2))
    return outs


def spiking_names(graph):
    return [n for n, v in graph.nodes.items() if isinstance(v, (nir.IF, nir.LIF))]


def inputs(seed=2, B=4, T=40):
    rng = np.random.default_rng(seed)
    return (rng.random((B, T, N_IN)) < 0.5).astype(np.float64)


@pytest.mark.parametrize("kind", ["iaf", "lif"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_sinabs_single_spike_equals_float_simulation(kind, reset, tmp_path):
    net = sinabs_net(kind, reset)
    graph = export(net)
    names = spiking_names(graph)
    assert len(names) == 2
    x = inputs()
    _, result = ours(graph, x, tmp_path, reset, **SINGLE)
    for name, t in zip(names, theirs(net, x)):
        assert 0.05 < t.mean() < 0.95, (name, t.mean())
        assert int(np.count_nonzero(result.spikes[name] != t)) == 0, name


@pytest.mark.lava
def test_sinabs_reference_equals_lava(tmp_path):
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    fp, _ = ours(export(sinabs_net("lif", "subtract")), inputs(), tmp_path, "subtract",
                 **SINGLE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(fp)
    x = inputs(seed=4, B=2, T=10)
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    for pop, s in ref.spikes.items():
        assert np.count_nonzero(s != lav.spikes[pop]) == 0, pop


def sinabs_cnn(reset, B, seed=0):
    """Conv2d -> IAF -> SumPool2d -> Conv2d -> IAF -> Flatten -> Linear -> IAF (SingleSpike),
    sinabs' Squeeze layers (batch and time merged), the shape of the NIR paper's CNN."""
    from sinabs.activation import MembraneReset, MembraneSubtract, SingleSpike

    rng = np.random.default_rng(seed)
    reset_fn = MembraneReset() if reset == "zero" else MembraneSubtract()

    def iaf():
        return sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, reset_fn=reset_fn)

    def param(m, mean, scale):
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(mean + scale * rng.standard_normal(m.weight.shape)))
            m.bias.zero_()
        return m

    return torch.nn.Sequential(
        param(torch.nn.Conv2d(2, 4, 3, padding=1), 0.1, 0.5), iaf(),
        sl.SumPool2d(2), param(torch.nn.Conv2d(4, 4, 3, padding=1), 0.0, 0.3), iaf(),
        sl.SumPool2d(2), torch.nn.Flatten(), param(torch.nn.Linear(16, 3), 0.0, 0.4), iaf())


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_sinabs_cnn_equals_float_simulation(reset, tmp_path):
    from oracles.nir_examples import _as_numpy_graph

    B, T = 3, 20
    net = sinabs_cnn(reset, B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = sinabs.to_nir(net, torch.zeros(B, 2, 8, 8))
    # sinabs leaves conv shapes to the reader;
    # nir.write needs them, so a sinabs user calls infer_types() (nir_examples.sinabs_cnn)
    graph = _as_numpy_graph(graph)
    graph.infer_types()
    rng = np.random.default_rng(6)
    x = (rng.random((B, T, 2, 8, 8)) < 0.4).astype(np.float64)
    outs, h = [], torch.as_tensor(x.reshape(B * T, 2, 8, 8), dtype=torch.float32)
    with torch.no_grad():
        for m in net:
            h = m(h)
            if isinstance(m, sl.IAFSqueeze):
                outs.append(h.numpy().reshape(B, T, -1).transpose(1, 0, 2))
    names = [n for n, v in graph.nodes.items() if isinstance(v, nir.IF)]
    names.sort(key=lambda n: list(graph.nodes).index(n))
    _, result = ours(graph, x, tmp_path, reset, **SINGLE)
    assert len(names) == len(outs) == 3
    for name, t in zip(names, outs):
        assert 0.02 < t.mean() < 0.95, (name, t.mean())
        assert int(np.count_nonzero(result.spikes[name].reshape(t.shape) != t)) == 0, name
