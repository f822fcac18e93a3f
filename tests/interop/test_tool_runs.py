"""Each tool's own run against our float simulation of the graph it exported (issue 11, item 1).

snnTorch 1.0.0 runs its modules itself (float64, so that rounding cannot decide a threshold
crossing), the same modules are exported with snnTorch's own per-module converter, and the
file goes through read_nir -> resolve_timing(convention "snntorch", reset) -> lower_graph ->
simulate_float. Spike mismatches between the two runs are counted for every spiking layer and
must be 0. Reset rules (``Timing``): "subtract-delayed" is snnTorch's default
(reset_mechanism="subtract", reset_delay=True), "zero" is reset_mechanism="zero" (Leaky with
either delay; the others with reset_delay=False); "zero-delayed" on RLeaky/Synaptic/RSynaptic
is a one-step refractory period and is refused at compile.
"""
import warnings

import numpy as np
import pytest
import torch

import nir

from oracles.nir_examples import _as_numpy_graph

snn = pytest.importorskip("snntorch")

N_IN, N_H, N_OUT = 5, 8, 3
KINDS = ("leaky", "rleaky", "synaptic", "rsynaptic")


def _lin(rng, n_in, n_out, mean, scale):
    lin = torch.nn.Linear(n_in, n_out)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(mean + scale * rng.standard_normal((n_out, n_in))))
        lin.bias.copy_(torch.from_numpy(0.1 * rng.standard_normal(n_out)))
    return lin.double()


def _neuron(kind, n, reset, delay, rng):
    """One snnTorch neuron layer of ``kind`` with per-neuron beta (alpha) and threshold."""
    common = dict(beta=torch.full((n,), 0.8), threshold=torch.ones(n), reset_mechanism=reset,
                  reset_delay=delay)
    if kind in ("synaptic", "rsynaptic"):
        common["alpha"] = torch.full((n,), 0.6)
    if kind == "leaky":
        layer = snn.Leaky(**common)
    elif kind == "synaptic":
        layer = snn.Synaptic(**common)
    else:
        cls = snn.RLeaky if kind == "rleaky" else snn.RSynaptic
        layer = cls(linear_features=n, all_to_all=True, **common)
        with torch.no_grad():
            layer.recurrent.weight.copy_(torch.from_numpy(0.4 * rng.standard_normal((n, n))))
            layer.recurrent.bias.copy_(torch.from_numpy(0.2 + 0.1 * rng.standard_normal(n)))
    return layer.double()


def build(kind, reset, delay, seed=0, gain=1.0):
    """``Linear -> kind -> Linear -> kind`` and its NIR graph (snnTorch's module converter);
    ``gain`` scales the first layer's weights."""
    from snntorch.export_nir import _extract_snntorch_module

    rng = np.random.default_rng(seed)
    layers = {"fc1": _lin(rng, N_IN, N_H, 0.2 * gain, 0.9 * gain),
              "lif1": _neuron(kind, N_H, reset, delay, rng),
              "fc2": _lin(rng, N_H, N_OUT, 0.0, 0.7),
              "lif2": _neuron(kind, N_OUT, reset, delay, rng)}
    nodes = {"input": nir.Input(input_type=np.array([N_IN]))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, m in layers.items():
            nodes[name] = _extract_snntorch_module(m)
    nodes["output"] = nir.Output(output_type=np.array([N_OUT]))
    order = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), type_check=False)
    return layers, _as_numpy_graph(graph)


def run_snntorch(kind, layers, x):
    """snnTorch's own step loop; ``{layer: spikes (T, B, n)}``."""
    B, T = x.shape[:2]
    state = {}
    for name in ("lif1", "lif2"):
        n = layers[name].threshold.shape[0]
        state[name] = {k: torch.zeros(B, n, dtype=torch.float64) for k in ("spk", "syn", "mem")}
    out = {"lif1": [], "lif2": []}
    with torch.no_grad():
        for t in range(T):
            h = torch.from_numpy(x[:, t])
            for fc, name in (("fc1", "lif1"), ("fc2", "lif2")):
                h = layers[fc](h)
                s, lif = state[name], layers[name]
                if kind == "leaky":
                    spk, s["mem"] = lif(h, s["mem"])
                elif kind == "synaptic":
                    spk, s["syn"], s["mem"] = lif(h, s["syn"], s["mem"])
                elif kind == "rleaky":
                    spk, s["mem"] = lif(h, s["spk"], s["mem"])
                else:
                    spk, s["syn"], s["mem"] = lif(h, s["spk"], s["syn"], s["mem"])
                s["spk"] = spk.double()
                h = s["spk"]
                out[name].append(spk.numpy().astype(bool))
    return {k: np.stack(v) for k, v in out.items()}


def ours(graph, x, tmp_path, reset=None):
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.ir.conventions import apply_timing, resolve_timing
    from nmc_deploy.nirio import read_nir
    from nmc_deploy.simulate.reference import simulate_float

    path = tmp_path / "net.nir"
    nir.write(str(path), graph)
    g = read_nir(path)
    timing = resolve_timing(g, convention="snntorch", reset=reset)
    fp = lower_graph(apply_timing(g, timing))
    result = simulate_float(fp, x)
    return fp, {name: next(v for k, v in result.spikes.items() if k.split(".")[0].split("/")[0]
                           == name) for name in ("lif1", "lif2")}


def inputs(seed=1, B=4, T=40):
    rng = np.random.default_rng(seed)
    return (rng.random((B, T, N_IN)) < 0.5).astype(np.float64)


def mismatches(a, b):
    return {k: int(np.count_nonzero(a[k] != b[k])) for k in a}


CASES = [(k, "subtract", True, None) for k in KINDS] + \
    [(k, "zero", False, "zero") for k in KINDS if k != "rsynaptic"] + \
    [("leaky", "zero", True, "zero"), ("leaky", "zero", True, "zero-delayed")]


@pytest.mark.parametrize("kind,mechanism,delay,reset", CASES)
def test_snntorch_run_equals_float_simulation(kind, mechanism, delay, reset, tmp_path):
    """0 spike mismatches between snnTorch's own run and our float model (reset None: the
    convention's assumption, snnTorch's defaults subtract + reset_delay)."""
    layers, graph = build(kind, mechanism, delay)
    x = inputs()
    theirs = run_snntorch(kind, layers, x)
    _, mine = ours(graph, x, tmp_path, reset)
    for name in theirs:
        assert 0.05 < theirs[name].mean() < 0.95, (name, theirs[name].mean())
    if kind.startswith("r"):  # the recurrent bias enters from step 0 (snnTorch: rec(0) = b)
        assert np.any(layers["lif1"].recurrent.bias.detach().numpy())
    assert mismatches(theirs, mine) == {"lif1": 0, "lif2": 0}


def test_plain_subtract_is_not_snntorchs_default():
    """The same-step subtraction (sinabs', rockpool's rule) is not what snnTorch's default
    Leaky computes: the test above can fail."""
    layers, graph = build("leaky", "subtract", True)
    x = inputs()
    theirs = run_snntorch("leaky", layers, x)
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        _, mine = ours(graph, x, Path(d), "subtract")
    assert sum(mismatches(theirs, mine).values()) > 0


@pytest.mark.parametrize("gain", [0.3, 3.0])
def test_subtract_without_delay_is_exact_until_v_stays_above_threshold(gain, tmp_path):
    """snnTorch's reset_delay=False subtract equals our same-step subtraction while v after
    the subtraction stays <= θ; simulate warns per population (snntorch_double_reset_lines)
    where it does not, and there snnTorch's run can differ. At gain 0.3 the first layer
    stays below (no warning, 0 mismatches) and the second does not."""
    from nmc_deploy.simulate.fidelity import snntorch_double_reset_lines
    from nmc_deploy.simulate.reference import simulate_float

    layers, graph = build("leaky", "subtract", False, gain=gain)
    x = inputs()
    theirs = run_snntorch("leaky", layers, x)
    fp, mine = ours(graph, x, tmp_path, "subtract")
    lines = snntorch_double_reset_lines(fp, simulate_float(fp, x, membranes=True))
    warned = {line.split(":")[1].strip() for line in lines}
    differ = mismatches(theirs, mine)
    assert theirs["lif1"].mean() > 0.1
    assert warned == ({"lif2"} if gain < 1 else {"lif1", "lif2"})
    for name in ("lif1", "lif2"):
        assert (differ[name] > 0) == (name in warned), (name, differ, warned)
    assert "--reset subtract-delayed" in lines[0]


def test_snntorch_rsynaptic_ignores_reset_delay_false():
    """snnTorch 1.0.0's RSynaptic applies its reset_delay=False reset to local variables and
    returns the delayed-reset state: RSynaptic(reset_delay=False) computes what
    reset_delay=True does (so its zero reset is "zero-delayed", refused below)."""
    x = inputs()
    a = run_snntorch("rsynaptic", build("rsynaptic", "zero", False)[0], x)
    b = run_snntorch("rsynaptic", build("rsynaptic", "zero", True)[0], x)
    assert mismatches(a, b) == {"lif1": 0, "lif2": 0}


@pytest.mark.parametrize("kind", ["rleaky", "synaptic", "rsynaptic"])
def test_zero_delayed_refractory_is_refused(kind, tmp_path):
    from nmc_deploy.errors import LoweringError

    _, graph = build(kind, "zero", True)
    with pytest.raises(LoweringError, match="zero-delayed.*refractory"):
        ours(graph, inputs(), tmp_path, "zero-delayed")


def test_delayed_subtract_is_a_one_step_self_connection(tmp_path):
    fp, _ = ours(build("leaky", "subtract", True)[1], inputs(), tmp_path)
    selfs = [g for g in fp.groups if g.source == g.target == "lif1"]
    assert [g.lag for g in selfs] == [1]
    np.testing.assert_allclose(selfs[0].weight.diagonal(), -(1 - 0.8), rtol=1e-6)
    assert next(p for p in fp.populations if p.name == "lif1").reset == "subtract"


def test_compile_says_which_reset_it_assumed(tmp_path):
    from nmc_deploy.ir.conventions import assumed_reset, resolve_timing

    line = assumed_reset(resolve_timing({}, convention="snntorch"))
    assert line.startswith("assumed: reset 'subtract-delayed'") and "--reset" in line
    assert assumed_reset(resolve_timing({}, convention="snntorch", reset="zero")) is None
    assert assumed_reset(resolve_timing({"reset": "zero"}, dt=1e-3)) is None


@pytest.mark.lava
@pytest.mark.parametrize("kind", ["leaky", "rsynaptic"])
def test_delayed_subtract_reference_equals_lava(kind, tmp_path):
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    fp, _ = ours(build(kind, "subtract", True)[1], inputs(), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(fp)
    x = inputs(seed=3, B=2, T=10)
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    for pop, s in ref.spikes.items():
        assert np.count_nonzero(s != lav.spikes[pop]) == 0, pop


def test_snntorch_cnn_default_leaky_equals_float_simulation(tmp_path):
    """Conv2d -> Leaky -> AvgPool2d -> Flatten -> Linear -> Leaky, snnTorch's defaults
    (subtract, reset_delay=True), per-module export, shapes inferred as a user must."""
    from snntorch.export_nir import _extract_snntorch_module

    rng = np.random.default_rng(4)
    conv = torch.nn.Conv2d(2, 4, 3, padding=1).double()
    fc = torch.nn.Linear(64, N_OUT).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(0.1 + 0.5 * rng.standard_normal(conv.weight.shape)))
        fc.weight.copy_(torch.from_numpy(0.05 + 0.4 * rng.standard_normal(fc.weight.shape)))
    lif1 = snn.Leaky(beta=torch.full((4, 8, 8), 0.8), threshold=torch.ones(4, 8, 8)).double()
    lif2 = snn.Leaky(beta=torch.full((N_OUT,), 0.7), threshold=torch.ones(N_OUT)).double()
    pool, flat = torch.nn.AvgPool2d(2), torch.nn.Flatten()
    layers = {"conv": conv, "lif1": lif1, "pool": pool, "flat": flat, "fc": fc, "lif2": lif2}
    nodes = {"input": nir.Input(input_type=np.array([2, 8, 8]))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes.update({k: _extract_snntorch_module(m) for k, m in layers.items()})
    nodes["output"] = nir.Output(output_type=np.array([N_OUT]))
    order = list(nodes)
    graph = _as_numpy_graph(nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])),
                                         type_check=False))
    graph.infer_types()
    B, T = 3, 30
    x = (np.random.default_rng(8).random((B, T, 2, 8, 8)) < 0.4).astype(np.float64)
    s1s, s2s = [], []
    m1 = torch.zeros(B, 4, 8, 8, dtype=torch.float64)
    m2 = torch.zeros(B, N_OUT, dtype=torch.float64)
    with torch.no_grad():
        for t in range(T):
            s1, m1 = lif1(conv(torch.from_numpy(x[:, t])), m1)
            s2, m2 = lif2(fc(flat(pool(s1.double()))), m2)
            s1s.append(s1.numpy().reshape(B, -1).astype(bool))
            s2s.append(s2.numpy().astype(bool))
    theirs = {"lif1": np.stack(s1s), "lif2": np.stack(s2s)}
    _, mine = ours(graph, x, tmp_path)
    for name, t in theirs.items():
        assert 0.05 < t.mean() < 0.95, (name, t.mean())
    assert mismatches(theirs, {k: v.reshape(theirs[k].shape) for k, v in mine.items()}) == \
        {"lif1": 0, "lif2": 0}
