"""The pipeline schedule: depths and delays align every input of a population."""
import pickle
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.compile.schedule import schedule_program


def test_schedule_aligns_every_input_of_a_population(tiny_program):
    for g in tiny_program.groups:
        assert g.delay >= 0
        assert tiny_program.depth_of(g.source) + 1 + g.delay == \
            tiny_program.population(g.target).depth


def _layered_graph(sources, n=3, seed=0):
    """Input -> layer i (Affine fan-in from ``sources[i]`` -> LIF) -> ... -> Output; source 0
    is the input, source j > 0 the LIF of layer j - 1."""
    from nmc_deploy.ir import LIF, Affine, Graph, Input, Output

    rng = np.random.default_rng(seed)
    z, o = np.zeros(n), np.ones(n)
    nodes, edges = {"input": Input(shape=(n,))}, []
    for i, srcs in enumerate(sources):
        nodes[f"fc{i}"] = Affine(weight=rng.normal(0.5, 0.3, (n, n)), bias=z)
        nodes[f"lif{i}"] = LIF(tau=o * 2e-3, r=o, v_leak=z, v_threshold=o, v_reset=z)
        edges += [("input" if j == 0 else f"lif{j - 1}", f"fc{i}") for j in sorted(srcs)]
        edges.append((f"fc{i}", f"lif{i}"))
    nodes["output"] = Output(shape=(n,))
    edges.append((f"lif{len(sources) - 1}", "output"))
    return Graph(nodes, tuple(edges), {"dt": 1e-3, "time_steps": 2})


@st.composite
def _fan_ins(draw):
    layers = draw(st.integers(1, 6))
    return [draw(st.sets(st.integers(0, i), min_size=1)) for i in range(layers)]


@settings(max_examples=40, deadline=None)
@given(_fan_ins())
def test_depth_is_one_more_than_the_deepest_source(sources):
    fp = lower_graph(_layered_graph(sources))
    before = pickle.dumps(fp)
    schedule = schedule_program(fp)
    assert pickle.dumps(fp) == before  # the pass does not modify its input
    for p in fp.populations:
        srcs = [g.source for g in fp.groups if g.target == p.name and g.source != p.name]
        assert schedule.depths[p.name] == 1 + max(schedule.depth_of(s) for s in srcs)
    for g in fp.groups:
        assert schedule.delay(g) >= 0
        assert schedule.depth_of(g.source) + 1 + schedule.delay(g) - g.lag == \
            schedule.depths[g.target]
    assert schedule.sample_gap == max((g.lag for g in fp.groups), default=0)


def test_the_schedule_is_what_quantize_writes(tiny_graph):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(tiny_graph)
        program = quantize_program(fp)
    schedule = schedule_program(fp)
    assert {p.name: p.depth for p in program.populations} == \
        {p.name: schedule.depths[p.name] for p in fp.populations}
    assert {g.name: g.delay for g in program.groups} == \
        {g.name: schedule.delay(g) for g in fp.groups}
