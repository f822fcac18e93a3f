"""Quantization onto Lava's grid: exact integer threshold populations."""
import warnings

import numpy as np
import pytest

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.loihi.synapses import lava_effective_weights


def _threshold_graph(weights, threshold):
    from nmc_deploy.ir import Affine, Graph, Input, Output, Threshold

    w = np.asarray(weights, float)
    nodes = {"input": Input(shape=(w.shape[1],)),
             "a": Affine(weight=np.eye(w.shape[1]) * 2.0, bias=np.zeros(w.shape[1])),
             "spk": Threshold(threshold=np.full(w.shape[1], 0.5)),
             "w": Affine(weight=w, bias=np.zeros(w.shape[0])),
             "or": Threshold(threshold=np.full(w.shape[0], threshold)),
             "output": Output(shape=(w.shape[0],))}
    edges = (("input", "a"), ("a", "spk"), ("spk", "w"), ("w", "or"), ("or", "output"))
    return Graph(nodes, edges, {"dt": 1e-4, "time_steps": 3, "input_levels": 1})


@pytest.mark.parametrize("weights,threshold", [([[-1, 200, 3]], 0.5), ([[1, 2, 3]], 2.5),
                                                ([[1, -255, 3]], 0.5)])
def test_integer_threshold_populations_match_float_exactly(weights, threshold):
    # review B3: mixed-sign integer weights are not on Lava's excitatory grid
    from nmc_deploy.simulate.reference import simulate_float, simulate_reference

    g = _threshold_graph(weights, threshold)
    fp = lower_graph(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = quantize_program(fp)
    for grp in prog.groups:
        w = grp.weights.toarray()
        assert np.array_equal(lava_effective_weights(w), w)
    x = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    fl, fx = simulate_float(fp, x), simulate_reference(prog, x)
    assert np.array_equal(fl.spikes["or"], fx.spikes["or"])


def test_quantize_takes_the_schedule_and_the_target_it_is_given(tiny_graph):
    import pickle

    from nmc_deploy.compile.quantize import default_target
    from nmc_deploy.compile.schedule import schedule_program
    from nmc_deploy.targets import load_target

    fp = lower_graph(tiny_graph)
    schedule = schedule_program(fp)
    before = pickle.dumps((fp, schedule))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        implicit = quantize_program(fp)
        explicit = quantize_program(fp, schedule, target=load_target("loihi2"))
    assert pickle.dumps((fp, schedule)) == before  # inputs are not modified
    assert pickle.dumps(implicit) == pickle.dumps(explicit)
    # the defaults of the loose keyword arguments this replaced are Loihi 2's numbers
    tgt = default_target()
    assert (tgt.name, tgt.weight_bits, tgt.max_synaptic_delay, tgt.graded_spike_bits) == \
        ("loihi2", 8, 62, 24)
    assert explicit.metadata["quantization"]["weight_bits"] == tgt.weight_bits


def test_output_format_grids_are_policies_quantize_does_not_know():
    import nmc_deploy.compile.quantize as q
    from nmc_deploy.compile.netx import NETX_BIAS_EXP, NETX_GRID, NETX_WEIGHT_MAX

    assert not [n for n in vars(q) if "netx" in n.lower()]
    theta = np.array([0.5, 1.0])
    assert q.LAVA_GRID.threshold_mant(1023, theta, 1, 3.0) == 1023
    assert q.LAVA_GRID.min_bias_exp == 0 and NETX_GRID.min_bias_exp == NETX_BIAS_EXP
    vth = NETX_GRID.threshold_mant(1023, theta, 1, 3.0)
    assert NETX_GRID.threshold_mant(1023, theta, 1, 0.0) == 1023  # no weights: unchanged
    lam = (64 * vth + 1) / theta.min()
    assert lam * 3.0 / 64 <= NETX_WEIGHT_MAX < (64 * (vth + 1) + 1) / theta.min() * 3.0 / 64
