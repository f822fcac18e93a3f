"""Synthetic official-format state_dicts import, export, compile, and fire at 5-15 % in the
fixed-point program (reference simulator, inputs the calibration did not see).

Reduced official shapes (D = 32 or 64, 2 blocks, 64 tokens) keep the tests fast; the papers'
sizes run in benchmarks/scale.py.
"""
import functools
import warnings

import numpy as np
import pytest
import torch

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.export.spikformer import export_spikformer
from nmc_deploy.models.config import paper_config
from nmc_deploy.models.import_official import load_official_checkpoint
from nmc_deploy.models.synthetic import (INPUT_LEVELS, synthetic_inputs,
                                         synthetic_official_state_dict)
from nmc_deploy.prune.l1p import prune_one_shot
from nmc_deploy.simulate.reference import simulate_reference

CASES = {
    "cifar": ("cifar", paper_config("cifar", embed_dim=32, depth=2, num_heads=2), None),
    "imagenet": ("imagenet", paper_config("imagenet", embed_dim=32, depth=2, num_heads=2,
                                          img_size=128), None),
    "dvs": ("dvs", paper_config("dvs", embed_dim=32, depth=2, num_heads=2, img_size=128,
                                time_steps=4), None),
    # SparseSpikformer-style: a token selector before block 1, 90 % sparse block matrices
    "sparse-cifar-90": ("cifar", paper_config("cifar", embed_dim=64, depth=2, num_heads=4,
                                              token_keep=0.8, token_blocks=(1,)), 0.9),
}


def _deploy(tmp_path, variant, cfg, sparsity):
    prune = None if sparsity is None else functools.partial(prune_one_shot, sparsity=sparsity)
    sd = synthetic_official_state_dict(variant, cfg, seed=0, prune=prune)
    torch.save({"state_dict": sd}, tmp_path / "model.pth.tar")  # as timm saves it
    model, _ = load_official_checkpoint(
        tmp_path / "model.pth.tar", num_heads=cfg.num_heads, img_size=cfg.img_size,
        time_steps=cfg.time_steps, token_keep=cfg.token_keep if cfg.token_blocks else None)
    graph = export_spikformer(model, {"input_levels": INPUT_LEVELS[variant]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(lower_graph(graph))


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_program_fires_within_range(tmp_path, case):
    variant, cfg, sparsity = CASES[case]
    program = _deploy(tmp_path, variant, cfg, sparsity)
    x = synthetic_inputs(cfg, 4, seed=7, frames=variant == "dvs", levels=INPUT_LEVELS[variant])
    run = simulate_reference(program, x)
    kinds = {p.name: p.kind for p in program.populations}
    rates = {p["name"]: p["spikes"] / p["neuron_updates"] for p in run.stats["populations"]
             if kinds[p["name"]] == "lif"}
    assert len(rates) == 5 + 2 * 7
    outside = {n: round(r, 4) for n, r in rates.items() if not 0.05 <= r <= 0.15}
    assert not outside, f"LIF populations outside 5-15 %: {outside}"
    assert np.isfinite(run.logits).all() and run.stats["u_wraps"] == 0
    if cfg.token_blocks:
        assert run.token_masks and all(m.sum(axis=1).tolist() == [cfg.kept_tokens(1)] * 4
                                       for m in run.token_masks.values())
