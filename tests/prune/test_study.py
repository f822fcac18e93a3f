"""The k-fold/seed harness of pruning studies (nmc_deploy.prune.study): deterministic,
paired, sLIF equal to LIF at initialisation, and runnable on MNIST from a user path."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.models.spikformer import SpikformerConfig
from nmc_deploy.prune.study import (ENDS, Arm, arms_from_dicts, replicates, run_replicate,
                                    state_digest)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = SpikformerConfig(embed_dim=16, num_heads=2, depth=1, mlp_ratio=2, time_steps=2,
                        sps_channels=(4, 16), sps_pool=(True, False))
ARMS = [Arm("dense", "dense"),
        Arm("dense sLIF", "dense", slif="all"),
        Arm("l1p", "l1p", sparsity=0.8, tensors="all_but_ends", epochs=1),
        Arm("l1p sLIF", "l1p", sparsity=0.8, tensors="all_but_ends", epochs=1, slif="all",
            slif_lr=1e-2),
        Arm("dsp", "dsp", rank_budget=0.5, epochs=1, deploy=("fused", "relay")),
        Arm("lth", "lth", sparsity=0.5, prune_fraction=0.5, epochs=1, rewind_epoch=1),
        Arm("lth tokens", "tokens", token_keep=0.5, epochs=1, after="lth")]


def _run(pool, rep):
    return run_replicate(pool, TINY, ARMS, rep, dense_epochs=2)


@pytest.fixture(scope="module")
def first(small_digits):
    return _run(small_digits, replicates(2, 2)[1])


def test_a_replicate_is_deterministic(small_digits, first):
    again = _run(small_digits, replicates(2, 2)[1])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert strip(again) == strip(first)
    assert [r["arm"] for r in first] == ["dense", "dense sLIF", "l1p", "l1p sLIF", "dsp",
                                         "dsp (relay)", "lth", "lth tokens"]


def test_other_replicates_differ(small_digits, first):
    other = _run(small_digits, replicates(2, 2)[2])  # repeat 1, fold 0: new deal, new seed
    assert other[0]["seed"] != first[0]["seed"]
    assert other[0]["digest"] != first[0]["digest"]


def test_an_arm_does_not_depend_on_the_arms_before_it(small_digits, first):
    """The same arm alone (with its predecessor) gives the same model as in the full list."""
    by = {r["arm"]: r for r in first}
    alone = run_replicate(small_digits, TINY, [ARMS[5], ARMS[6]], replicates(2, 2)[1],
                          dense_epochs=2)
    assert [r["digest"] for r in alone] == [by["lth"]["digest"], by["lth tokens"]["digest"]]


def test_each_lth_arm_rewinds_to_its_own_epoch(small_digits):
    arms = [Arm(f"lth{e}", "lth", sparsity=0.5, prune_fraction=0.5, epochs=1, rewind_epoch=e)
            for e in (0, 1, 2)]
    rep = replicates(2, 1)[0]
    rows = run_replicate(small_digits, TINY, arms, rep, dense_epochs=2)
    assert len({r["digest"] for r in rows}) == 3
    again = run_replicate(small_digits, TINY, arms[1:2], rep, dense_epochs=2)
    assert again[0]["digest"] == rows[1]["digest"]
    with pytest.raises(NmcDeployError, match="rewind_epoch"):
        run_replicate(small_digits, TINY, arms[2:], rep, dense_epochs=1)


def test_rows_carry_the_replicate_and_the_arm(first):
    by = {r["arm"]: r for r in first}
    assert {r["seed"] for r in first} == {1} and {r["fold"] for r in first} == {1}
    assert by["l1p"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert by["l1p"]["nonzero_weights"] < by["dense"]["nonzero_weights"]
    assert by["lth"]["sparsity"] >= 0.5
    assert by["dsp"]["digest"] == by["dsp (relay)"]["digest"]  # one model, two deployments
    assert by["l1p"]["settings"]["tensors"] == "all_but_ends"
    assert all(r["n_test"] + r["n_train"] == 96 for r in first)


def test_slif_equals_lif_at_initialisation(first):
    """The converted dense model (no training) classifies exactly as the LIF one."""
    by = {r["arm"]: r for r in first}
    assert by["dense sLIF"]["accuracy_float"] == by["dense"]["accuracy_float"]
    assert by["dense sLIF"]["digest"] != by["dense"]["digest"]  # it has thresholds and leaks


def test_ends_stay_dense_and_masks_carry_into_later_arms(small_digits):
    seen = {}

    def evaluate(model, data, deploy):
        params = dict(model.named_parameters())
        seen[len(seen)] = {n: int((params[n] == 0).sum()) for n in ENDS}
        return {"zeros_total": int(sum(int((p == 0).sum()) for p in params.values()
                                       if p.ndim >= 2))}

    arms = [Arm("l1p", "l1p", sparsity=0.9, tensors="all_but_ends", epochs=1),
            Arm("tok", "tokens", token_keep=0.5, epochs=1, after="l1p")]
    rows = run_replicate(small_digits, TINY, arms, replicates(2, 1)[0], dense_epochs=1,
                         evaluate=evaluate)
    assert seen[0] == {n: 0 for n in ENDS}
    assert rows[1]["zeros_total"] >= rows[0]["zeros_total"]  # the selectors' training kept them


def test_bad_arms_are_refused():
    with pytest.raises(NmcDeployError, match="needs a sparsity"):
        Arm("x", "l1p")
    with pytest.raises(NmcDeployError, match="method"):
        Arm("x", "magic")
    with pytest.raises(NmcDeployError, match="slif"):
        Arm("x", "dense", slif="some")
    with pytest.raises(NmcDeployError, match="no sLIF parameters"):
        Arm("x", "lth", sparsity=0.9, slif="all")
    assert arms_from_dicts([{"name": "d", "method": "dense", "deploy": ["relay"]}])[0].deploy \
        == ("relay",)


def _load_bench(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _mnist_fixture(directory: Path, digits) -> None:
    """MNIST-format idx files from digits: 8x8 scaled to 24x24, padded to 28x28, 0..240."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from test_loaders import write_mnist_idx

    def up(x):
        big = np.kron(x[:, 0], np.ones((3, 3), np.int64)) * 15
        return np.pad(big, ((0, 0), (2, 2), (2, 2))).astype(np.uint8)

    write_mnist_idx(directory, {"x_train": up(digits.x_train[:60]),
                                "y_train": digits.y_train[:60].astype(np.uint8),
                                "x_test": up(digits.x_test[:30]),
                                "y_test": digits.y_test[:30].astype(np.uint8)})


@pytest.mark.slow
def test_the_benchmark_runs_a_study_on_mnist_from_a_path(tmp_path, digits):
    """benchmarks/pruning.py on MNIST files (a fixture in the idx format): rows with float and
    fixed-point accuracy and costs for every arm; the report aggregates them."""
    _mnist_fixture(tmp_path, digits)
    bench = _load_bench("pruning")
    torch.set_num_threads(1)
    bench.run("small", [0, 1], tmp_path / "out", "mnist", str(tmp_path), repeats=1,
              dense_epochs=1, epochs_scale=0.1)
    rows = [r for p in sorted((tmp_path / "out").glob("*.json")) for r in json.loads(p.read_text())]
    assert {r["fold"] for r in rows} == {0, 1} and {r["dataset"] for r in rows} == {"mnist"}
    assert {r["config"]["img_size"] for r in rows} == {28}
    for r in rows:
        assert 0 <= r["accuracy_fixed"] <= 1 and r["cores"] >= 1 and r["chips"] == 1
        assert r["synops_per_sample"] > 0 and r["energy_uj_loihi"] > 0
    sys.path.insert(0, str(BENCH))
    report = _load_bench("pruning_report")
    studies = {k: report.Study(v) for k, v in report.load_rows(tmp_path / "out").items()}
    s = studies[("mnist", "small")]
    assert len(s.reps) == 2 and "dense" in s.arms
    assert any(line.startswith("| DSP 30% + sLIF |") for line in report.table(s))


def test_the_report_adjusts_p_values_by_holm():
    sys.path.insert(0, str(BENCH))
    report = _load_bench("pruning_report")
    adjusted = report.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjusted[4] != adjusted[4]  # NaN stays NaN
