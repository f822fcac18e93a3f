"""LTH (IMP with late rewinding): rounds, rewinding, exact zeros, stop criteria, resuming."""
import json

import pytest
import torch

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.checkpoint import load_checkpoint
from nmc_deploy.models.spikformer import PRESETS, Spikformer
from nmc_deploy.models.train import train_model
from nmc_deploy.prune.lth import LTH_LOG_FILE, LTH_STATE_FILE, rewind_parameters, run_lth
from nmc_deploy.prune.masks import magnitude_masks

TINY = PRESETS["tiny"]
KW = dict(epochs_per_round=1, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def three_rounds(small_digits):
    """An uninterrupted 3-round run from scratch (the reference for resuming)."""
    return run_lth(TINY, small_digits, rounds=3, **KW)


def _assert_same_model(a, b):
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_rounds_prune_a_quarter_of_the_remaining_weights(three_rounds):
    log = three_rounds.log
    assert [r["round"] for r in log] == [0, 1, 2, 3]
    for r in log:
        assert set(r) >= {"round", "sparsity", "accuracy_float_test", "seconds"}
    for k, r in enumerate(log):
        assert r["sparsity"] == pytest.approx(1 - 0.75 ** k, abs=1e-3)
    params = dict(three_rounds.model.named_parameters())
    for name, m in three_rounds.masks.items():  # pruned weights are exact zeros
        assert not params[name].detach()[~m].any()
    json.dumps(log)  # plain data


def test_rewinding_restores_theta_rw_but_not_bn_statistics():
    torch.manual_seed(0)
    model = Spikformer(TINY)
    theta = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    masks = magnitude_masks(model, 0.5)
    bn = model.patch_embed.bns[0]
    bn.running_mean.fill_(3.0)
    rewind_parameters(model, theta, masks)
    for name, p in model.named_parameters():
        expected = theta[name] * masks[name] if name in masks else theta[name]
        assert torch.equal(p.detach(), expected), name
    assert torch.equal(bn.running_mean, torch.full_like(bn.running_mean, 3.0))


def test_round_zero_from_scratch_is_train_model(three_rounds, small_digits):
    trained, _ = train_model(TINY, small_digits, epochs=1, batch_size=16, seed=0,
                             progress=False)
    acc0 = three_rounds.log[0]["accuracy_float_test"]
    from nmc_deploy.prune.common import accuracy_on_test
    assert acc0 == accuracy_on_test(trained, small_digits)


def test_resume_runs_only_the_missing_round(tmp_path, small_digits, three_rounds):
    first = run_lth(TINY, small_digits, rounds=2, state_dir=tmp_path, **KW)
    assert [r["round"] for r in first.log] == [0, 1, 2]
    assert (tmp_path / LTH_STATE_FILE).exists()
    assert [r["round"] for r in json.loads((tmp_path / LTH_LOG_FILE).read_text())] == [0, 1, 2]
    # the state file is an ordinary checkpoint of the round-2 model
    saved, meta = load_checkpoint(tmp_path / LTH_STATE_FILE)
    _assert_same_model(saved, first.model)
    assert [r["round"] for r in meta["lth"]["log"]] == [0, 1, 2]

    reported = []  # "killed" after round 2; run again asking for 3 rounds
    resumed = run_lth(TINY, small_digits, rounds=3, state_dir=tmp_path, log=reported.append,
                      **KW)
    assert [r["round"] for r in reported] == [3]
    assert [r["round"] for r in resumed.log] == [0, 1, 2, 3]
    assert resumed.log[:3] == first.log
    _assert_same_model(resumed.model, three_rounds.model)
    for name in three_rounds.masks:
        assert torch.equal(resumed.masks[name], three_rounds.masks[name])
    # a finished run is not repeated
    again = run_lth(TINY, small_digits, rounds=3, state_dir=tmp_path, log=reported.append,
                    **KW)
    assert len(reported) == 1 and again.log == resumed.log


def test_resume_with_other_settings_is_refused(tmp_path, small_digits):
    run_lth(TINY, small_digits, rounds=0, state_dir=tmp_path, **KW)
    with pytest.raises(NmcDeployError, match="other settings.*prune_fraction"):
        run_lth(TINY, small_digits, rounds=1, state_dir=tmp_path, prune_fraction=0.5, **KW)


def test_target_sparsity_stops_and_trained_model_start(small_digits):
    trained, _ = train_model(TINY, small_digits, epochs=1, batch_size=16, seed=1,
                             progress=False)
    before = trained.state_dict()["head.weight"].clone()
    result = run_lth(trained, small_digits, target_sparsity=0.5, scope="layer", **KW)
    # density 0.75, 0.5625, 0.4219 -> the third round is the first at >= 50 % sparsity
    assert [r["round"] for r in result.log] == [0, 1, 2, 3]
    assert result.log[-1]["sparsity"] >= 0.5 > result.log[-2]["sparsity"]
    assert torch.equal(trained.state_dict()["head.weight"], before)  # input not modified
    for m in result.masks.values():  # layer scope: each tensor loses 25 % per round
        alive = m.numel()
        for _ in range(3):
            alive -= int(0.25 * alive)
        assert int(m.sum()) == alive


def test_stop_criterion_required(small_digits):
    with pytest.raises(NmcDeployError, match="stop criterion"):
        run_lth(TINY, small_digits, **KW)
