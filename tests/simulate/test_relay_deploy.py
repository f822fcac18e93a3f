"""Low-rank factors deployed as two synaptic stages through a graded relay population.

The relay form must compute what the fused form computes (same real matrix, so the float
simulations agree spike for spike), cost fewer synapses at low rank, and run bit-exactly on
Lava (reference == Lava for every population: LIF spikes and relay payloads), also together
with token selectors (relays reading a selector's gated stream, gated LIFs after them).
"""
import dataclasses
import warnings

import numpy as np
import pytest

from nmc_deploy.compile.lower import lower_graph, low_rank_down_nodes
from nmc_deploy.program import RELAY, load_program, save_program
from nmc_deploy.program.shared_weights import source_fanout
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.errors import LoweringError
from nmc_deploy.simulate.reference import simulate_float, simulate_reference
from nmc_deploy.targets import load_target


@pytest.fixture(scope="module")
def dsp_graph():
    from conftest import make_tiny_spikformer
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.prune.dsp import factorize_model

    model = factorize_model(make_tiny_spikformer(), energy=0.6).eval()
    return export_spikformer(model, {"dataset": "digits", "input_levels": 16})


def _quantize(fp, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(fp, **kw)


@pytest.fixture(scope="module")
def relay_program(dsp_graph):
    return _quantize(lower_graph(dsp_graph, low_rank="relay"))


def test_relay_float_equals_fused_float_spike_for_spike(dsp_graph, digits):
    fused, relay = lower_graph(dsp_graph), lower_graph(dsp_graph, low_rank="relay")
    downs = low_rank_down_nodes(dsp_graph)
    assert len(downs) == 6
    assert sorted(p.name for p in relay.populations if p.kind == RELAY) == sorted(downs)
    assert not any(p.kind == RELAY for p in fused.populations)
    x = digits.x_test[:24]
    a, b = simulate_float(fused, x), simulate_float(relay, x)
    assert set(a.spikes) == set(b.spikes) and set(b.payloads) == set(downs)
    assert sum(int(s.sum()) for s in a.spikes.values()) > 1000
    mism = {k: int(np.count_nonzero(a.spikes[k] != b.spikes[k])) for k in a.spikes}
    assert sum(mism.values()) == 0, mism
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-9, atol=1e-9)


def test_relay_has_fewer_synapses_at_low_rank(dsp_graph, relay_program):
    fused = _quantize(lower_graph(dsp_graph))
    n_fused = sum(g.num_synapses for g in fused.groups)
    n_relay = sum(g.num_synapses for g in relay_program.groups)
    assert n_relay < 0.8 * n_fused


def test_relay_schedule_payload_width_and_groups(relay_program):
    prog = relay_program
    relays = [p for p in prog.populations if p.kind == RELAY]
    for p in relays:
        assert 1 < p.payload_bits <= 24 and p.payload_shift >= 0
        srcs = [g for g in prog.groups if g.target == p.name]
        assert srcs and all(g.num_message_bits == 0 for g in srcs)  # binary spikes in
        assert p.depth == 1 + max(prog.depth_of(g.source) for g in srcs)
        outs = [g for g in prog.groups if g.source == p.name]
        assert outs and all(0 < g.num_message_bits <= 24 for g in outs)  # graded out
        assert all(prog.population(g.target).depth == p.depth + 1 + g.delay for g in outs)
    # the residual stream feeding q's down factor: one group per stream population
    q_in = [g for g in prog.groups if g.target == "blocks.0.attn.q_linear.down"]
    assert {g.source for g in q_in} == {"patch_embed.lifs.2", "patch_embed.rpe_lif"}


def test_relay_program_round_trips(relay_program, tmp_path, digits):
    save_program(relay_program, tmp_path)
    back = load_program(tmp_path)
    for a, b in zip(relay_program.populations, back.populations):
        assert (a.name, a.kind, a.payload_shift, a.payload_bits, a.depth) == \
            (b.name, b.kind, b.payload_shift, b.payload_bits, b.depth)
    x = digits.x_test[:4]
    r1, r2 = simulate_reference(relay_program, x), simulate_reference(back, x)
    assert all(np.array_equal(r1.payloads[k], r2.payloads[k]) for k in r1.payloads)
    assert np.array_equal(r1.logits, r2.logits)


def test_relay_needs_graded_spikes(dsp_graph):
    with pytest.raises(LoweringError, match="graded"):
        binary = dataclasses.replace(load_target("loihi2"), graded_spike_bits=0)
        _quantize(lower_graph(dsp_graph, low_rank="relay"), target=binary)
    with pytest.raises(LoweringError, match="low_rank"):
        lower_graph(dsp_graph, low_rank="split")


def test_relay_synops_count_nonzero_payloads(relay_program, digits):
    res = simulate_reference(relay_program, digits.x_test[:3])
    layers = {e["name"]: e for e in res.stats["layers"]}
    name = "blocks.0.mlp.fc2_linear"  # the up factor: reads the fc2 relay's payloads
    g = next(g for g in relay_program.groups if g.layer == name)
    p = res.payloads[g.source].reshape(-1, g.weights.shape[1])
    fanout = source_fanout(g.weights)
    assert layers[name]["synops"] == int(fanout @ (p != 0).sum(axis=0)) > 0
    pop = next(e for e in res.stats["populations"] if e["name"] == g.source)
    assert pop["spikes"] == int(np.count_nonzero(p))


@pytest.mark.lava
@pytest.mark.parametrize("vth_mant", [1023, 31])  # 31: payloads shifted right (1-2 bits)
def test_relay_reference_equals_lava(dsp_graph, digits, vth_mant):
    from nmc_deploy.simulate.lava.backend import simulate_lava

    prog = _quantize(lower_graph(dsp_graph, low_rank="relay"), vth_mant=vth_mant)
    shifts = [p.payload_shift for p in prog.populations if p.kind == RELAY]
    assert (max(shifts) > 0) == (vth_mant == 31)
    x = digits.x_test[:4]
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    assert set(ref.payloads) == set(lav.payloads) and len(ref.payloads) == 6
    assert sum(int(np.count_nonzero(p)) for p in ref.payloads.values()) > 1000
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 500
    out_ref, out_lav = ref.outputs(), lav.outputs()
    mism = {k: int(np.count_nonzero(out_ref[k] != out_lav[k])) for k in out_ref}
    assert sum(mism.values()) == 0, mism
    assert np.array_equal(ref.predictions, lav.predictions)


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_relay_placement(relay_program, target):
    from nmc_deploy.compile.partition import partition_program
    from nmc_deploy.errors import CapacityError
    from nmc_deploy.targets import load_target

    tgt = load_target(target)
    if tgt.graded_spike_bits == 0:
        with pytest.raises(CapacityError, match="graded_spike_bits"):
            partition_program(relay_program, tgt)
        return
    placement = partition_program(relay_program, tgt)
    placed = {}
    for chunks in placement.cores:
        for c in chunks:
            placed[c.population] = placed.get(c.population, 0) + c.neurons
    assert placed == {p.name: p.size for p in relay_program.populations}


def test_relay_passes_do_not_mutate_their_input(dsp_graph):
    import pickle

    from nmc_deploy.compile.partition import partition_program
    from nmc_deploy.targets import load_target

    before = pickle.dumps((dict(dsp_graph.nodes), dsp_graph.edges))
    fp = lower_graph(dsp_graph, low_rank="relay")
    fp_before = pickle.dumps(fp)
    prog = _quantize(fp)
    prog_before = pickle.dumps(prog)
    partition_program(prog, load_target("loihi2"))
    assert pickle.dumps((dict(dsp_graph.nodes), dsp_graph.edges)) == before
    assert pickle.dumps(fp) == fp_before and pickle.dumps(prog) == prog_before


@pytest.fixture(scope="module")
def token_dsp_model():
    """Token selectors before both blocks plus every block matrix factorised."""
    from conftest import make_token_spikformer
    from nmc_deploy.prune.dsp import factorize_model

    return factorize_model(make_token_spikformer(keep=0.7), energy=0.9).eval()


def test_factorize_model_keeps_token_selectors(token_dsp_model):
    import torch
    from conftest import make_token_spikformer

    base = make_token_spikformer(keep=0.7)
    cfg = token_dsp_model.config
    assert (cfg.token_keep, cfg.token_blocks) == (base.config.token_keep, (0, 1))
    assert len(cfg.low_rank) == 12
    a, b = base.token_predictors.state_dict(), token_dsp_model.token_predictors.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.lava
def test_relay_with_token_selectors_reference_equals_lava(token_dsp_model, digits):
    """Both features at once: the relays of q/k/v and fc1 read the selectors' gated streams
    (graded payloads in, graded payloads out), the LIFs they feed are gated."""
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.simulate.lava.backend import simulate_lava

    graph = export_spikformer(token_dsp_model, {"input_levels": 16})
    fp = lower_graph(graph, low_rank="relay")
    x = digits.x_test[:4]
    fused_float, relay_float = simulate_float(lower_graph(graph), x), simulate_float(fp, x)
    assert all(np.array_equal(fused_float.token_masks[k], relay_float.token_masks[k])
               for k in fused_float.token_masks)
    prog = _quantize(fp)
    relays = {p.name for p in prog.populations if p.kind == RELAY}
    assert len(relays) == 12 and len(prog.token_selects) == 2
    sels = {t.name for t in prog.token_selects}
    from_sel = [g for g in prog.groups if g.target in relays and g.source in sels]
    assert len(from_sel) == 8 and all(g.num_message_bits > 0 for g in from_sel)
    assert any(p.gate for p in prog.populations)
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    assert set(ref.payloads) == set(lav.payloads) == relays
    assert sum(int(np.count_nonzero(p)) for p in ref.payloads.values()) > 1000
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 500
    assert [m.sum(1).max() for m in ref.token_masks.values()] == [11, 7]
    spikes = sum(int(np.count_nonzero(ref.spikes[k] != lav.spikes[k])) for k in ref.spikes)
    payloads = sum(int(np.count_nonzero(ref.payloads[k] != lav.payloads[k]))
                   for k in ref.payloads)
    masks = sum(int(np.count_nonzero(ref.token_masks[k] != lav.token_masks[k]))
                for k in ref.token_masks)
    assert (spikes, payloads, masks) == (0, 0, 0)
    assert all(np.array_equal(ref.selector_counts[k], lav.selector_counts[k])
               for k in ref.selector_counts)
    assert np.array_equal(ref.logits, lav.logits)
