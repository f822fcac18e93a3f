"""L1P: one-shot and gradual magnitude pruning of the block matrices, with and without sLIF."""
import pytest
import torch

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.lif import SLIF
from nmc_deploy.models.spikformer import PRESETS
from nmc_deploy.models.train import train_model
from nmc_deploy.prune.l1p import cubic_sparsity_schedule, run_l1p
from nmc_deploy.prune.masks import prunable_parameters, sparsity_report
from nmc_deploy.prune.slif import convert_to_slif


@pytest.fixture(scope="module")
def trained(small_digits):
    model, _ = train_model(PRESETS["tiny"], small_digits, epochs=1, batch_size=16, seed=0,
                           progress=False)
    return model


def test_cubic_schedule():
    s = cubic_sparsity_schedule(0.9, 3)
    assert s[-1] == pytest.approx(0.9)
    assert s[0] == pytest.approx(0.9 * (1 - (2 / 3) ** 3))
    assert all(a < b for a, b in zip(s, s[1:]))


def test_one_shot_prunes_only_the_block_matrices(trained, small_digits):
    result = run_l1p(trained, small_digits, sparsity=0.9, finetune_epochs=1, batch_size=16)
    blocks = set(prunable_parameters(trained, "blocks_only"))
    assert set(result.masks) == blocks
    report = sparsity_report(result.model, result.masks)
    assert report.sparsity == pytest.approx(0.9, abs=1.0 / report.prunable_params)
    others = sparsity_report(result.model, tensors="all")
    assert others.prunable_nonzero - report.prunable_nonzero == sum(
        p.numel() for n, p in prunable_parameters(trained, "all").items() if n not in blocks)
    assert [r["step"] for r in result.log] == [1, "finetune"]
    assert result.log[0]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert not sparsity_report(trained, result.masks).sparsity  # input untouched


def test_gradual_schedule_reaches_the_target(trained, small_digits):
    result = run_l1p(trained, small_digits, sparsity=0.8, schedule="gradual", steps=2,
                     epochs_per_step=1, finetune_epochs=0, scope="layer", batch_size=16)
    assert [r["step"] for r in result.log] == [1, 2]
    assert result.log[0]["sparsity"] == pytest.approx(0.8 * (1 - 0.5 ** 3), abs=0.01)
    params = dict(result.model.named_parameters())
    for name, m in result.masks.items():
        assert float((~m).float().mean()) == pytest.approx(0.8, abs=1.0 / m.numel())
        assert not params[name].detach()[~m].any()


def test_with_slif_the_thresholds_learn(trained, small_digits):
    model = convert_to_slif(trained)
    result = run_l1p(model, small_digits, sparsity=0.9, finetune_epochs=1, batch_size=16)
    thresholds = [m.v_threshold_per_channel() for m in result.model.modules()
                  if isinstance(m, SLIF)]
    assert len(thresholds) == 7
    assert any(not torch.equal(t, torch.full_like(t, t[0].item())) for t in thresholds)
    assert result.model.config.neuron == "slif_blocks"


def test_invalid_arguments(trained, small_digits):
    with pytest.raises(NmcDeployError, match="sparsity"):
        run_l1p(trained, small_digits, sparsity=1.0)
    with pytest.raises(NmcDeployError, match="schedule"):
        run_l1p(trained, small_digits, schedule="linear")
