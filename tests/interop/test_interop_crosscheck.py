"""Interop cross-check (issue 4): NIR graphs written in the conventions of sinabs, snnTorch,
norse and rockpool go through our reader, timing presets, lowering and float simulator, and
give the same spikes (0 mismatches) and LI voltages (allclose) as the independent executor
(oracles.nir_executor) on the same file; the fixed-point reference equals Lava."""
import warnings

import numpy as np
import pytest

import nir

from oracles.nir_examples import EXAMPLE_NAMES, example_inputs, make_example
from oracles.nir_executor import count_mismatches, execute_nir

SPIKING = ("IF", "LIF", "CubaLIF")
VOLTAGE = ("LI", "CubaLI")


def node_kinds(graph, prefix=""):
    """{flat name: NIR type name} of every non-graph node (subgraphs as "sub/inner")."""
    kinds = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            kinds.update(node_kinds(node, f"{prefix}{name}/"))
        else:
            kinds[f"{prefix}{name}"] = type(node).__name__
    return kinds


def compile_example(name, tmp_path):
    """write the tool's graph -> read_nir -> resolve the timing from the tool's preset (with
    the reset the tool was configured with) -> lower_graph."""
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.ir.conventions import apply_timing, resolve_timing
    from nmc_deploy.nirio import read_nir

    ex = make_example(name)
    path = tmp_path / f"{name}.nir"
    nir.write(str(path), ex.graph)
    graph = read_nir(path)
    d = ex.discretisation
    # the executor runs NIR's equations (rockpool's own model: tests/interop/test_tool_runs*):
    # one spike per step, no clamp (sinabs' and rockpool's multi spikes: test_tool_runs*)
    timing = resolve_timing(graph, convention=ex.convention, reset=d.reset,
                            integrator=d.integrator, spikes="single", v_min="none")
    # the preset must agree with the tool as the example reads it
    assert (timing.integrator, timing.threshold_comparison, timing.reset) == \
        (d.integrator, d.threshold_comparison, d.reset)
    assert abs(timing.dt - d.dt) <= 1e-6 * d.dt
    fp = lower_graph(apply_timing(graph, timing))
    return ex, timing, fp


def compared_outputs(ex, result, executed, T, B):
    """Per spiking/LI node of the example: (name, ours (B, T, n), executor's (B, T, n))."""
    pairs = []
    for name, kind in node_kinds(ex.graph).items():
        if kind not in SPIKING + VOLTAGE:
            continue
        store = result.spikes if kind in SPIKING else result.voltages
        assert name in store, f"{name} ({kind}) has no population in the simulation"
        ours = np.asarray(store[name]).transpose(1, 0, 2)  # (T, B, n) -> (B, T, n)
        pairs.append((name, kind, ours, executed[name].numpy().reshape(B, T, -1)))
    return pairs


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_float_simulation_equals_independent_executor(name, tmp_path):
    from nmc_deploy.simulate.reference import simulate_float

    ex, timing, fp = compile_example(name, tmp_path)
    B, T = 3, 12
    x = example_inputs(ex, batch=B, steps=T, seed=7)
    d = ex.discretisation
    executed = execute_nir(ex.graph, x, dt=timing.dt, integrator=d.integrator,
                           threshold_comparison=d.threshold_comparison, reset=d.reset)
    result = simulate_float(fp, x)
    pairs = compared_outputs(ex, result, executed, T, B)
    assert pairs
    for node, kind, ours, theirs in pairs:
        if kind in SPIKING:
            assert theirs.sum() > 0, f"{node} never fires"
            assert count_mismatches(ours, theirs) == 0, node
        else:
            assert np.any(theirs != 0), node
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12, err_msg=node)
    out = executed["output"].numpy().reshape(B, T, -1)
    np.testing.assert_allclose(result.output_steps, out, rtol=1e-9, atol=1e-12)


@pytest.mark.lava
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_reference_equals_lava(name, tmp_path):
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    ex, _, fp = compile_example(name, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(fp)
    x = example_inputs(ex, batch=2, steps=8, seed=11)
    ref = simulate_reference(program, x)
    lav = simulate_lava(program, x)
    assert set(ref.spikes) == set(lav.spikes) and ref.spikes
    for pop, s in ref.spikes.items():
        assert count_mismatches(s, lav.spikes[pop]) == 0, pop
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    for pop, v in ref.voltages.items():
        assert np.array_equal(v, lav.voltages[pop]), pop
    assert np.array_equal(ref.output_steps, lav.output_steps)
