"""The exported graph computes what the torch model computes, spike for spike."""
import numpy as np
import torch

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.export.spikformer import fold_batchnorm_weights
from nmc_deploy.ir import LIF, SpikingSelfAttention
from nmc_deploy.models.lif import MultiStepLIF
from nmc_deploy.simulate.reference import simulate_float


def _torch_spikes(model, x):
    rec, names = {}, {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(lambda m, i, o: rec.__setitem__(names[m], o.numpy()))
             for m in model.modules() if isinstance(m, MultiStepLIF)]
    with torch.no_grad():
        logits = model(torch.tensor(x / 16.0, dtype=torch.float32)).numpy()
    for h in hooks:
        h.remove()
    out = {}
    for k, s in rec.items():
        if s.ndim == 4:  # tokens (T, B, N, D) -> ours (T, B, D*N)
            s = s.transpose(0, 1, 3, 2)
        out[k] = s.reshape(s.shape[0], s.shape[1], -1) > 0.5
    return logits, out


def test_exported_graph_spikes_equal_torch(tiny_model, tiny_graph, digits):
    x = digits.x_test[:40]
    logits, spikes = _torch_spikes(tiny_model, x)
    sim = simulate_float(lower_graph(tiny_graph), x)
    mismatches = {k: int(np.count_nonzero(spikes[k] != sim.spikes[k])) for k in spikes}
    assert sum(int(s.sum()) for s in spikes.values()) > 10_000
    assert sum(mismatches.values()) == 0, mismatches
    assert np.array_equal(logits.argmax(1), sim.predictions)
    assert np.abs(logits - sim.logits).max() < 1e-5


def test_graph_uses_standard_nodes_and_one_extension_per_block(tiny_graph):
    kinds = [type(n).__name__ for n in tiny_graph.nodes.values()]
    assert kinds.count("SpikingSelfAttention") == 1
    assert "SumPool2d" in kinds and "Threshold" in kinds and "Integrator" in kinds
    lif = tiny_graph.nodes["blocks.0.attn.attn_lif"]
    assert isinstance(lif, LIF) and np.all(lif.v_threshold == 0.5)
    dt = tiny_graph.metadata["dt"]
    assert np.all(1 - dt / lif.tau == 0.5) and np.all(lif.r * dt / lif.tau == 0.5)
    ssa = tiny_graph.nodes["blocks.0.attn.ssa"]
    assert isinstance(ssa, SpikingSelfAttention) and ssa.scale == 0.125
    assert {e for e in tiny_graph.edges if e[1].startswith("blocks.0.attn.ssa.")} == {
        (f"blocks.0.attn.{p}_lif", f"blocks.0.attn.ssa.{p}") for p in "qkv"}


def test_export_does_not_modify_the_model(tiny_model, tiny_graph):
    from nmc_deploy.export.spikformer import export_spikformer

    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    tiny_model.train()
    export_spikformer(tiny_model)
    assert tiny_model.training  # mode restored
    tiny_model.eval()
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fold_batchnorm_kernel_matches_closed_form(rng):
    w = rng.normal(size=(4, 3, 3, 3))
    mean, var, g, b = rng.normal(size=4), rng.random(4) + 0.1, rng.normal(size=4), rng.normal(size=4)
    wf, bf = fold_batchnorm_weights(w, None, mean, var, 1e-5, g, b)
    x = rng.normal(size=(3, 3, 3))
    y = (w * x).sum(axis=(1, 2, 3))
    expect = (y - mean) / np.sqrt(var + 1e-5) * g + b
    assert np.allclose((wf * x).sum(axis=(1, 2, 3)) + bf, expect, rtol=1e-12, atol=1e-12)
