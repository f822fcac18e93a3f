"""Training loop: runs, records history, is reproducible; evaluation and input checks."""
import numpy as np
import pytest
import torch

from nmc_deploy.errors import DatasetError, NmcDeployError
from nmc_deploy.models.spikformer import PRESETS, SpikformerConfig
from nmc_deploy.models.train import DEFAULT_EPOCHS, evaluate_model, train_model

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def trained(small_digits):
    records = []
    model, history = train_model(TINY, small_digits, epochs=2, batch_size=16, seed=0,
                                 progress=False, log=records.append)
    return model, history, records


def test_history_has_one_record_per_epoch(trained):
    model, history, records = trained
    assert [r["epoch"] for r in history] == [1, 2]
    assert records == history
    for r in history:
        assert set(r) >= {"epoch", "loss", "train_acc", "seconds"}
        assert np.isfinite(r["loss"]) and 0.0 <= r["train_acc"] <= 1.0 and r["seconds"] > 0
    assert history[1]["loss"] < history[0]["loss"]
    assert not model.training


def test_same_seed_reproduces_the_model(trained, small_digits):
    model, history, _ = trained
    again, history_again = train_model(TINY, small_digits, epochs=2, batch_size=16, seed=0,
                                       progress=False)
    assert [r["loss"] for r in history] == [r["loss"] for r in history_again]
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_other_seed_gives_another_model(trained, small_digits):
    model, _, _ = trained
    other, _ = train_model(TINY, small_digits, epochs=1, batch_size=32, seed=1, progress=False)
    assert not torch.equal(model.head.weight, other.head.weight)


def test_evaluate_model_returns_accuracy_and_keeps_mode(trained, small_digits):
    model, _, _ = trained
    model.train()
    acc = evaluate_model(model, small_digits.x_test, small_digits.y_test, small_digits.levels)
    assert model.training  # mode restored
    model.eval()
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    assert acc == evaluate_model(model, small_digits.x_test, small_digits.y_test,
                                 small_digits.levels, batch_size=5)


def test_progress_bar_goes_to_stderr(small_digits, capsys):
    train_model(TINY, small_digits, epochs=1, batch_size=32, seed=0, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "epoch" in captured.err


def test_preset_name_is_accepted(small_digits):
    model, history = train_model("tiny", small_digits, epochs=1, batch_size=32, progress=False)
    assert model.config == TINY and len(history) == 1


def test_mismatched_dataset_raises(small_digits):
    cfg = SpikformerConfig(img_size=16)
    with pytest.raises(DatasetError, match="image shape"):
        train_model(cfg, small_digits, epochs=1, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"), ({"epochs": 1, "batch_size": 1}, "batch_size"),
    ({"epochs": 1, "lr": 0.0}, "lr")])
def test_invalid_arguments_raise(small_digits, kwargs, match):
    with pytest.raises(NmcDeployError, match=match):
        train_model(TINY, small_digits, progress=False, **kwargs)


def test_default_epochs_cover_presets():
    assert set(DEFAULT_EPOCHS) == set(PRESETS)


def test_recalibrate_batchnorm_uses_plain_batch_statistics(small_digits):
    torch.manual_seed(0)
    from nmc_deploy.models.spikformer import Spikformer
    from nmc_deploy.models.train import images_to_float, recalibrate_batchnorm

    model = Spikformer(TINY)
    bn = model.patch_embed.bns[0]
    bn.running_mean.fill_(5.0)
    seen = []
    hook = bn.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    x = images_to_float(small_digits.x_train[:32], small_digits.levels)
    recalibrate_batchnorm(model, x, batch_size=16)
    hook.remove()
    assert not model.training and bn.momentum == 0.1
    batch_means = torch.stack([b.mean(dim=(0, 2, 3)) for b in seen])
    batch_vars = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in seen])
    assert len(seen) == 2
    assert torch.allclose(bn.running_mean, batch_means.mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, batch_vars.mean(0), atol=1e-5)
