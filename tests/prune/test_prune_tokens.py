"""Token selector: schedule, train-time masking == inference-time removal, training."""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.spikformer import (SpikformerConfig, topk_keep_mask, topk_token_index)
from nmc_deploy.loihi.attention import top_k_mask


def test_keep_schedule_is_cumulative_and_shared():
    cfg = SpikformerConfig(img_size=8, sps_channels=(8, 16, 32), depth=3, token_keep=0.7,
                           token_blocks=(0, 1, 2))
    assert cfg.num_tokens == 16
    assert [cfg.kept_tokens(p) for p in (1, 2, 3)] == [11, 7, 5]  # floor(16 * 0.7**p)
    assert SpikformerConfig.from_dict(cfg.to_dict()) == cfg
    assert "token_keep" not in SpikformerConfig().to_dict()  # plain models unchanged


@pytest.mark.parametrize("kw", [dict(token_keep=0.0, token_blocks=(0,)),
                                dict(token_keep=1.5, token_blocks=(0,)),
                                dict(token_keep=0.5),  # no blocks
                                dict(token_keep=0.5, token_blocks=(1, 0)),
                                dict(token_keep=0.5, token_blocks=(2,))])
def test_bad_token_config_is_one_clear_error(kw):
    with pytest.raises(NmcDeployError, match="token_"):
        SpikformerConfig(**kw)


scores_st = st.integers(1, 4).flatmap(lambda b: st.integers(2, 12).flatmap(
    lambda n: st.tuples(
        st.lists(st.lists(st.integers(-3, 3), min_size=n, max_size=n), min_size=b, max_size=b),
        st.integers(1, n),
        st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=b, max_size=b))))


@settings(max_examples=150, deadline=None)
@given(scores_st)
def test_masking_and_removal_keep_the_same_tokens(case):
    """Training's mask (attention masking) and inference's gather keep the same set for the
    same scores, ties included; the simulators' numpy kernel agrees with both."""
    scores, k, prev = case
    s = torch.tensor(scores, dtype=torch.float64)
    mask = topk_keep_mask(s, k).numpy().astype(bool)
    index = topk_token_index(s, k).numpy()
    removal = np.zeros_like(mask)
    np.put_along_axis(removal, index, True, axis=1)
    assert np.array_equal(mask, removal)
    assert np.array_equal(top_k_mask(np.array(scores, np.int64), k), mask)
    assert np.array_equal(top_k_mask(np.array(scores, np.float64), k), mask)
    # with a previous selection: only previously kept tokens, and all of them if k is larger
    p = torch.tensor(prev, dtype=torch.float64)
    m2 = topk_keep_mask(s, k, p).numpy().astype(bool)
    assert not np.any(m2 & ~np.array(prev))
    assert np.array_equal(m2.sum(1), np.minimum(k, np.array(prev).sum(1)))
    assert np.array_equal(top_k_mask(np.array(scores, np.int64), k, np.array(prev)), m2)


def test_model_mask_mode_equals_removal_mode(digits):
    """The whole network: masking (training's mechanism, deterministic top-k) and hard
    removal give the same kept tokens and the same logits."""
    from conftest import make_token_spikformer

    model = make_token_spikformer(keep=0.6)
    x = torch.tensor(digits.x_test[:16] / 16.0, dtype=torch.float32)
    with torch.no_grad():
        model.token_mode = "remove"
        z_remove = model(x)
        kept_remove = [t.sort(1).values for t in model.token_index]
        model.token_mode = "mask"
        z_mask = model(x)
        kept_mask = model.token_index
    assert [t.shape[1] for t in kept_remove] == [9, 5]  # floor(16 * 0.6), floor(16 * 0.36)
    for a, b in zip(kept_remove, kept_mask):
        assert torch.equal(a, b)
    assert torch.allclose(z_remove, z_mask, atol=1e-5)


def test_gumbel_training_drops_stay_dropped(digits):
    from conftest import make_token_spikformer

    model = make_token_spikformer(keep=0.5).train()
    torch.manual_seed(0)
    model(torch.tensor(digits.x_test[:8] / 16.0, dtype=torch.float32))
    first, second = model.token_keep_masks
    assert set(torch.unique(first).tolist()) <= {0.0, 1.0}
    assert torch.all(second <= first)
    assert first.requires_grad  # straight-through: the predictor learns


def test_run_tokens_trains_selectors_and_keeps_weight_masks(small_digits):
    from conftest import make_tiny_spikformer
    from nmc_deploy.prune.masks import magnitude_masks, apply_masks
    from nmc_deploy.prune.tokens import run_tokens

    base = make_tiny_spikformer(depth=2)
    masks = magnitude_masks(base, 0.5, "global")
    apply_masks(base, masks)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    res = run_tokens(base, small_digits, keep=0.75, epochs=1, masks=masks)
    model = res.model
    assert model.config.token_blocks == (0, 1) and model.config.token_keep == 0.75
    for name, keep in masks.items():  # pruned weights are still exactly zero
        assert torch.all(dict(model.named_parameters())[name][~keep] == 0)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # input kept
    assert res.log[0]["kept_tokens"] == [12, 9]
    with pytest.raises(NmcDeployError, match="already has token selectors"):
        run_tokens(model, small_digits, keep=0.5, epochs=1)
    with pytest.raises(NmcDeployError, match="keep"):
        run_tokens(base, small_digits, keep=1.0, epochs=1)


def test_checkpoint_round_trip_with_selectors(tmp_path, digits):
    from conftest import make_token_spikformer
    from nmc_deploy.models.checkpoint import load_checkpoint, save_checkpoint

    model = make_token_spikformer()
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config == model.config
    x = torch.tensor(digits.x_test[:4] / 16.0, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
