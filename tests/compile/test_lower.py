"""The lowering's seams: the per-node-type registry and the typed Timing it takes."""
import dataclasses
import pickle
from dataclasses import dataclass

import numpy as np
import pytest

from nmc_deploy.compile.lower import (graph_timing, lower_graph, lowered_node_types,
                                      lowering_of)
from nmc_deploy.errors import LoweringError
from nmc_deploy.ir import LIF, NODE_TYPES, Affine, Graph, Input, Node, Output
from nmc_deploy.ir.conventions import NIR_DEFAULTS, Timing, apply_timing


def _lif_net(md=None, n=4):
    z, o = np.zeros(n), np.ones(n)
    nodes = {"input": Input(shape=(n,)), "fc": Affine(weight=np.eye(n) * 2.0, bias=z + 0.1),
             "lif": LIF(tau=o * 2e-3, r=o, v_leak=z, v_threshold=o, v_reset=z),
             "output": Output(shape=(n,))}
    edges = (("input", "fc"), ("fc", "lif"), ("lif", "output"))
    return Graph(nodes, edges, {"dt": 1e-3, **(md or {})})


def test_registry_covers_every_ir_node_type():
    assert set(lowered_node_types()) == set(NODE_TYPES.values())
    assert all(lowering_of(t) is not None for t in NODE_TYPES.values())


def test_a_subclass_lowers_like_its_base_through_the_mro():
    @dataclass(frozen=True, kw_only=True, eq=False)
    class LabelledLIF(LIF):
        label: str = "x"

    assert lowering_of(LabelledLIF) is lowering_of(LIF)
    g = _lif_net()
    nodes = dict(g.nodes)
    nodes["lif"] = LabelledLIF(**{f.name: getattr(g.nodes["lif"], f.name)
                                  for f in dataclasses.fields(LIF)})
    a, b = lower_graph(g), lower_graph(Graph(nodes, g.edges, g.metadata))
    assert pickle.dumps(a) == pickle.dumps(b)


def test_unknown_node_type_gives_the_one_line_error():
    @dataclass(frozen=True, kw_only=True, eq=False)
    class Mystery(Node):
        input_shape = property(lambda self: (4,))
        output_shape = property(lambda self: (4,))

    assert lowering_of(Mystery) is None
    g = _lif_net()
    nodes = {**g.nodes, "odd": Mystery()}
    edges = (("input", "odd"), ("odd", "fc"), ("fc", "lif"), ("lif", "output"))
    with pytest.raises(LoweringError, match=r"^odd: cannot lower node of type 'Mystery'$"):
        lower_graph(Graph(nodes, edges, g.metadata))


def test_graph_timing_fills_the_nir_defaults():
    t = graph_timing(_lif_net())
    assert (t.dt, t.integrator, t.reset, t.threshold_comparison) == (
        1e-3, NIR_DEFAULTS["integrator"], NIR_DEFAULTS["reset"],
        NIR_DEFAULTS["threshold_comparison"])
    t = graph_timing(_lif_net({"integrator": "exact", "reset": "subtract",
                               "threshold_comparison": ">="}))
    assert (t.integrator, t.reset, t.threshold_comparison) == ("exact", "subtract", ">=")
    with pytest.raises(LoweringError, match="no 'dt' in the graph metadata"):
        graph_timing(dataclasses.replace(_lif_net(), metadata={}))


@pytest.mark.parametrize("timing", [
    Timing(dt=5e-4, integrator="exact", reset="subtract", threshold_comparison=">=",
           source="argument"),
    Timing(dt=1e-3, integrator="forward-euler", reset="zero", threshold_comparison=">",
           source="graph metadata")])
def test_a_typed_timing_lowers_like_the_same_values_in_the_metadata(timing):
    g = _lif_net()
    before = pickle.dumps(g)
    typed = lower_graph(g, timing=timing)
    assert pickle.dumps(g) == before  # the graph is not modified
    assert pickle.dumps(typed) == pickle.dumps(lower_graph(apply_timing(g, timing)))
    assert typed.population("lif").threshold_ge == (timing.threshold_comparison == ">=")
