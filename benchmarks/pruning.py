"""Pruning study with statistical power (issue 13): repeated stratified k-fold, paired tests.

  .venv/bin/python benchmarks/pruning.py run --study digits --replicates 0-9 --out bench_pruning
  .venv/bin/python benchmarks/pruning.py run --study small --replicates 0-9 --out bench_pruning
  .venv/bin/python benchmarks/pruning.py run --study small-dsp --replicates 0-9 --out bench_pruning
  .venv/bin/python benchmarks/pruning.py run --study lth --replicates 0-4 --out bench_pruning
  .venv/bin/python benchmarks/pruning.py run --study lth30 --replicates 0-9 --out bench_pruning
  .venv/bin/python benchmarks/pruning.py aggregate bench_pruning \
      --plot docs/pruning-frontier.png > docs/results-pruning.md

The rows behind docs/results-pruning.md are in docs/data/pruning-study (aggregate that
directory to regenerate the page).

Replicates: 5-fold stratified cross-validation over all images of the data set (digits:
the 1,797 images of train + test), repeated with a new deal per repeat; replicate i is
repeat i // 5, fold i % 5, training seed i (nmc_deploy.prune.study). On each replicate the
dense model is trained from scratch (30 epochs) and every arm of the study derived from it,
so all arms of a replicate are paired. Every row is exported, compiled for loihi2 and run
on the fixed-point reference simulator over the replicate's test fold: fixed-point
accuracy, synaptic ops, energy (both energy models), latency, cores and chips.

One JSON file per (study, replicate) in --out; existing files are skipped (resumable).
`--dataset mnist --data-path DIR` runs a study on MNIST from the user's files (config from
the image size, see ``study_config``); tests/prune/test_study.py runs it on a small fixture.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

K = 5  # folds
DENSE_EPOCHS = 30
# LTH: 0.44**3 leaves 8.5 % of the pruned tensors (91.5 % sparse) in 3 rounds, 90.6 % of all
# weights with the first conv and the head dense: ">= 90 %" holds for the whole model
LTH_FRACTION_3 = 0.56
SLIF_LR = 1e-2  # sLIF thresholds/leaks: AdamW at 1e-3 moves a threshold of ~1 by < 0.1 in 5 epochs


def _arms(study: str) -> list[dict]:
    """The arms of each study (plain dicts; nmc_deploy.prune.study.Arm)."""
    abe = "all_but_ends"
    if study == "digits":
        lth = dict(method="lth", sparsity=0.9, tensors=abe, prune_fraction=LTH_FRACTION_3,
                   epochs=15, rewind_epoch=3)
        return [
            dict(name="dense", method="dense"),
            dict(name="L1P 95% blocks", method="l1p", sparsity=0.95, tensors="blocks_only"),
            dict(name="L1P 85%", method="l1p", sparsity=0.85, tensors=abe),
            dict(name="L1P 85% + sLIF", method="l1p", sparsity=0.85, tensors=abe, slif="all",
                 slif_lr=SLIF_LR),
            dict(name="L1P 90%", method="l1p", sparsity=0.9, tensors=abe),
            dict(name="L1P 90% + sLIF", method="l1p", sparsity=0.9, tensors=abe, slif="all",
                 slif_lr=SLIF_LR),
            dict(name="L1P 90% + sLIF (lr 1e-3)", method="l1p", sparsity=0.9, tensors=abe,
                 slif="all"),
            dict(name="DSP 25%", method="dsp", rank_budget=0.25, deploy=["fused", "relay"]),
            dict(name="DSP 25% + sLIF", method="dsp", rank_budget=0.25, slif="blocks",
                 slif_lr=SLIF_LR, deploy=["fused", "relay"]),
            dict(name="LTH 90%", **lth),
            dict(name="tokens r=0.7", method="tokens", token_keep=0.7, epochs=15),
            dict(name="LTH 90% + tokens r=0.7", method="tokens", token_keep=0.7, epochs=15,
                 after="LTH 90%"),
        ]
    if study == "small":
        return [
            dict(name="dense", method="dense"),
            dict(name="DSP 30%", method="dsp", rank_budget=0.3, epochs=3,
                 deploy=["fused", "relay"]),
            dict(name="DSP 30% + sLIF", method="dsp", rank_budget=0.3, epochs=3, slif="all",
                 slif_lr=SLIF_LR, deploy=["fused", "relay"]),
            dict(name="DSP 20%", method="dsp", rank_budget=0.2, epochs=3),
            dict(name="DSP 20% + sLIF", method="dsp", rank_budget=0.2, epochs=3, slif="all",
                 slif_lr=SLIF_LR),
            dict(name="L1P 70%", method="l1p", sparsity=0.7, tensors=abe, epochs=3),
            dict(name="L1P 70% + sLIF", method="l1p", sparsity=0.7, tensors=abe, epochs=3,
                 slif="all", slif_lr=SLIF_LR),
        ]
    if study == "small-dsp":  # DSP with one fine-tuning epoch (the 'small' study's 3 hardly lose)
        return [
            dict(name="dense", method="dense"),
            dict(name="DSP 30% 1 ep", method="dsp", rank_budget=0.3, epochs=1,
                 deploy=["fused", "relay"]),
            dict(name="DSP 30% 1 ep + sLIF", method="dsp", rank_budget=0.3, epochs=1,
                 slif="all", slif_lr=SLIF_LR, deploy=["fused", "relay"]),
            dict(name="DSP 20% 1 ep", method="dsp", rank_budget=0.2, epochs=1),
            dict(name="DSP 20% 1 ep + sLIF", method="dsp", rank_budget=0.2, epochs=1,
                 slif="all", slif_lr=SLIF_LR),
        ]
    if study == "lth30":  # the best schedule of the 'lth' study on all 10 replicates
        return [dict(name="dense", method="dense"),
                dict(name="LTH 90% 30 ep/round", method="lth", sparsity=0.9, tensors=abe,
                     prune_fraction=LTH_FRACTION_3, epochs=30, rewind_epoch=3)]
    if study == "lth":  # LTH schedules at 90 % (item 3), on fewer replicates (costly)
        base = dict(method="lth", sparsity=0.9, tensors=abe)
        f3 = LTH_FRACTION_3
        return [
            dict(name="dense", method="dense"),
            # the release's fraction: 0.75**9 = 7.5 % left after 9 rounds (8 leave 10.01 %)
            dict(name="LTH 0.25x9 rounds, 15 ep, rewind 3", prune_fraction=0.25, epochs=15,
                 rewind_epoch=3, **base),
            dict(name="LTH 0.56x3 rounds, 30 ep, rewind 3", prune_fraction=f3, epochs=30,
                 rewind_epoch=3, **base),
            dict(name="LTH 0.56x3 rounds, 15 ep, rewind 10", prune_fraction=f3, epochs=15,
                 rewind_epoch=10, **base),
        ]
    raise SystemExit(f"unknown study {study!r}")


def study_config(study: str, image_shape: tuple[int, int, int], num_classes: int):
    """The model of a study for a data set's image shape (digits preset for 8x8 x 1)."""
    from nmc_deploy.models.spikformer import SpikformerConfig, preset_config

    c, h, _ = image_shape
    small = study.startswith("small")
    if (c, h) == (1, 8) and not small:
        return preset_config("digits")
    if (c, h) == (1, 8):
        return SpikformerConfig(embed_dim=16, num_heads=2, depth=2, mlp_ratio=2,
                                sps_channels=(4, 8, 16))
    pools = (True, True, False) if h % 4 == 0 else (False, False, False)
    d = 16 if small else 32
    return SpikformerConfig(img_size=h, in_channels=c, num_classes=num_classes, embed_dim=d,
                            num_heads=2, depth=2, mlp_ratio=2 if small else 4,
                            sps_channels=(d // 4, d // 2, d), sps_pool=pools)


def evaluate(model, data, deploy: str) -> dict:
    """Deployed figures of one model on ``data``'s test split (loihi2, reference simulator)."""
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.partition import partition_program
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.compile.validate import validate_program
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.report.energy import estimate_costs
    from nmc_deploy.simulate.reference import accuracy, simulate_reference
    from nmc_deploy.targets import load_target

    tgt = load_target("loihi2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = validate_program(quantize_program(
            lower_graph(export_spikformer(model, {"input_levels": data.levels}),
                        low_rank=deploy), target=tgt), tgt)
    placement = partition_program(prog, tgt)
    summary = placement.summary(prog)
    sim = simulate_reference(prog, data.x_test, record=False)
    rep = estimate_costs(sim.stats, summary, tgt)
    return {"accuracy_fixed": accuracy(sim, data.y_test),
            "synapses": int(sum(g.num_synapses for g in prog.groups)),
            "synops_per_sample": rep["per_sample"]["synops"],
            "energy_uj_cmos45nm": rep["energy_per_sample_uj"]["cmos45nm"],
            "energy_uj_loihi": rep["energy_per_sample_uj"]["loihi_davies2018"],
            "latency_us": rep["latency_per_sample_us"],
            "cores": placement.cores_used, "chips": summary.get("chips_used"),
            "selector_macs_per_sample": rep.get("token_selection", {}).get(
                "predictor_macs_per_sample", 0.0)}


def _parse_range(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def run(study: str, indices: list[int], out: Path, dataset: str, data_path: str | None,
        repeats: int, dense_epochs: int, epochs_scale: float = 1.0) -> None:
    from nmc_deploy.data import load_dataset
    from nmc_deploy.prune.study import arms_from_dicts, replicates, run_replicate

    pool = load_dataset(dataset, data_path)
    cfg = study_config(study, pool.image_shape, pool.num_classes)
    arms = arms_from_dicts([{**a, **({"epochs": max(1, round(a.get("epochs", 5) * epochs_scale))}
                                     if epochs_scale != 1.0 else {})} for a in _arms(study)])
    reps = replicates(K, repeats)
    out.mkdir(parents=True, exist_ok=True)
    for i in indices:
        path = out / f"{dataset}-{study}-rep{i}.json"
        if path.exists():
            print(f"{path}: exists, skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        rows = run_replicate(pool, cfg, arms, reps[i], dense_epochs=dense_epochs,
                             evaluate=evaluate,
                             log=lambda r: print(json.dumps({k: r[k] for k in (
                                 "arm", "seed", "accuracy_float", "accuracy_fixed",
                                 "seconds")}), file=sys.stderr, flush=True))
        for r in rows:
            r.update(study=study, dataset=dataset, config=cfg.to_dict())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(path)
        print(f"{path}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--study", choices=["digits", "small", "small-dsp", "lth", "lth30"], required=True)
    r.add_argument("--replicates", default="0-9", help="indices, e.g. 0-4,7")
    r.add_argument("--repeats", type=int, default=2, help="repeats of 5-fold (10 replicates)")
    r.add_argument("--dataset", default="digits")
    r.add_argument("--data-path", default=None)
    r.add_argument("--dense-epochs", type=int, default=DENSE_EPOCHS)
    r.add_argument("--epochs-scale", type=float, default=1.0,
                   help="multiply every arm's epochs (smoke runs)")
    r.add_argument("--out", type=Path, default=Path("bench_pruning"))
    a = sub.add_parser("aggregate")
    a.add_argument("out", type=Path)
    a.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.study, _parse_range(args.replicates), args.out, args.dataset, args.data_path,
            args.repeats, args.dense_epochs, args.epochs_scale)
    else:
        from pruning_report import aggregate  # benchmarks/pruning_report.py

        aggregate(args.out, args.plot)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
