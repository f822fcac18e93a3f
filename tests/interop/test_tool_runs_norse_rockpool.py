"""norse 1.1.0 and rockpool 3.1.0 run themselves against our float simulation of the graph
each exported (issue 11, item 1): spike mismatches counted per spiking layer, 0 required.

norse: the file norse 1.1.0's ``to_nir`` writes (tau = dt/tau_mem_inv, norse #411) compiles
with ``--convention norse-1.1``; ``--convention norse`` refuses it by name (dt/tau > 1).
rockpool: ``LIFTorch -> LinearTorch -> ExpSynTorch`` exported by rockpool's ``to_nir``,
compiled with ``--convention rockpool`` (integrator "rockpool": rockpool's own gains; its
floor(v/theta) spikes per step, the preset's multi-spike rule): spike counts compared entry
for entry, with weights strong enough for many steps of several spikes too.
"""
import warnings

import numpy as np
import pytest
import torch

import nir

from oracles.nir_examples import _as_numpy_graph, norse_lif, norse_model


def compile_file(graph, tmp_path, **timing_args):
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.ir.conventions import apply_timing, resolve_timing
    from nmc_deploy.nirio import read_nir

    path = tmp_path / "net.nir"
    nir.write(str(path), graph)
    g = read_nir(path)
    return lower_graph(apply_timing(g, resolve_timing(g, **timing_args)))


def spike_inputs(seed, B, T, n, rate=0.5):
    rng = np.random.default_rng(seed)
    return (rng.random((B, T, n)) < rate).astype(np.float64)


# ------------------------------------------------------------------------------ norse


def norse_run(net, x):
    """norse's own step loop (float32, as norse runs); output spikes (T, B, n)."""
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = net(torch.as_tensor(x[:, t], dtype=torch.float32), state)
            outs.append(y.numpy())
    return np.stack(outs).astype(bool)


def norse_110_file():
    """The graph norse 1.1.0's to_nir writes for norse_model() (tensors as numpy arrays,
    batch dim dropped: nir.read cannot type-check it otherwise; values untouched)."""
    import norse.torch as norse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(norse_model(), torch.zeros(1, 4), dt=1e-3)
    return _as_numpy_graph(graph, input_lead=1, output_lead=1)


@pytest.mark.parametrize("form", ["norse 1.1.0 file", "norse main file"])
def test_norse_run_equals_float_simulation(form, tmp_path):
    from nmc_deploy.simulate.reference import simulate_float

    if form == "norse 1.1.0 file":
        graph, convention = norse_110_file(), "norse-1.1"
        assert float(np.min(graph.nodes["1"].tau)) < 1e-3  # dt/tau_mem_inv = 5e-6
    else:
        graph, convention = norse_lif(), "norse"
    fp = compile_file(graph, tmp_path, convention=convention)
    x = spike_inputs(3, 4, 30, 4)
    theirs = norse_run(norse_model(), x)
    ours = simulate_float(fp, x).spikes["3"]
    assert 0.05 < theirs.mean() < 0.95
    assert int(np.count_nonzero(ours != theirs)) == 0


def test_norse_convention_refuses_a_norse_110_file(tmp_path):
    from nmc_deploy.errors import LoweringError

    with pytest.raises(LoweringError, match="norse-1.1"):
        compile_file(norse_110_file(), tmp_path, convention="norse")
    # without the norse convention the hint does not name norse
    with pytest.raises(LoweringError, match="shorter than dt") as exc:
        compile_file(norse_110_file(), tmp_path, dt=1e-3, integrator="forward-euler")
    assert "norse" not in str(exc.value) and "--dt" in str(exc.value)


# ------------------------------------------------------------------------------ rockpool


def rockpool_net(seed=0, n_in=4, n_h=6, n_out=3, dt=1e-3, gain=1.0):
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import ExpSynTorch, LIFTorch, LinearTorch

    rng = np.random.default_rng(seed)
    w1 = (gain * (0.012 + 0.01 * rng.standard_normal((n_in, n_h)))).astype(np.float32)
    w2 = (gain * (0.08 + 0.04 * rng.standard_normal((n_h, n_out)))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Sequential(
            LinearTorch((n_in, n_h), weight=torch.from_numpy(w1), has_bias=False),
            LIFTorch(n_h, tau_mem=torch.from_numpy(np.linspace(0.015, 0.03, n_h)
                                                   .astype(np.float32)),
                     tau_syn=torch.full((n_h,), 0.01), threshold=torch.ones(n_h), dt=dt),
            LinearTorch((n_h, n_out), weight=torch.from_numpy(w2), has_bias=False),
            LIFTorch(n_out, tau_mem=torch.full((n_out,), 0.02),
                     tau_syn=torch.full((n_out,), 0.005), threshold=torch.ones(n_out), dt=dt),
            LinearTorch((n_out, n_out), weight=torch.eye(n_out), has_bias=False),
            ExpSynTorch(n_out, tau=torch.full((n_out,), 0.02), dt=dt))


def rockpool_file(net):
    from rockpool.nn.modules.torch.nir import to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _as_numpy_graph(to_nir(net), input_lead=1, output_lead=2)


def rockpool_counts(net, graph, x):
    """rockpool's own run: per CubaLIF node (file order) its spike counts (B, T, n)."""
    with torch.no_grad():
        _, _, rec = net(torch.as_tensor(x, dtype=torch.float32), record=True)
    lif_nodes = [n for n, v in graph.nodes.items() if isinstance(v, nir.CubaLIF)]
    theirs = [rec[k]["spikes"].detach().numpy() for k in sorted(rec)
              if isinstance(rec[k], dict) and "spikes" in rec[k]]
    return list(zip(lif_nodes, theirs)), rec


def test_rockpool_strong_weights_multi_spike_counts_equal(tmp_path):
    """LIFTorch emits floor(v/theta) spikes per step once v >= 2 theta; the preset lowers
    that rule (no argument): counts equal entry for entry."""
    from nmc_deploy.simulate.reference import simulate_float

    net = rockpool_net(gain=6.0)
    graph = rockpool_file(net)
    x = spike_inputs(5, 4, 60, 4)
    pairs, _ = rockpool_counts(net, graph, x)
    result = simulate_float(compile_file(graph, tmp_path, convention="rockpool"), x)
    assert len(pairs) == 2
    for name, t in pairs:
        assert t.max() > 2 and np.count_nonzero(t > 1) > 50, (name, t.max())
        ours = np.asarray(result.spikes[name], np.float64).transpose(1, 0, 2)
        assert int(np.count_nonzero(ours != t)) == 0, name


def test_rockpool_run_equals_float_simulation(tmp_path):
    from rockpool.nn.modules.torch.nir import to_nir

    from nmc_deploy.simulate.reference import simulate_float

    net = rockpool_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = _as_numpy_graph(to_nir(net), input_lead=1, output_lead=2)
    x = spike_inputs(5, 4, 60, 4)
    with torch.no_grad():
        _, _, rec = net(torch.as_tensor(x, dtype=torch.float32), record=True)
    fp = compile_file(graph, tmp_path, convention="rockpool")
    result = simulate_float(fp, x)
    lif_nodes = [n for n, v in graph.nodes.items() if isinstance(v, nir.CubaLIF)]
    assert len(lif_nodes) == 2
    theirs = [rec[k]["spikes"].detach().numpy() for k in sorted(rec)
              if isinstance(rec[k], dict) and "spikes" in rec[k]]
    assert len(theirs) == 2, sorted(rec)
    for name, t in zip(sorted(lif_nodes, key=lambda n: list(graph.nodes).index(n)), theirs):
        assert t.max() == 1  # one spike per step at most here (the strong test has more)
        ours = result.spikes[name].transpose(1, 0, 2)
        assert 0.02 < t.mean() < 0.95, (name, t.mean())
        assert int(np.count_nonzero(ours != t)) == 0, name
    # NIR's exact reading of the same file (gain r (1 - alpha)) is not rockpool's model
    exact = simulate_float(compile_file(graph, tmp_path, convention="rockpool",
                                        integrator="exact"), x)
    assert sum(int(np.count_nonzero(exact.spikes[n].transpose(1, 0, 2) != t))
               for n, t in zip(sorted(lif_nodes, key=lambda n: list(graph.nodes).index(n)),
                               theirs)) > 0
    readout = next(n for n, v in graph.nodes.items() if isinstance(v, nir.LI))
    np.testing.assert_allclose(result.voltages[readout].transpose(1, 0, 2),
                               rec["5_ExpSynTorch_output"].detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.lava
@pytest.mark.parametrize("tool", ["norse-1.1", "rockpool", "rockpool-strong"])
def test_reference_equals_lava(tool, tmp_path):
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    if tool.startswith("rockpool"):
        graph = rockpool_file(rockpool_net(gain=6.0 if tool.endswith("strong") else 1.0))
    else:
        graph = norse_110_file()
    fp = compile_file(graph, tmp_path, convention=tool.removesuffix("-strong"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(fp)
    x = spike_inputs(11, 2, 12, 4)
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    if tool.endswith("strong"):  # graded counts above 1 cross the Lava network
        assert max(int(s.max()) for s in ref.spikes.values()) > 1
    for pop, s in ref.spikes.items():
        assert np.count_nonzero(s != lav.spikes[pop]) == 0, pop
    assert np.array_equal(ref.output_steps, lav.output_steps)
