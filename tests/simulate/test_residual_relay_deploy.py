"""The residual stream through graded relays (deployment decision 3, option b).

The relay form must give the reference simulation exactly what the fan-in form gives (same
spikes in every population, same logits), cost fewer synapse groups with a smaller stream
out-degree, and run bit-exactly on Lava (reference == Lava: LIF spikes and relay payloads).
"""
import warnings

import numpy as np
import pytest

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.program import RELAY, load_program, save_program
from nmc_deploy.simulate.reference import simulate_float, simulate_reference


@pytest.fixture(scope="module")
def deep_graph():
    """A two-block tiny Spikformer: streams of 2, 3, 4 and 5 populations."""
    from conftest import make_tiny_spikformer
    from nmc_deploy.export.spikformer import export_spikformer

    return export_spikformer(make_tiny_spikformer(depth=2),
                             {"dataset": "digits", "input_levels": 16})


def _quantize(fp, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(fp, **kw)


@pytest.fixture(scope="module")
def forms(deep_graph):
    return {m: _quantize(lower_graph(deep_graph, residual=m)) for m in ("fan-in", "relay")}


def test_relay_reference_equals_fan_in_reference(forms, digits):
    x = digits.x_test[:32]
    a, b = simulate_reference(forms["fan-in"], x), simulate_reference(forms["relay"], x)
    assert set(b.spikes) == set(a.spikes)
    assert sum(int(s.sum()) for s in a.spikes.values()) > 10_000
    mism = {k: int(np.count_nonzero(a.spikes[k] != b.spikes[k])) for k in a.spikes}
    assert sum(mism.values()) == 0, mism
    assert np.array_equal(a.logits, b.logits)
    assert set(b.payloads) == set(forms["relay"].metadata["residual_relays"])


def test_relay_readers_get_the_fan_in_weights(forms):
    """Each reader's group from its relay is the fan-in group of every stream population:
    same integers, same weight_exp >= 0 (why the sums are identical, not just close)."""
    fan, rel = forms["fan-in"], forms["relay"]
    relays = set(rel.metadata["residual_relays"])
    checked = 0
    for g in rel.groups:
        if g.source not in relays or g.target in relays:
            continue
        same = [f for f in fan.groups if f.target == g.target]
        assert same and all(f.weight_exp == g.weight_exp >= 0 for f in same)
        assert all(np.array_equal(f.weights.kernel.toarray(), g.weights.kernel.toarray())
                   for f in same)
        checked += 1
    assert checked == 8  # q, k, v of two blocks and two fc1


def test_relay_float_equals_fan_in_float(deep_graph, digits):
    x = digits.x_test[:16]
    a = simulate_float(lower_graph(deep_graph), x)
    b = simulate_float(lower_graph(deep_graph, residual="relay"), x)
    assert sum(int(np.count_nonzero(a.spikes[k] != b.spikes[k])) for k in a.spikes) == 0
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-12, atol=1e-12)


def test_relay_chain_each_stream_population_feeds_one_relay(forms):
    prog = forms["relay"]
    relays = prog.metadata["residual_relays"]
    assert relays == sorted(["patch_embed.output.relay", "blocks.0.attn.output.relay",
                             "blocks.0.output.relay", "blocks.1.attn.output.relay"])
    into = {r: sorted(g.source for g in prog.groups if g.target == r) for r in relays}
    assert into["patch_embed.output.relay"] == ["patch_embed.lifs.2", "patch_embed.rpe_lif"]
    assert into["blocks.0.attn.output.relay"] == ["blocks.0.attn.proj_lif",
                                                  "patch_embed.output.relay"]
    assert into["blocks.0.output.relay"] == ["blocks.0.attn.output.relay",
                                             "blocks.0.mlp.fc2_lif"]
    stream = ["patch_embed.lifs.2", "patch_embed.rpe_lif", "blocks.0.attn.proj_lif",
              "blocks.0.mlp.fc2_lif", "blocks.1.attn.proj_lif"]
    for s in stream:
        assert sum(g.target in relays for g in prog.groups if g.source == s) == 1
    # integer payloads: identity weights at weight_exp 0, widths from the number of terms
    for p in prog.populations:
        if p.kind == RELAY:
            gs = [g for g in prog.groups if g.target == p.name]
            assert all(g.weight_exp == 0 and set(g.weights.values) == {1} for g in gs)
            assert p.payload_shift == 0 and p.scale == 1.0
    bits = {p.name: p.payload_bits for p in prog.populations if p.kind == RELAY}
    assert bits["patch_embed.output.relay"] == 3  # 0..2 signed
    assert bits["blocks.1.attn.output.relay"] == 4  # 0..5 signed


def test_relay_adds_one_stage_per_relay_and_schedule_absorbs_it(forms):
    fan, rel = forms["fan-in"], forms["relay"]
    assert rel.pipeline_depth == fan.pipeline_depth + 4
    for g in rel.groups:  # every input of a population belongs to the same sample step
        if g.source in ("input", "const") or rel.population(g.target).kind == RELAY or \
                g.kind == "attention":
            continue
        assert rel.population(g.target).depth == rel.depth_of(g.source) + 1 + g.delay - g.lag


def test_relay_form_has_fewer_groups_and_smaller_stream_out_degree(forms):
    def out_degree(prog, src):
        return sum(1 for g in prog.groups if g.source == src)

    fan, rel = forms["fan-in"], forms["relay"]
    assert len(rel.groups) < len(fan.groups)
    stream = ["patch_embed.lifs.2", "patch_embed.rpe_lif", "blocks.0.attn.proj_lif",
              "blocks.0.mlp.fc2_lif"]
    assert max(out_degree(rel, s) for s in stream) < max(out_degree(fan, s) for s in stream)
    assert max(out_degree(rel, s) for s in stream) <= 2
    assert sum(g.num_synapses for g in rel.groups) < sum(g.num_synapses for g in fan.groups)


def test_relay_program_round_trips(forms, tmp_path, digits):
    prog = forms["relay"]
    save_program(prog, tmp_path)
    back = load_program(tmp_path)
    assert back.metadata["residual_relays"] == prog.metadata["residual_relays"]
    x = digits.x_test[:4]
    r1, r2 = simulate_reference(prog, x), simulate_reference(back, x)
    assert np.array_equal(r1.logits, r2.logits)
    assert all(np.array_equal(r1.payloads[k], r2.payloads[k]) for k in r1.payloads)


@pytest.mark.lava
@pytest.mark.slow
def test_residual_relay_reference_equals_lava(forms, digits):
    from nmc_deploy.simulate.lava.backend import simulate_lava

    prog = forms["relay"]
    x = digits.x_test[:3]
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    assert set(ref.payloads) == set(lav.payloads) == set(prog.metadata["residual_relays"])
    assert sum(int(np.count_nonzero(p)) for p in ref.payloads.values()) > 1000
    out_ref, out_lav = ref.outputs(), lav.outputs()
    mism = {k: int(np.count_nonzero(out_ref[k] != out_lav[k])) for k in out_ref}
    assert sum(mism.values()) == 0, mism
    assert np.array_equal(ref.logits, lav.logits)
