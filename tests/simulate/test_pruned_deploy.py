"""Every pruned form deploys: export -> compile -> reference == Lava, spike for spike.

Forms: unstructured sparsity (LTH/L1P masks), low-rank factors (DSP, fused into one synapse
matrix), sLIF with per-channel thresholds and leaks (per-neuron scale + per-neuron LIF), and
the forms of the pruning study (issue 13, nmc_deploy.prune.study): L1P of every weight but
the first conv and the head with sLIF on every neuron (the SPS convs' channels too), DSP with
sLIF deployed through relays, and a masked model with token selectors (LTH + tokens).
"""
import warnings

import numpy as np
import pytest
import torch

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.partition import partition_program
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.export.spikformer import export_spikformer
from nmc_deploy.simulate.reference import simulate_float, simulate_reference
from nmc_deploy.targets import load_target

pytestmark = pytest.mark.lava


def _compile(model, low_rank="fused"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(lower_graph(export_spikformer(model, {"input_levels": 16}),
                                            low_rank=low_rank))


def _sparse(model):
    from nmc_deploy.prune.masks import apply_masks, magnitude_masks

    masks = magnitude_masks(model, 0.9, "global")
    apply_masks(model, masks)
    return model


def _low_rank(model):
    from nmc_deploy.prune.dsp import factorize_model

    return factorize_model(model, energy=0.95)


def _slif(model):
    from nmc_deploy.prune.slif import convert_to_slif

    return _perturb_slif(convert_to_slif(model), 5)


def _perturb_slif(model, seed):
    """Move every sLIF's leaks and thresholds away from the LIF values (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "leak_logit"):
                m.leak_logit.add_(torch.rand(m.leak_logit.shape, generator=gen) - 0.5)
                m.v_threshold.mul_(torch.rand(m.v_threshold.shape, generator=gen) * 0.6 + 0.7)
    return model


def _sparse_but_ends_slif_all(model):
    """The study's 'L1P 90% + sLIF': every weight but the first conv and head, SPS sLIF."""
    from nmc_deploy.prune.masks import apply_masks, magnitude_masks, prunable_parameters
    from nmc_deploy.prune.slif import convert_to_slif
    from nmc_deploy.prune.study import ENDS

    names = [n for n in prunable_parameters(model, "all") if n not in ENDS]
    apply_masks(model, magnitude_masks(model, 0.9, "global", names))
    return _perturb_slif(convert_to_slif(model, blocks_only=False), 7)


def _low_rank_slif(model):
    """The study's 'DSP + sLIF', deployed through relays."""
    from nmc_deploy.prune.dsp import factorize_model
    from nmc_deploy.prune.slif import convert_to_slif

    return _perturb_slif(convert_to_slif(factorize_model(model, rank_budget=0.3),
                                         blocks_only=False), 9)


_low_rank_slif.low_rank = "relay"


def _sparse_tokens(model):
    """The study's 'LTH 90% + tokens': masked weights, then selectors (untrained)."""
    from nmc_deploy.prune.tokens import add_token_selectors

    return add_token_selectors(_sparse(model), 0.7)


@pytest.mark.parametrize("form", [_sparse, _low_rank, _slif, _sparse_but_ends_slif_all,
                                  _low_rank_slif, _sparse_tokens])
def test_pruned_form_deploys_bit_exactly(form, digits):
    from conftest import make_tiny_spikformer
    from nmc_deploy.simulate.lava.backend import simulate_lava

    dense = make_tiny_spikformer()
    pruned = form(make_tiny_spikformer()).eval()
    prog = _compile(pruned, getattr(form, "low_rank", "fused"))
    x = digits.x_test[:4]
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 500
    mism = {k: int(np.count_nonzero(ref.spikes[k] != lav.spikes[k])) for k in ref.spikes}
    assert sum(mism.values()) == 0, mism
    # the float graph of the pruned model still computes what torch computes
    with torch.no_grad():
        logits = pruned(torch.tensor(x / 16.0, dtype=torch.float32)).numpy()
    fl = simulate_float(lower_graph(export_spikformer(pruned, {"input_levels": 16})), x)
    assert np.array_equal(logits.argmax(1), fl.predictions)
    if form is _sparse:  # fewer synapses, no more cores than the dense model
        d = _compile(dense)
        assert sum(g.num_synapses for g in prog.groups) < 0.3 * sum(g.num_synapses for g in d.groups)
        tgt = load_target("loihi2")
        assert partition_program(prog, tgt).cores_used <= partition_program(d, tgt).cores_used
