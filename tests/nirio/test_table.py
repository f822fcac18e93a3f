"""The one node table covers every graph-IR node type, in both directions."""
import dataclasses

import numpy as np
import pytest

from nmc_deploy.errors import GraphError
from nmc_deploy.ir import nodes as ir
from nmc_deploy.ir.nodes import NODE_TYPES
from nmc_deploy.nirio import EXTENSION_NODE_TYPES, STANDARD_NODE_TYPES
from nmc_deploy.nirio.coerce import kind_of
from nmc_deploy.nirio.table import CODECS, codec_for, node_from_nir, node_to_nir

_V = np.array([0.5, 1.0, 1.5, 2.0])


def _sample(cls):
    """One small, valid instance of each IR node type."""
    rng = np.random.default_rng(0)
    neuron = {"tau": _V, "r": _V, "v_leak": 0 * _V, "v_threshold": _V, "v_reset": 0 * _V,
              "tau_syn": _V, "tau_mem": _V, "w_in": _V}
    fields = {f.name for f in dataclasses.fields(cls)} - {"metadata"}
    by_type = {
        ir.Input: dict(shape=(4,)),
        ir.Output: dict(shape=(4,)),
        ir.Affine: dict(weight=rng.normal(size=(3, 4)), bias=np.arange(3.0)),
        ir.Conv2d: dict(weight=rng.normal(size=(2, 1, 3, 3)), bias=np.ones(2), input_hw=(5, 5),
                        stride=(1, 2), padding=(1, 0)),
        ir.Conv1d: dict(weight=rng.normal(size=(2, 1, 3)), bias=np.ones(2), input_length=6,
                        padding=1),
        ir.SumPool2d: dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                           input_chw=(2, 4, 4)),
        ir.AvgPool2d: dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                           input_chw=(2, 4, 4)),
        ir.Flatten: dict(input_type=(2, 3), start_dim=0, end_dim=-1),
        ir.Scale: dict(scale=_V),
        ir.Threshold: dict(threshold=_V),
        ir.Delay: dict(delay=np.array([1.0, 2.0, 0.0, 1.0])),
        ir.SpikingSelfAttention: dict(num_heads=2, dim=4, n_tokens=3, scale=0.125),
        ir.TokenSelect: dict(w1=rng.normal(size=(2, 4)), b1=np.zeros(2),
                             w2=rng.normal(size=(2, 2)), b2=np.zeros(2), dim=4, n_tokens=3,
                             n_keep=2, time_steps=2, gates=("a", "b"), previous="p"),
    }
    kwargs = by_type.get(cls, {k: v for k, v in neuron.items() if k in fields})
    return cls(**kwargs, metadata={"note": "kept"})


def _same(a, b) -> bool:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


def test_table_has_one_codec_per_ir_node_type():
    assert set(CODECS) == set(NODE_TYPES.values())
    read = [t for c in CODECS.values() for t in c.nir_types]
    assert len(read) == len(set(read))  # each NIR type is read by one codec
    assert set(read) == (set(STANDARD_NODE_TYPES) - {"NIRGraph"}) | set(EXTENSION_NODE_TYPES)


@pytest.mark.parametrize("name", sorted(NODE_TYPES))
def test_every_ir_node_type_round_trips_through_the_table(name):
    cls = NODE_TYPES[name]
    node = _sample(cls)
    nir_node = node_to_nir(node)
    assert kind_of(nir_node) in codec_for(cls).nir_types
    incoming = {p: (tuple(node.input_shape), ["src"]) for p in node.input_ports} \
        if cls is not ir.Input else {}
    back = node_from_nir(name, nir_node, incoming, False, False)
    assert type(back) is cls
    assert _same(node, back)


def test_linear_reads_as_affine_and_writes_back_as_linear():
    node = ir.Affine(weight=np.eye(2), bias=np.zeros(2), metadata={"nir_type": "Linear"})
    assert kind_of(node_to_nir(node)) == "Linear"
    with_bias = dataclasses.replace(node, bias=np.ones(2))
    assert kind_of(node_to_nir(with_bias)) == "Affine"


def test_subclass_uses_its_base_codec_and_unknown_type_is_refused():
    @dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
    class MyScale(ir.Scale):
        pass

    assert kind_of(node_to_nir(MyScale(scale=_V))) == "Scale"

    @dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
    class Foreign(ir.Node):
        pass

    with pytest.raises(GraphError, match="Cannot write node of type 'Foreign' to NIR"):
        node_to_nir(Foreign())
