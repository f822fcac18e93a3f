"""Pruning benchmark on digits (issue 3): one seed per run, then an aggregate table.

  .venv/bin/python benchmarks/pruning.py run --seed 0 --out bench_pruning/   # ~7 min a seed
  .venv/bin/python benchmarks/pruning.py aggregate bench_pruning/ > docs/results-pruning.md

Per seed: train the digits preset, then dense; LTH (25 % of the remaining weights per round,
15 epochs per round, late rewinding to the dense run's epoch-3 weights, first conv and head
left dense) read at 90 % and >= 95 % sparsity;
L1P one-shot at 80/90/95 % of the block matrices + 5 epochs, with and without sLIF; DSP at
energy 0.9 and at a 25 % parameter budget + 5 epochs, with and without sLIF. Every row is
exported, compiled for loihi2 and run on the fixed-point reference over the whole test split
(synaptic ops and energy per sample from the measured activity; token selectors' MACs
priced as embedded-core work). Each DSP model is evaluated twice: with its factors fused into
one matrix ("DSP <label>") and deployed as two synaptic stages through graded relays
("DSP <label> (relay)", ``evaluate(..., low_rank="relay")``; same trained model). Token
selection: selectors before both blocks, r in TOKEN_KEEPS, TOKEN_EPOCHS epochs of selector +
backbone training distilled from the dense model; "LTH + tokens" adds r = LTH_TOKEN_KEEP
selectors to the round-8 ticket (its masks kept). Partial runs: `--only lth` (LTH rows and
LTH + tokens), `--only tokens`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

L1P_LEVELS = (0.8, 0.9, 0.95)
DSP_SETTINGS = (("energy 0.9", {"energy": 0.9}), ("budget 0.25", {"rank_budget": 0.25}))
FINETUNE_EPOCHS = 5
LTH_EPOCHS_PER_ROUND = 15
LTH_REWIND_EPOCH = 3  # late rewinding: every round restarts from the dense run's epoch-3 weights
LTH_ROUNDS = (8, 11)  # 0.75**8 = 10.0 % and 0.75**11 = 4.2 % of the weights remain
# The first conv (144 weights) and the head are left dense: pruning them globally with the
# rest cost most of LTH's accuracy on this small model (docs/results-pruning.md).
LTH_EXCLUDE = ("patch_embed.convs.0.weight", "head.weight")
TOKEN_KEEPS = (0.9, 0.8, 0.7, 0.5)  # r: the p-th selector keeps floor(16 r**p) tokens
TOKEN_EPOCHS = 20  # selector + backbone training epochs (distillation from the dense model)
LTH_TOKEN_KEEP = 0.8  # the schedule combined with the 90 %-sparse LTH ticket
ROW_ORDER = ("dense", "LTH round", "LTH + tokens", "dense + selectors", "tokens", "L1P", "DSP")


def evaluate(model, data, low_rank: str = "fused") -> dict:
    """Float accuracy, parameters, nonzeros; fixed-point accuracy, synops, energy, cores.

    ``low_rank`` ("fused" or "relay") chooses how low-rank (DSP) factor pairs deploy.
    """
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.partition import partition_program
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.compile.validate import validate_program
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.prune.common import accuracy_on_test
    from nmc_deploy.report.energy import estimate_costs
    from nmc_deploy.simulate.reference import accuracy, simulate_reference
    from nmc_deploy.targets import load_target

    tgt = load_target("loihi2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = validate_program(quantize_program(
            lower_graph(export_spikformer(model, {"input_levels": 16}), low_rank=low_rank),
            target=tgt), tgt)
    placement = partition_program(prog, tgt)
    sim = simulate_reference(prog, data.x_test, record=False)
    rep = estimate_costs(sim.stats, placement.summary(prog), tgt)
    params = [p for n, p in model.named_parameters() if p.ndim >= 2]
    return {"accuracy_float": accuracy_on_test(model, data),
            "accuracy_fixed": accuracy(sim, data.y_test),
            "weights": int(sum(p.numel() for p in params)),
            "nonzero_weights": int(sum(int((p != 0).sum()) for p in params)),
            "synapses": int(sum(g.num_synapses for g in prog.groups)),
            "synops_per_sample": rep["per_sample"]["synops"],
            "energy_uj_cmos45nm": rep["energy_per_sample_uj"]["cmos45nm"],
            "energy_uj_loihi": rep["energy_per_sample_uj"]["loihi_davies2018"],
            "cores": placement.cores_used,
            "synapse_memory_bits": int(sum(c.synapse_memory_bits for cs in placement.cores
                                           for c in cs)),
            "pipeline_depth": prog.pipeline_depth,
            "low_rank": low_rank,
            "selector_macs_per_sample": rep.get("token_selection", {}).get(
                "predictor_macs_per_sample", 0.0)}


def run_seed(seed: int, out: Path, only: str | None = None) -> None:
    from nmc_deploy.data import load_dataset
    from nmc_deploy.models.spikformer import preset_config
    from nmc_deploy.models.train import DEFAULT_EPOCHS
    from nmc_deploy.prune.dsp import run_dsp
    from nmc_deploy.prune.l1p import run_l1p
    from nmc_deploy.prune.lth import run_lth
    from nmc_deploy.prune.slif import convert_to_slif

    data = load_dataset("digits")
    rows = []

    def add(name, model, t0, low_rank="fused", **extra):
        r = {"row": name, "seed": seed, **evaluate(model, data, low_rank=low_rank),
             "seconds": round(time.perf_counter() - t0, 1), **extra}
        rows.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    # the model train_model(preset_config("digits"), ...) gives (same seeding and loop), plus a
    # copy of its parameters after LTH_REWIND_EPOCH epochs (LTH's rewinding point)
    import torch
    from nmc_deploy.models.spikformer import Spikformer
    from nmc_deploy.models.train import fit

    torch.manual_seed(seed)
    base = Spikformer(preset_config("digits"))
    theta_rw = {}

    def keep_rewind_point(m, record):
        if record["epoch"] == LTH_REWIND_EPOCH:
            theta_rw.update({n: p.detach().clone() for n, p in m.named_parameters()})

    fit(base, data, epochs=DEFAULT_EPOCHS["digits"], seed=seed, progress=False,
        on_epoch_end=keep_rewind_point)
    add("dense", base, t0)
    from nmc_deploy.prune.masks import prunable_parameters
    from nmc_deploy.prune.tokens import run_tokens

    def token_rows():
        token_baseline_row()
        for keep in TOKEN_KEEPS:
            t0 = time.perf_counter()
            res = run_tokens(base, data, keep=keep, epochs=TOKEN_EPOCHS, seed=seed)
            add(f"tokens r = {keep}", res.model, t0,
                kept_tokens=res.log[-1]["kept_tokens"])

    def dsp_rows():
        for label, kw in DSP_SETTINGS:
            for slif in (False, True):
                t0 = time.perf_counter()
                m = convert_to_slif(base) if slif else base
                res = run_dsp(m, data, finetune_epochs=FINETUNE_EPOCHS, seed=seed, **kw)
                add(f"DSP {label}{' + sLIF' if slif else ''}", res.model, t0)
                add(f"DSP {label}{' + sLIF' if slif else ''} (relay)", res.model,
                    time.perf_counter(), low_rank="relay")

    def token_baseline_row():
        from nmc_deploy.prune.tokens import add_token_selectors

        t0 = time.perf_counter()
        add("dense + selectors keeping all (r = 1)", add_token_selectors(base, 1.0), t0)

    if only == "token-baseline":
        token_baseline_row()
        out.mkdir(parents=True, exist_ok=True)
        (out / f"seed{seed}-tokbase.json").write_text(json.dumps(rows, indent=1))
        return
    if only == "dsp":
        dsp_rows()
        out.mkdir(parents=True, exist_ok=True)
        (out / f"seed{seed}-dsp.json").write_text(json.dumps(rows, indent=1))
        return
    if only == "tokens":
        token_rows()
        out.mkdir(parents=True, exist_ok=True)
        (out / f"seed{seed}-tokens.json").write_text(json.dumps(rows, indent=1))
        return

    tensors = [n for n in prunable_parameters(base, "all") if n not in LTH_EXCLUDE]
    with tempfile.TemporaryDirectory() as state:
        for rounds in LTH_ROUNDS:
            t0 = time.perf_counter()
            res = run_lth(base, data, epochs_per_round=LTH_EPOCHS_PER_ROUND, rounds=rounds,
                          tensors=tensors, seed=seed, state_dir=state, rewind_state=theta_rw)
            add(f"LTH round {rounds}", res.model, t0, sparsity=res.log[-1]["sparsity"])
            if rounds == LTH_ROUNDS[0]:
                t0 = time.perf_counter()
                tok = run_tokens(res.model, data, keep=LTH_TOKEN_KEEP, epochs=TOKEN_EPOCHS,
                                 seed=seed, masks=res.masks)
                add(f"LTH + tokens r = {LTH_TOKEN_KEEP}", tok.model, t0,
                    sparsity=res.log[-1]["sparsity"], kept_tokens=tok.log[-1]["kept_tokens"])
    if only == "lth":
        out.mkdir(parents=True, exist_ok=True)
        (out / f"seed{seed}-lth.json").write_text(json.dumps(rows, indent=1))
        return
    for level in L1P_LEVELS:
        for slif in (False, True):
            t0 = time.perf_counter()
            m = convert_to_slif(base) if slif else base
            res = run_l1p(m, data, sparsity=level, finetune_epochs=FINETUNE_EPOCHS, seed=seed)
            add(f"L1P {int(level * 100)}%{' + sLIF' if slif else ''}", res.model, t0,
                sparsity=level)
    dsp_rows()
    token_rows()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seed{seed}.json").write_text(json.dumps(rows, indent=1))


def aggregate(out: Path) -> None:
    runs = []
    for p in sorted(out.glob("seed[0-9].json")) + sorted(out.glob("seed[0-9][0-9].json")):
        rows = {r["row"]: r for r in json.loads(p.read_text())}
        for part in ("lth", "tokens", "dsp", "tokbase"):  # partial runs replace or add rows
            extra = p.with_name(f"{p.stem}-{part}.json")
            if extra.exists():
                rows.update({r["row"]: r for r in json.loads(extra.read_text())
                             if r["row"] != "dense"})
        order = lambda name: max((len(pre), -i) for i, pre in enumerate(ROW_ORDER)  # noqa: E731
                                 if name.startswith(pre))[1] * -1
        runs.append(sorted(rows.values(), key=lambda r: order(r["row"])))
    seeds = [r[0]["seed"] for r in runs]
    names = [r["row"] for r in runs[0]]  # rows every seed has (older runs lack the relay rows)
    names = [n for n in names if all(any(x["row"] == n for x in run) for run in runs)]
    by = {n: [next(x for x in run if x["row"] == n) for run in runs] for n in names}

    def ms(n, key, scale=1.0, fmt="{:.2f}"):
        v = np.array([x[key] for x in by[n]], float) * scale
        return (fmt + " ± " + fmt).format(v.mean(), v.std())

    print("# Pruning results on digits (issue 3)\n")
    print(f"Produced by `benchmarks/pruning.py` ({len(seeds)} seeds: {seeds}; mean ± std). "
          "Float accuracy: torch; fixed point: the compiled program (loihi2) on the reference "
          "simulator over all 360 test images; synaptic ops and energy per sample from that "
          "activity (energy estimated: 45 nm convention / Loihi per-event figures).\n")
    print("| model | sparsity | float acc % | fixed acc % | weights | nonzero | synops/sample "
          "| E 45nm µJ | E Loihi µJ | cores |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        sp_ = by[n][0].get("sparsity")
        sp_txt = "-" if sp_ is None else ms(n, "sparsity", 100, "{:.1f}") + " %"
        print(f"| {n} | {sp_txt} | {ms(n, 'accuracy_float', 100)} | {ms(n, 'accuracy_fixed', 100)} "
              f"| {by[n][0]['weights']} | {ms(n, 'nonzero_weights', 1, '{:.0f}')} "
              f"| {ms(n, 'synops_per_sample', 1, '{:.0f}')} | {ms(n, 'energy_uj_cmos45nm', 1, '{:.3f}')} "
              f"| {ms(n, 'energy_uj_loihi', 1, '{:.2f}')} | {ms(n, 'cores', 1, '{:.0f}')} |")
    mean = lambda n, k: float(np.mean([x[k] for x in by[n]]))  # noqa: E731
    dense = mean("dense", "accuracy_float")
    lth90 = mean(f"LTH round {LTH_ROUNDS[0]}", "accuracy_float")
    loss = dense - mean("L1P 95%", "accuracy_float")
    recovered = mean("L1P 95% + sLIF", "accuracy_float") - mean("L1P 95%", "accuracy_float")
    print("\n## Acceptance targets\n")
    lth90_fx = mean(f"LTH round {LTH_ROUNDS[0]}", "accuracy_fixed")
    dense_fx = mean("dense", "accuracy_fixed")
    print(f"- LTH at 90 % sparsity within 1.0 point of dense: float {100 * (lth90 - dense):+.2f} "
          f"points -> {'met' if dense - lth90 <= 0.01 else 'MISSED'}; fixed point (the deployed "
          f"program) {100 * (lth90_fx - dense_fx):+.2f} points -> "
          f"{'met' if dense_fx - lth90_fx <= 0.01 else 'MISSED'}.")
    verdict = ("no loss to recover" if loss <= 0 else
               ("met" if recovered >= loss / 2 else "MISSED"))
    print(f"- sLIF recovers at least half of what L1P loses at 95 %: loss {100 * loss:.2f} points, "
          f"recovered {100 * recovered:.2f} points -> {verdict}.")
    dense_ops = mean("dense", "synops_per_sample")
    token_rows = [n for n in names if n.startswith("tokens")]
    ok = [n for n in token_rows if mean(n, "synops_per_sample") <= 0.8 * dense_ops
          and dense - mean(n, "accuracy_float") <= 0.01]
    base_name = next((n for n in names if n.startswith("dense + selectors")), None)
    base_ops = mean(base_name, "synops_per_sample") if base_name else None
    strict = [n for n in ok if base_ops and mean(n, "synops_per_sample") <= 0.8 * base_ops]
    print(f"- Token schedule with >= 20 % fewer synaptic ops within 1.0 point (float, mean of "
          f"seeds): {'met by ' + ', '.join(ok) if ok else 'MISSED'}"
          + (f"; by token removal alone (>= 20 % fewer than the dense model deployed with "
             f"keep-all selectors): {', '.join(strict) or 'none'}" if base_ops else "") + ".")
    for n in token_rows:
        vs_base = (f", {100 * (1 - mean(n, 'synops_per_sample') / base_ops):.1f} % fewer than "
                   "the dense model deployed with keep-all selectors" if base_ops else "")
        print(f"  - {n}: {100 * (1 - mean(n, 'synops_per_sample') / dense_ops):.1f} % fewer "
              f"synaptic ops than dense{vs_base}; {100 * (mean(n, 'accuracy_float') - dense):+.2f}"
              f" points (float), "
              f"{100 * (mean(n, 'accuracy_fixed') - mean('dense', 'accuracy_fixed')):+.2f} "
              f"points (fixed); selector {mean(n, 'selector_macs_per_sample'):.0f} MACs/sample")
    if base_ops:
        print(f"  - Of these savings, {100 * (1 - base_ops / dense_ops):.1f} % come from deploying "
              "selectors at all (row 'dense + selectors keeping all'): each re-emits the residual "
              "stream as one graded source, so coinciding spikes of the stream's populations "
              "become one event; the rest is token removal.")
    print(NOTES)


NOTES = """
## Notes

Columns: *sparsity* is the fraction removed from the tensors the method prunes (LTH: all
>=2-D weights except the first conv and the head, which stay dense; L1P: the
q/k/v/proj/fc1/fc2 matrices, about half of all weights); *weights* and *nonzero* count all
>=2-D weights of the model (DSP: the factors; token rows include the selectors'); *synops/
sample* and energy come from the fixed-point reference run of the compiled program
(token rows: the selectors' multiply-accumulates are priced as embedded-core work at the
45 nm MAC energy and included in both energy columns); *cores* is the loihi2 placement.

**Token selection.** Selectors sit before both blocks; the p-th keeps floor(16 r^p) tokens:
r = 0.9 -> 14, 12; 0.8 -> 12, 10; 0.7 -> 11, 7; 0.5 -> 8, 4 (of 16). Each row trains selectors
and backbone for 20 epochs from the dense model with the keep-ratio loss and KL distillation
from it (docs/pruning.md). In the compiled program every selector re-emits the residual
stream of its kept tokens as one graded source, so the next block's layers read one source
instead of every population of the stream: that is why token rows also have fewer synapses
and cores than the dense model, and part of their fewer synaptic ops: the row "dense +
selectors keeping all (r = 1)" measures that deployment effect alone (the dense model with
selectors that keep every token; same accuracy as dense by construction). Each selector adds
T - 1 = 3 time steps of latency. At high weight sparsity the selectors' ~14k MACs per sample
(4.6 pJ each) cost more than the synaptic ops they save in the 45 nm convention (LTH + tokens
vs LTH round 8), but not with the Loihi per-event figures.

**What was tried for LTH** (accuracy at 90 % sparsity, float %, seed 0 unless stated; the
earlier settings come from earlier runs of this script, recorded here, not rerun):

| setting | round 8 (90 %) | round 11 (95.8 %) |
|---|---|---|
| global over all >=2-D weights (as released), 4 epochs/round, rewind to the trained weights, lr 1e-3 (3 seeds) | 90.65 +- 1.25 | - |
| per-layer scope, same schedule | 30.6 (the 144-weight first conv loses the same fraction) | - |
| global, 8 epochs/round, first conv and head dense | 95.8 | - |
| global, 10 epochs/round, first conv and head dense (3 seeds) | 96.02 +- 0.80 | 80.65 +- 5.45 |
| same, 20 epochs/round | 96.11 | 94.44 |
| **late rewinding to the dense run's epoch-3 weights, lr 5e-3, 15 epochs/round (3 seeds, the table above)** | see table | see table |

Accuracy moves by about one point from round to round (seed 1: 96.4 at round 8, 98.1 at
round 11), about the size of the miss; the paper retrains 300 epochs per round, this
benchmark affords 15 on 2 CPU cores. Not tried: other rewind epochs, a smaller prune
fraction than the release's 0.25.

**sLIF criterion.** L1P prunes only the block matrices (about half of all weights) and on
this model losing even 95 % of them costs about nothing, so sLIF has nothing to recover; its
differences are within seed noise (one test image = 0.28 points).

Per-seed rows (with seconds per row): docs/data/pruning-seed<N>.json (the first full run)
and pruning-seed<N>-{lth,tokens,dsp,tokbase}.json (the later partial runs, which replace or
add rows); `aggregate DIR` reads them named seed<N>[-part].json.

**DSP rows** deploy fused (the factors multiplied back into one synapse matrix: no synapse
saving) or, in the "(relay)" rows, as two synaptic stages through graded relay populations
(fewer synapses and cores; payloads are nonzero almost every step, so synaptic ops can rise).
"""


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--out", type=Path, default=Path("bench_pruning"))
    r.add_argument("--only", choices=["lth", "tokens", "dsp", "token-baseline"], default=None,
                   help="run only the LTH rows (+ LTH + tokens) or only the token rows (written "
                        "as seed<N>-lth.json / seed<N>-tokens.json; aggregate merges them)")
    a = sub.add_parser("aggregate")
    a.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.cmd == "run":
        run_seed(args.seed, args.out, args.only)
    else:
        aggregate(args.out)


if __name__ == "__main__":
    main()
