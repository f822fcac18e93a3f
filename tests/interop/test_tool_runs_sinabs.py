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


def mismatches(result, graph, net, x):
    """Per spiking layer (name, largest count of sinabs, entries with more than one spike,
    entries whose counts differ between sinabs' run and ours)."""
    out = []
    for name, t in zip(spiking_names(graph), theirs(net, x)):
        ours_ = np.asarray(result.spikes[name], np.float64)
        out.append((name, float(t.max()), int(np.count_nonzero(t > 1)),
                    int(np.count_nonzero(ours_ != t))))
    return out


STRONG = {"w1": (1.5, 1.0), "w2": (0.8, 0.6)}  # v reaches several thresholds per step


@pytest.mark.parametrize("kind", ["iaf", "lif"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("min_v_mem", [None, -0.5])
def test_sinabs_multi_spike_equals_float_simulation(kind, reset, min_v_mem, tmp_path):
    """sinabs' default MultiSpike with strong weights (many steps carry k > 1 spikes),
    with and without min_v_mem, given as ``--v-min``: counts equal entry for entry."""
    from sinabs.activation import MultiSpike

    net = sinabs_net(kind, reset, spike_fn=MultiSpike, min_v_mem=min_v_mem, **STRONG)
    graph = export(net)
    x = inputs()
    _, result = ours(graph, x, tmp_path, reset,
                     v_min="none" if min_v_mem is None else str(min_v_mem))
    rows = mismatches(result, graph, net, x)
    assert len(rows) == 2
    for name, top, multi, differ in rows:
        assert top > 2 and multi > 100, (name, top, multi)
        assert differ == 0, (name, differ)


def test_sinabs_clamp_changes_the_spikes(tmp_path):
    """The same MultiSpike net without the clamp in our model: counts differ (the clamp
    is exercised, not a no-op)."""
    from sinabs.activation import MultiSpike

    net = sinabs_net("lif", "subtract", spike_fn=MultiSpike, min_v_mem=-0.2, w1=(0.0, 1.5),
                     w2=(0.0, 1.5))
    graph = export(net)
    x = inputs()
    _, clamped = ours(graph, x, tmp_path, "subtract", v_min="-0.2")
    _, free = ours(graph, x, tmp_path, "subtract", v_min="none")
    assert all(d == 0 for *_, d in mismatches(clamped, graph, net, x))
    assert sum(d for *_, d in mismatches(free, graph, net, x)) > 0


def test_sinabs_from_nir_default_rule_is_the_preset(tmp_path):
    """The network sinabs itself builds from the file (``from_nir``: IAFSqueeze with its
    default MultiSpike, MembraneSubtract and min_v_mem = -theta) equals our float model of
    the file compiled with ``--convention sinabs`` and nothing else (the preset's rule)."""
    from sinabs.activation import MultiSpike

    graph = export(sinabs_net("iaf", "subtract", spike_fn=MultiSpike, **STRONG))
    B, T = 4, 40
    x = inputs(B=B, T=T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = sinabs.from_nir(graph, batch_size=B)
    layers = [m for m in built.modules() if isinstance(m, sl.IAFSqueeze)]
    assert len(layers) == 2 and all(m.min_v_mem is not None for m in layers)
    assert all(m.spike_fn is MultiSpike for m in layers)
    outs = []
    for m in layers:
        m.register_forward_hook(lambda mod, inp, out: outs.append(out.detach().numpy()))
    with torch.no_grad():
        built(torch.as_tensor(x.reshape(B * T, N_IN), dtype=torch.float32))
    _, result = ours(graph, x, tmp_path, None)
    for name, t in zip(spiking_names(graph), outs):
        t = t.reshape(B, T, -1).transpose(1, 0, 2)
        assert t.max() > 1
        assert int(np.count_nonzero(np.asarray(result.spikes[name], np.float64) != t)) == 0


@pytest.mark.parametrize("where", ["graph", "node"])
def test_declared_multi_spike_and_min_v_mem_are_lowered(where, tmp_path):
    """A file (or user) that declares ``spike_fn: "multi"`` and ``min_v_mem`` in its graph
    or node metadata is lowered with them where the preset or the arguments are silent;
    the declaration wins over the preset, the arguments win over it."""
    from sinabs.activation import MultiSpike

    net = sinabs_net("lif", "zero", spike_fn=MultiSpike, min_v_mem=-0.5, **STRONG)
    graph = export(net)  # our own copy: as a file or a user would declare it
    for md in ([graph.metadata] if where == "graph" else
               [graph.nodes[n].metadata for n in spiking_names(graph)]):
        md.update(spike_fn="multi", min_v_mem=-0.5)
    x = inputs()
    _, result = ours(graph, x, tmp_path, "zero")
    assert all(d == 0 for *_, d in mismatches(result, graph, net, x))
    if where == "node":  # --spikes / --v-min win over a node's own declaration
        _, single = ours(graph, x, tmp_path, "zero", spikes="single", v_min="none")
        assert all(int(np.max(s)) <= 1 for s in single.spikes.values())


def test_multi_spike_is_refused_on_a_target_without_graded_spikes(tmp_path):
    from sinabs.activation import MultiSpike

    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.errors import LoweringError
    from nmc_deploy.targets import load_target

    fp, _ = ours(export(sinabs_net("iaf", "subtract", spike_fn=MultiSpike, **STRONG)),
                 inputs(), tmp_path, "subtract")
    with pytest.raises(LoweringError, match=r"^\S+: spikes per step \(unlimited, multi "
                       r"spike\) exceed the binary spikes \(graded_spike_bits 0\) of target "
                       r"loihi1; compile with --spikes single") as err:
        quantize_program(fp, target=load_target("loihi1"))
    assert "\n" not in str(err.value)


def quantized(fp):
    from nmc_deploy.compile.quantize import quantize_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(fp)


def test_multi_spike_program_carries_graded_counts(tmp_path):
    """The fixed-point program: multi-spike populations with their count bound, groups out
    of them graded (num_message_bits = the count's width), and the reference's counts
    above 1 (the payload); per neuron and sample its total over T steps within 2 of the
    float model's (the 8-bit weights shift when v crosses a multiple of theta, without a
    leak to forget it: item 2's measure, not a reproduction test)."""
    from sinabs.activation import MultiSpike

    from nmc_deploy.simulate.reference import simulate_reference

    net = sinabs_net("iaf", "subtract", spike_fn=MultiSpike, min_v_mem=-1.0, **STRONG)
    x = inputs()
    fp, result = ours(export(net), x, tmp_path, "subtract")
    program = quantized(fp)
    pops = {p.name: p for p in program.populations}
    assert all(p.multi_spike and p.v_min == -p.spike_unit for p in pops.values())
    for g in program.groups:
        if g.source in pops:
            assert g.num_message_bits == pops[g.source].payload_bits >= 2
    ref = simulate_reference(program, x)
    for name, p in pops.items():
        assert 1 < ref.spikes[name].max() <= p.max_spikes
        assert np.abs(ref.counts[name] - result.counts[name]).max() <= 2


LAVA_CASES = {  # kind, reset, spike_fn, min_v_mem (as built and as compiled)
    "lif-single": ("lif", "subtract", None, None),
    "iaf-multi-subtract-clamp": ("iaf", "subtract", "multi", -0.5),
    "lif-multi-zero": ("lif", "zero", "multi", None),
}


@pytest.mark.lava
@pytest.mark.parametrize("case", list(LAVA_CASES))
def test_sinabs_reference_equals_lava(case, tmp_path):
    """Reference == Lava, counts entry for entry (graded payloads of k > 1 spikes through
    Lava's Sparse synapses, the clamp in LoihiLIF)."""
    from sinabs.activation import MultiSpike

    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    kind, reset, spike_fn, v_min = LAVA_CASES[case]
    multi = spike_fn == "multi"
    net = sinabs_net(kind, reset, spike_fn=MultiSpike if multi else None, min_v_mem=v_min,
                     **(STRONG if multi else {}))
    rule = {"v_min": "none" if v_min is None else str(v_min)} if multi else SINGLE
    fp, _ = ours(export(net), inputs(), tmp_path, reset, **rule)
    program = quantized(fp)
    x = inputs(seed=4, B=2, T=10)
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    if multi:
        assert min(int(s.max()) for s in ref.spikes.values()) > 1
    for pop, s in ref.spikes.items():
        assert np.count_nonzero(s != lav.spikes[pop]) == 0, pop
    assert np.array_equal(ref.logits, lav.logits)


@pytest.mark.lava
def test_sinabs_multi_spike_cnn_reference_equals_lava(tmp_path):
    from sinabs.activation import MultiSpike

    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    B = 2
    graph = cnn_graph(sinabs_cnn("subtract", B, spike_fn=MultiSpike, min_v_mem=-1.0), B)
    rng = np.random.default_rng(8)
    x = (rng.random((B, 8, 2, 8, 8)) < 0.4).astype(np.int64)
    fp, _ = ours(graph, x.astype(np.float64), tmp_path, "subtract")
    program = quantized(fp)
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert max(int(s.max()) for s in ref.spikes.values()) > 1
    for pop, s in ref.spikes.items():
        assert np.count_nonzero(s != lav.spikes[pop]) == 0, pop


def sinabs_cnn(reset, B, seed=0, spike_fn=None, min_v_mem=None, gain=1.0):
    """Conv2d -> IAF -> SumPool2d -> Conv2d -> IAF -> Flatten -> Linear -> IAF (SingleSpike
    unless ``spike_fn``), sinabs' Squeeze layers (batch and time merged), the shape of the
    NIR paper's CNN; ``gain`` scales every weight."""
    from sinabs.activation import MembraneReset, MembraneSubtract, SingleSpike

    rng = np.random.default_rng(seed)
    reset_fn = MembraneReset() if reset == "zero" else MembraneSubtract()
    spike_fn = spike_fn or SingleSpike

    def iaf():
        return sl.IAFSqueeze(batch_size=B, spike_fn=spike_fn, reset_fn=reset_fn,
                             min_v_mem=min_v_mem)

    def param(m, mean, scale):
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(gain * (mean + scale *
                                                    rng.standard_normal(m.weight.shape))))
            m.bias.zero_()
        return m

    return torch.nn.Sequential(
        param(torch.nn.Conv2d(2, 4, 3, padding=1), 0.1, 0.5), iaf(),
        sl.SumPool2d(2), param(torch.nn.Conv2d(4, 4, 3, padding=1), 0.0, 0.3), iaf(),
        sl.SumPool2d(2), torch.nn.Flatten(), param(torch.nn.Linear(16, 3), 0.0, 0.4), iaf())


CNN_CASES = {  # reset, spike rule as built in sinabs, our compile arguments
    "single-subtract": ("subtract", {}, SINGLE),
    "single-zero": ("zero", {}, SINGLE),
    # MultiSpike with sinabs from_nir's clamp -theta: the preset's rule, no arguments
    "multi-subtract-clamp": ("subtract", {"min_v_mem": -1.0, "gain": 1.0}, {}),
    "multi-zero": ("zero", {"gain": 1.0}, {"v_min": "none"}),
}


def cnn_graph(net, B):
    from oracles.nir_examples import _as_numpy_graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = sinabs.to_nir(net, torch.zeros(B, 2, 8, 8))
    # sinabs leaves conv shapes to the reader;
    # nir.write needs them, so a sinabs user calls infer_types() (nir_examples.sinabs_cnn)
    graph = _as_numpy_graph(graph)
    graph.infer_types()
    return graph


@pytest.mark.parametrize("case", list(CNN_CASES))
def test_sinabs_cnn_equals_float_simulation(case, tmp_path):
    from sinabs.activation import MultiSpike

    reset, built, rule = CNN_CASES[case]
    B, T = 3, 20
    net = sinabs_cnn(reset, B, spike_fn=MultiSpike if case.startswith("multi") else None,
                     **built)
    graph = cnn_graph(net, B)
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
    _, result = ours(graph, x, tmp_path, reset, **rule)
    assert len(names) == len(outs) == 3
    if case.startswith("multi"):
        assert sum(int(np.count_nonzero(t > 1)) for t in outs) > 100
    for name, t in zip(names, outs):
        assert 0.02 < t.mean() < (50.0 if case.startswith("multi") else 0.95), (name, t.mean())
        assert int(np.count_nonzero(result.spikes[name].reshape(t.shape) != t)) == 0, name

