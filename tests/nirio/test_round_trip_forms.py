"""Every model form: torch -> NIR file -> our reader -> fixed point == compiling the exported
graph directly (0 spike mismatches); the portable export opens with plain nir.read."""
import warnings

import nir
import numpy as np
import pytest
import torch

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.export.spikformer import export_spikformer
from nmc_deploy.nirio import read_nir, read_portable, write_nir, write_portable
from nmc_deploy.simulate.reference import simulate_reference


def _dense():
    from conftest import make_tiny_spikformer
    return make_tiny_spikformer(depth=2)


def _sparse():
    from nmc_deploy.prune.masks import apply_masks, magnitude_masks
    m = _dense()
    apply_masks(m, magnitude_masks(m, 0.9, "global"))
    return m


def _low_rank():
    from nmc_deploy.prune.dsp import factorize_model
    return factorize_model(_dense(), energy=0.9)


def _slif():
    from nmc_deploy.prune.slif import convert_to_slif
    m = convert_to_slif(_dense(), blocks_only=False)
    with torch.no_grad():
        for mod in m.modules():
            if hasattr(mod, "leak_logit"):
                mod.v_threshold.mul_(torch.linspace(0.8, 1.2, mod.v_threshold.numel()))
    return m


def _tokens():
    from conftest import make_token_spikformer
    return make_token_spikformer(keep=0.7)


def _digits_preset():
    from conftest import make_active_spikformer
    from nmc_deploy.models.spikformer import preset_config
    return make_active_spikformer(preset_config("digits"))


def _tiny_preset():
    from conftest import make_active_spikformer
    from nmc_deploy.models.spikformer import preset_config
    return make_active_spikformer(preset_config("tiny"))


FORMS = [_dense, _sparse, _low_rank, _slif, _tokens, _tiny_preset,
         pytest.param(_digits_preset, marks=pytest.mark.slow)]


def _spikes(graph, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate_reference(quantize_program(lower_graph(graph)), x)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__.strip("_"))
def test_every_form_round_trips_through_nir_bit_exactly(form, tmp_path, digits):
    model = form().eval()
    graph = export_spikformer(model, {"input_levels": 16})
    x = digits.x_test[:3]
    direct = _spikes(graph, x)
    via_file = _spikes(read_nir(write_nir(graph, tmp_path / "m.nir")), x)
    via_portable = _spikes(read_portable(write_portable(graph, tmp_path / "p")), x)
    plain = nir.read(str(tmp_path / "p" / "graph.nir"))  # any NIR reader opens it
    assert "SpikingSelfAttention" not in {type(n).__name__ for n in plain.nodes.values()}
    for other in (via_file, via_portable):
        assert sum(int(np.count_nonzero(direct.spikes[k] != other.spikes[k]))
                   for k in direct.spikes) == 0
        assert np.array_equal(direct.logits, other.logits)
    assert sum(int(s.sum()) for s in direct.spikes.values()) > 100
