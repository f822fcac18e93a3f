"""The token selector deploys: torch == float graph, reference == Lava (choices and spikes)."""
import warnings

import numpy as np
import pytest
import torch

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.program import load_program, save_program
from nmc_deploy.compile.quantize import quantize_program, quantize_token_predictor
from nmc_deploy.compile.validate import validate_program
from nmc_deploy.export.spikformer import export_spikformer
from nmc_deploy.loihi.attention import token_scores_fixed, token_scores_float, top_k_mask
from nmc_deploy.simulate.reference import simulate_float, simulate_reference


@pytest.fixture(scope="module")
def token_model():
    from conftest import make_token_spikformer

    return make_token_spikformer(keep=0.7)


@pytest.fixture(scope="module")
def token_program(token_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(lower_graph(export_spikformer(token_model, {"input_levels": 16})))


def _mask_of(index, n):
    m = np.zeros((index.shape[0], n), bool)
    np.put_along_axis(m, index, True, axis=1)
    return m


def test_float_graph_reproduces_torch_token_choices(token_model, digits):
    x = digits.x_test[:40]
    with torch.no_grad():
        logits = token_model(torch.tensor(x / 16.0, dtype=torch.float32)).numpy()
    index = [t.numpy() for t in token_model.token_index]
    fl = simulate_float(lower_graph(export_spikformer(token_model, {"input_levels": 16})), x)
    masks = list(fl.token_masks.values())
    assert [m.sum(1).max() for m in masks] == [11, 7]
    for idx, m in zip(index, masks):
        assert np.array_equal(_mask_of(idx, 16), m)
    np.testing.assert_allclose(fl.logits, logits, atol=1e-4)
    assert np.array_equal(fl.predictions, logits.argmax(1))


def test_gated_neurons_of_dropped_tokens_are_silent(token_program, digits):
    res = simulate_reference(token_program, digits.x_test[:8])
    sels = {t.name: t for t in token_program.token_selects}
    gated = [p for p in token_program.populations if p.gate]
    assert {p.gate for p in gated} == set(sels)
    for p in gated:
        dropped = ~res.token_masks[p.gate][:, np.arange(p.size) % sels[p.gate].n_tokens]
        assert not np.any(res.spikes[p.name][:, dropped])
        assert np.any(res.spikes[p.name])  # the kept tokens still work
    # the second selector only chooses among what the first kept
    m1, m2 = (res.token_masks[t.name] for t in token_program.token_selects)
    assert not np.any(m2 & ~m1) and np.all(m2.sum(1) == 7)


def test_selection_saves_synaptic_ops(token_program, digits):
    x = digits.x_test[:16]
    on = simulate_reference(token_program, x, record=False)
    off = simulate_reference(token_program, x, record=False, token_selection=False)
    synops = lambda r: sum(e["synops"] for e in r.stats["layers"])  # noqa: E731
    assert synops(on) < 0.8 * synops(off)
    sel = on.stats["token_selectors"]
    assert [s["kept_tokens"] for s in sel] == [11 * 16, 7 * 16]
    assert sel[1]["evaluated_tokens"] == 11 * 16  # only the survivors are scored again


def test_integer_selector_tracks_float_scores(token_model, rng):
    """On the same feature counts, the integer predictor ranks tokens as the float one
    (up to near-ties): it is a faithful quantization, not a different rule."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(export_spikformer(token_model, {"input_levels": 16}))
    sel = fp.token_selects[0]
    counts = rng.integers(0, 9, size=(64, sel.n_tokens, sel.dim))
    q = quantize_token_predictor(sel, 4)
    fixed = token_scores_fixed(counts, **q)
    flt = token_scores_float(counts / 4.0, sel.w1, sel.b1, sel.w2, sel.b2)
    corr = np.corrcoef(fixed.ravel(), flt.ravel())[0, 1]
    assert corr > 0.9999
    agree = np.mean(top_k_mask(fixed, sel.n_keep) == top_k_mask(flt, sel.n_keep))
    assert agree > 0.99


def test_program_with_selectors_round_trips(token_program, digits, tmp_path):
    save_program(token_program, tmp_path)
    loaded = load_program(tmp_path)
    a = simulate_reference(token_program, digits.x_test[:6])
    b = simulate_reference(loaded, digits.x_test[:6])
    assert all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    assert all(np.array_equal(a.token_masks[k], b.token_masks[k]) for k in a.token_masks)
    assert loaded.pipeline_depth == token_program.pipeline_depth


@pytest.mark.lava
def test_reference_equals_lava_with_token_selection(token_program, digits):
    from nmc_deploy.simulate.lava.backend import simulate_lava

    x = digits.x_test[:5]
    ref, lav = simulate_reference(token_program, x), simulate_lava(token_program, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 500
    mism = {k: int(np.count_nonzero(ref.spikes[k] != lav.spikes[k])) for k in ref.spikes}
    assert sum(mism.values()) == 0, mism
    for name in ref.token_masks:
        assert np.array_equal(ref.token_masks[name], lav.token_masks[name])
        assert np.array_equal(ref.selector_counts[name], lav.selector_counts[name])
    assert np.array_equal(ref.logits, lav.logits)


def test_gated_neurons_with_subtractive_reset_are_refused_in_one_line(token_model):
    import dataclasses

    from nmc_deploy.errors import LoweringError

    graph = export_spikformer(token_model, {"input_levels": 16})
    graph = dataclasses.replace(graph, metadata={**graph.metadata, "reset": "subtract"})
    with pytest.raises(LoweringError, match="--reset zero") as exc:
        validate_program(quantize_program(lower_graph(graph)))
    assert "\n" not in str(exc.value)


def _multi_on(graph, names):
    import dataclasses

    nodes = dict(graph.nodes)
    for name in names:
        n = nodes[name]
        nodes[name] = dataclasses.replace(n, metadata={**dict(n.metadata), "spike_fn": "multi"})
    return dataclasses.replace(graph, nodes=nodes)


@pytest.fixture(scope="module")
def token_multi(token_model):
    """The token model with its (gated) MLP hidden layers emitting spike counts."""
    graph = export_spikformer(token_model, {"input_levels": 16})
    names = [n for n in graph.nodes if n.endswith("mlp.fc1_lif")]
    fp = lower_graph(_multi_on(graph, names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return names, fp, quantize_program(fp)


def test_gated_multi_spike_counts_stay_counts(token_multi, digits):
    names, fp, prog = token_multi
    x = digits.x_test[:6]
    flt, ref = simulate_float(fp, x), simulate_reference(prog, x)
    for name in names:
        counts = ref.spikes[name]
        assert counts.max() > 1 and flt.spikes[name].max() > 1  # not ANDed into 0/1
        gate = next(p.gate for p in prog.populations if p.name == name)
        mask = ref.token_masks[gate]  # (B, N): dropped tokens' neurons stay silent
        n_tok = mask.shape[1]
        dropped = ~mask[:, np.arange(counts.shape[2]) % n_tok]
        assert not np.any(counts[:, dropped])


@pytest.mark.lava
def test_gated_multi_spike_reference_equals_lava(token_multi, digits):
    from nmc_deploy.simulate.lava.backend import simulate_lava

    _, _, prog = token_multi
    x = digits.x_test[:3]
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    mism = {k: int(np.count_nonzero(ref.spikes[k] != lav.spikes[k])) for k in ref.spikes}
    assert sum(mism.values()) == 0, mism


@pytest.mark.parametrize("suffix,match", [("attn.q_lif", "attention products"),
                                          ("attn.proj_lif", "token scores")])
def test_multi_spike_into_attention_or_selector_is_refused(token_model, suffix, match):
    from nmc_deploy.errors import LoweringError

    graph = export_spikformer(token_model, {"input_levels": 16})
    names = [n for n in graph.nodes if n.endswith(suffix)]
    with pytest.raises(LoweringError, match=match):
        lower_graph(_multi_on(graph, names))
