"""Checkpoints: lossless round trip, atomic writes, one-line errors for bad files."""
import zipfile

import numpy as np
import pytest
import torch

from nmc_deploy.errors import CheckpointError, NmcDeployError
from nmc_deploy.models import checkpoint as ckpt_mod
from nmc_deploy.models.checkpoint import load_checkpoint, save_checkpoint
from nmc_deploy.models.spikformer import PRESETS, Spikformer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = Spikformer(PRESETS["tiny"])
    gen = torch.Generator().manual_seed(0)
    for mod in m.modules():  # non-default BN statistics so that the round trip is meaningful
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(n, generator=gen) * 0.04 + 0.02)
            mod.bias.data.copy_(torch.rand(n, generator=gen) * 0.8 - 0.1)
    return m.eval()


@pytest.fixture
def saved(tmp_path, model):
    return save_checkpoint(tmp_path / "model.pt", model, {"dataset": "digits", "acc": 0.5})


def _write_raw(path, payload):
    torch.save(payload, path)
    return path


def test_round_trip_gives_identical_logits(saved, model):
    loaded, meta = load_checkpoint(saved)
    assert meta == {"dataset": "digits", "acc": 0.5}
    assert not loaded.training
    assert loaded.config == model.config
    img = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(img), model(img))


def test_save_leaves_no_temp_files(tmp_path, saved):
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_failed_save_keeps_old_file_and_removes_temp(tmp_path, saved, model, monkeypatch):
    before = saved.read_bytes()

    def broken_save(obj, f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(NmcDeployError, match=r"cannot be written \(No space left on device\); "
                       "free disk space"):
        save_checkpoint(saved, model, {})
    assert saved.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize("meta, match", [
    ({"obj": object()}, r"meta\['obj'\]: value of type object"),
    ({"acc": np.float64(0.5)}, r"meta\['acc'\]: value of type float64 .*\.item\(\)"),
    ({"history": [{"loss": np.float32(1.0)}]}, r"meta\['history'\]\[0\]\['loss'\]"),
    ({1: "x"}, "meta keys must be strings"),
])
def test_save_rejects_unstorable_meta(tmp_path, model, meta, match):
    with pytest.raises(CheckpointError, match=match):
        save_checkpoint(tmp_path / "m.pt", model, meta)
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_directory(tmp_path, model):
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "m.pt", model, {})


def _truncated(tmp_path, saved):
    data = saved.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_member(tmp_path, saved):
    # A valid zip whose data.pkl is garbage.
    path = tmp_path / "corrupt.pt"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, b"garbage" if item.filename.endswith("data.pkl") else data)
    return path


def _hdf5(tmp_path, saved):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.nir"
    with h5py.File(path, "w") as f:
        f.create_group("node")
    return path


def _text(tmp_path, saved):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\n")
    return path


def _empty(tmp_path, saved):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    return path


class _NotPlainData:
    pass


@pytest.mark.parametrize("make, match", [
    (lambda tmp, s: tmp / "missing.pt", r"missing\.pt: no such file; .*nmc-deploy train"),
    (lambda tmp, s: tmp, "is a directory"),
    (_text, "not a torch archive"),
    (_empty, "is empty"),
    (_truncated, "not a torch archive"),
    (_hdf5, "HDF5 file"),
    (_corrupt_member, "unreadable torch archive"),
    (lambda tmp, s: _write_raw(tmp / "pickled.pt", {"x": _NotPlainData()}),
     "refused: it contains code"),
    (lambda tmp, s: _write_raw(tmp / "bare.pt", {"weight": torch.zeros(2)}),
     r"not an nmc-deploy checkpoint \(no 'format' key\); create one with `nmc-deploy train`"),
    (lambda tmp, s: _write_raw(tmp / "list.pt", [1, 2]), "no 'format' key"),
])
def test_bad_files_raise_one_line_checkpoint_error(tmp_path, saved, make, match):
    path = make(tmp_path, saved)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def _edited(saved, tmp_path, edit):
    payload = torch.load(saved, weights_only=True)
    edit(payload)
    return _write_raw(tmp_path / "edited.pt", payload)


def _drop_key(payload):
    del payload["state_dict"]["head.weight"]


def _add_key(payload):
    payload["state_dict"]["extra.weight"] = torch.zeros(1)


def _reshape(payload):
    payload["state_dict"]["head.weight"] = torch.zeros(3, 3)


@pytest.mark.parametrize("edit, match", [
    (lambda p: p.update(format="other"), "format"),
    (lambda p: p.update(version=99), r"version \(99\)"),
    (lambda p: p["config"].update(num_heads=3), "bad config: .*divisible by num_heads"),
    (lambda p: p["config"].update(dropout=0.1), "bad config: .*unknown key 'dropout'"),
    (lambda p: p.update(config="digits"), "'config' entry"),
    (_drop_key, "missing keys 'head.weight'"),
    (_add_key, "unexpected keys 'extra.weight'"),
    (_reshape, r"head.weight'\] has shape \(3, 3\)"),
])
def test_inconsistent_checkpoints_raise(tmp_path, saved, edit, match):
    path = _edited(saved, tmp_path, edit)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_load_uses_weights_only(saved, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ckpt_mod.torch, "load", spy)
    load_checkpoint(saved)
    assert calls and calls[0].get("weights_only") is True
    assert calls[0].get("map_location") == "cpu"
