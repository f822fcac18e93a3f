"""docs/results-pruning.md and the frontier plot from the rows of benchmarks/pruning.py.

Every mean and difference carries a 95 % interval over replicates of repeated 5-fold
cross-validation with the Nadeau-Bengio correction for overlapping training sets
(nmc_deploy.prune.stats); every claimed difference is paired by replicate and carries the
corrected t test's p, the Wilcoxon signed-rank p and the Holm-adjusted p over the study's
claims. The recovered fraction's bootstrap interval is not corrected (said where shown).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from nmc_deploy.prune.stats import mean_interval, paired_difference, recovered_fraction

RELEVANT = {  # the Arm fields that matter for each method (the rest keep their defaults)
    "dense": ("slif", "dense_epochs"),
    "l1p": ("sparsity", "tensors", "epochs", "lr", "slif", "slif_lr", "after"),
    "dsp": ("rank_budget", "epochs", "lr", "slif", "slif_lr", "deploy", "after"),
    "lth": ("sparsity", "tensors", "prune_fraction", "epochs", "rewind_epoch", "lth_lr"),
    "tokens": ("token_keep", "epochs", "lr", "after")}
LOSS_REGIME_POINTS = 2.0  # the sLIF claim is tested where plain pruning loses >= this
LTH_TOLERANCE_POINTS = 1.0


def load_rows(out: Path) -> dict[tuple[str, str], list[dict]]:
    """(dataset, study) -> rows of every replicate file in ``out``."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in sorted(out.glob("*-rep*.json")):
        for r in json.loads(p.read_text()):
            groups[(r["dataset"], r["study"])].append(r)
    return dict(groups)


class Study:
    """The rows of one study, indexed by arm and replicate (only complete replicates)."""

    def __init__(self, rows: list[dict]):
        by_rep = defaultdict(dict)
        for r in rows:
            by_rep[(r["repeat"], r["fold"])][r["arm"]] = r
        self.arms = list(dict.fromkeys(r["arm"] for r in rows))
        for a in self.arms:  # one definition per arm: files of different runs do not mix
            kinds = {json.dumps([r["settings"], r.get("dense_epochs")], sort_keys=True)
                     for r in rows if r["arm"] == a}
            if len(kinds) > 1:
                raise SystemExit(f"arm '{a}': replicate files ran it with different settings")
        full = [k for k, v in sorted(by_rep.items()) if set(self.arms) <= set(v)]
        self.reps = full
        self.by = {a: [by_rep[k][a] for k in full] for a in self.arms}
        first = self.by[self.arms[0]]
        self.ratio = float(np.mean([r["n_test"] / r["n_train"] for r in first]))
        self.seeds = [r["seed"] for r in first]
        self.n_images = sum(r["n_test"] for r in first)

    def values(self, arm: str, key: str, scale: float = 1.0) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else r[key] for r in self.by[arm]],
                        float) * scale

    def ci(self, arm: str, key: str, scale: float = 1.0):
        return mean_interval(self.values(arm, key, scale), self.ratio)

    def diff(self, a: str, b: str, key: str = "accuracy_float", scale: float = 100.0):
        return paired_difference(self.values(a, key, scale), self.values(b, key, scale),
                                 self.ratio)


def _ci_text(iv, fmt="{:.2f}") -> str:
    return f"{fmt.format(iv.mean)} [{fmt.format(iv.low)}, {fmt.format(iv.high)}]"


CLAIMS: list = []  # (label, interval) of every paired test printed for the current study


def _p_text(iv, label: str | None = None) -> str:
    pw = "-" if iv.p_wilcoxon is None else f"{iv.p_wilcoxon:.3g}"
    if label is not None:
        CLAIMS.append((label, iv))
        return f"p_t {iv.p_t:.3g}, p_W {pw}, Holm {{holm:{len(CLAIMS) - 1}}}"
    return f"p_t {iv.p_t:.3g}, p_W {pw}"


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN)."""
    order = sorted((p, i) for i, p in enumerate(ps) if p == p)
    out = [float("nan")] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        out[i] = running
    return out


def _mean(s: Study, arm: str, key: str) -> float:
    return float(np.nanmean(s.values(arm, key)))


def table(s: Study) -> list[str]:
    lines = ["| arm | float acc % | fixed acc % | Δ float vs dense (points) | nonzero weights "
             "| synops/sample | E 45nm µJ | E Loihi µJ | latency µs | cores | chips |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in s.arms:
        d = None if a == "dense" else s.diff(a, "dense")
        delta = "-" if d is None else f"{_ci_text(d)} ({_p_text(d)})"
        lines.append(
            f"| {a} | {_ci_text(s.ci(a, 'accuracy_float', 100))} "
            f"| {_ci_text(s.ci(a, 'accuracy_fixed', 100))} | {delta} "
            f"| {_mean(s, a, 'nonzero_weights'):,.0f} | {_mean(s, a, 'synops_per_sample'):,.0f} "
            f"| {_mean(s, a, 'energy_uj_cmos45nm'):.3f} | {_mean(s, a, 'energy_uj_loihi'):.2f} "
            f"| {_mean(s, a, 'latency_us'):,.0f} | {_mean(s, a, 'cores'):.0f} "
            f"| {_mean(s, a, 'chips'):.0f} |")
    return lines


def slif_claims(s: Study) -> list[str]:
    """sLIF vs the same budget of plain fine-tuning, for every (arm, arm + sLIF...) pair."""
    out = []
    for a in s.arms:
        for b in s.arms:
            if not b.startswith(a + " + sLIF") or "(relay)" in b or "(relay)" in a:
                continue
            plain = s.diff(a, "dense")
            loss = -plain.mean
            gain = s.diff(b, a)
            frac = recovered_fraction(s.values("dense", "accuracy_float"),
                                      s.values(a, "accuracy_float"),
                                      s.values(b, "accuracy_float"))
            fgain = s.diff(b, a, "accuracy_fixed")
            regime = ("plain pruning loses >= 2 points (whole interval)"
                      if plain.high <= -LOSS_REGIME_POINTS else
                      "plain pruning loses >= 2 points on average" if loss >= LOSS_REGIME_POINTS
                      else "plain pruning loses < 2 points on average")
            if not gain.p_t == gain.p_t:  # NaN: every replicate differs by the same amount
                verdict = "no spread across replicates: not testable"
            elif gain.low > 0:
                verdict = "sLIF better (interval above 0)"
            elif gain.high < 0:
                verdict = "sLIF worse (interval below 0)"
            else:
                verdict = "no difference shown (interval contains 0)"
            frac_txt = ("undefined (no loss)" if np.isnan(frac.mean) else
                        f"{100 * frac.mean:.0f} % [{100 * frac.low:.0f}, {100 * frac.high:.0f}] "
                        f"(percentile bootstrap over replicates, not corrected for their "
                        f"overlap; {frac.dropped} of 10,000 resamples without a loss)")
            out.append(f"- **{b}** vs **{a}** ({regime}: plain loses {loss:.2f} points): "
                       f"sLIF {_ci_text(gain)} points float ({_p_text(gain, f'{b} vs {a}')}), "
                       f"{_ci_text(fgain)} points fixed point; recovered fraction of the loss "
                       f"{frac_txt} -> {verdict}.")
    return out


def hurt_claims(s: Study) -> list[str]:
    out = []
    for a in s.arms:
        if a == "dense" or "sLIF" in a or "(relay)" in a or "tokens" in a:
            continue
        d = s.diff(a, "dense")
        if -10 <= d.low and d.high <= -LOSS_REGIME_POINTS:
            tag = " -> loses 2-10 points (whole interval)"
        elif LOSS_REGIME_POINTS <= -d.mean <= 10:
            tag = " -> mean loss 2-10 points (the interval reaches outside)"
        elif d.high < 0:
            tag = " -> loses (interval below 0)"
        else:
            tag = " -> no loss shown (interval contains 0 or is above)"
        out.append(f"- {a}: {_ci_text(d)} points vs dense ({_p_text(d, f'{a} vs dense')})"
                   f"{tag}")
    return out


def lth_verdicts(s: Study) -> list[str]:
    out = []
    for a in s.arms:
        if not a.startswith("LTH") or "tokens" in a:
            continue
        lines = []
        for key, label in (("accuracy_float", "float"), ("accuracy_fixed", "fixed point")):
            d = s.diff(a, "dense", key)
            if d.low >= -LTH_TOLERANCE_POINTS:
                v = "at most 1 point below dense (whole interval above -1)"
            elif d.high < -LTH_TOLERANCE_POINTS:
                v = "more than 1 point below dense (whole interval)"
            elif d.mean >= -LTH_TOLERANCE_POINTS:
                v = "mean at most 1 point below, interval reaches below -1"
            else:
                v = "mean more than 1 point below, interval reaches above -1"
            p_txt = _p_text(d, f"{a} vs dense, {label}")
            lines.append(f"{label} {_ci_text(d)} points ({p_txt}): {v}")
        sp = _mean(s, a, "sparsity")
        whole = 1 - _mean(s, a, "nonzero_weights") / _mean(s, a, "weights")
        flag = "" if whole >= 0.9 else " (BELOW 90 % of all weights)"
        out.append(f"- {a} (sparsity {100 * sp:.1f} % of the pruned tensors, {100 * whole:.1f} % "
                   f"of all weights{flag}): " + "; ".join(lines))
    return out


def token_claims(s: Study) -> list[str]:
    out = []
    for a in s.arms:
        if "tokens" not in a:
            continue
        ref = a.split(" + tokens")[0] if " + tokens" in a else "dense"
        ops = 1 - _mean(s, a, "synops_per_sample") / _mean(s, ref, "synops_per_sample")
        d = s.diff(a, ref)
        out.append(f"- {a} vs {ref}: {100 * ops:.1f} % fewer synaptic ops; {_ci_text(d)} points "
                   f"float ({_p_text(d, f'{a} vs {ref}')}); selectors "
                   f"{_mean(s, a, 'selector_macs_per_sample'):,.0f} MACs/sample priced as "
                   "embedded-core work")
    return out


def plot(studies: dict, path: Path) -> None:
    """One row per study: accuracy against synaptic ops and against Loihi energy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = (("synops_per_sample", "synaptic ops per sample (hardware events)"),
             ("energy_uj_loihi", "energy per sample, µJ (Loihi per-event model, estimated)"))
    fig, axes = plt.subplots(len(studies), 2, figsize=(13, 4.8 * len(studies)), squeeze=False)
    for row, ((dataset, name), s) in zip(axes, studies.items()):
        for ax, (cost, label) in zip(row, costs):
            for a in s.arms:
                x = _mean(s, a, cost)
                for key, marker in (("accuracy_float", "o"), ("accuracy_fixed", "s")):
                    iv = s.ci(a, key, 100)
                    ax.errorbar(x, iv.mean, yerr=[[iv.mean - iv.low], [iv.high - iv.mean]],
                                fmt=marker, mfc=None if "sLIF" not in a else "white",
                                capsize=2, color=_colour(a),
                                alpha=0.9 if key == "accuracy_float" else 0.45)
                ax.annotate(a, (x, s.ci(a, "accuracy_float", 100).mean), fontsize=6,
                            xytext=(3, 2), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("test accuracy %, 95 % CI (o float, s fixed point)")
            ax.set_title(f"{dataset}, study '{name}', {len(s.reps)} replicates; hollow: sLIF",
                         fontsize=9)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _colour(arm: str) -> str:
    for prefix, c in (("LTH", "tab:red"), ("L1P", "tab:blue"), ("DSP", "tab:green"),
                      ("tokens", "tab:purple"), ("dense", "black")):
        if arm.startswith(prefix):
            return c
    return "tab:gray"


def aggregate(out: Path, plot_path: Path | None) -> None:
    import warnings

    # scipy warns that 10 replicates are few for the Wilcoxon normal approximation it uses
    # when differences tie or are zero; the page says which approximation p_W is
    warnings.filterwarnings("ignore", message="Sample size too small for normal approximation")
    groups = load_rows(out)
    studies = {k: Study(v) for k, v in groups.items()}
    print(HEADER)
    for (dataset, name), s in studies.items():
        print(f"\n## {dataset}: study '{name}'\n")
        cfg = s.by[s.arms[0]][0]["config"]
        print(f"{len(s.reps)} replicates (repeat, fold) = {s.reps}, training seeds {s.seeds}; "
              f"{s.n_images} test images in all (each replicate tests on its fold of about "
              f"{s.n_images // max(1, len(s.reps))}); model embed_dim {cfg['embed_dim']}, depth "
              f"{cfg['depth']}, SPS channels {cfg['sps_channels']}, T = {cfg['time_steps']}. "
              f"Intervals: 95 %, corrected for n_test/n_train = {s.ratio:.3f}.\n")
        print("\n".join(table(s)))
        CLAIMS.clear()
        parts = []
        for title, fn in (("Pruning loss (vs dense, paired)", hurt_claims),
                          ("sLIF compensation vs the same budget of plain fine-tuning",
                           slif_claims), ("Lottery tickets at >= 90 % sparsity", lth_verdicts),
                          ("Token selection", token_claims)):
            lines = fn(s)
            if lines:
                parts.append(f"\n**{title}**\n\n" + "\n".join(lines))
        adjusted = holm([iv.p_t for _, iv in CLAIMS])
        text = "\n".join(parts)
        for i, p in enumerate(adjusted):
            text = text.replace(f"{{holm:{i}}}", f"{p:.3g}")
        print(text)
        print(f"\nHolm's adjustment runs over the {len(CLAIMS)} corrected t tests of this "
              "study (every claim above).")
        settings = {a: {**s.by[a][0]["settings"], "dense_epochs": s.by[a][0].get("dense_epochs")}
                    for a in s.arms if "(relay)" not in a}
        print("\n<details><summary>arm settings</summary>\n")
        for a, st in settings.items():
            keep = {k: v for k, v in st.items() if k in RELEVANT[st["method"]]
                    and v not in (None, "none")}
            print(f"- {a}: `{json.dumps(keep)}`")
        print("\n</details>")
    if plot_path is not None and studies:
        plot(studies, plot_path)
        print(f"\n![accuracy-energy frontier]({plot_path.name})\n")
    print(NOTES)


HEADER = """# Pruning results with statistical power (issue 13)

Produced by `benchmarks/pruning.py` (runs) and `benchmarks/pruning_report.py` (this page
and `docs/pruning-frontier.png`). Each replicate is one fold of repeated stratified 5-fold
cross-validation over all images of the data set (digits: all 1,797, each tested once per
repeat) with its own training seed; on each, the dense model is trained from scratch and
every arm is derived from it, so arms are compared **paired by replicate**. Intervals are
95 % corrected resampled-t intervals (Nadeau & Bengio 2003: the variance of the mean is
inflated by (1/n + n_test/n_train)/(1/n) because replicates share training images); p_t is
that corrected paired t test, p_W the Wilcoxon signed-rank test (uncorrected; scipy: exact
without ties or zero differences, else the normal approximation), *Holm* the corrected p_t
adjusted by Holm's method over all claims of the study (the two sLIF learning rates count
as separate claims).
Fixed-point accuracy: the compiled loihi2 program on the bit-exact reference simulator
over the replicate's test fold; synaptic ops, energy (estimated: 45 nm convention and Loihi
per-event figures, docs/cost-model.md), latency, cores and chips from that compile and run."""

NOTES = """
## Notes

- *float acc / fixed acc*: mean over replicates [95 % interval] (an interval may reach past
  100 %: it is a t interval of the mean). *Δ float vs dense*: the paired difference in
  points. Weights and costs are means over replicates (they vary little).
- *Energy*: "E 45nm" prices synaptic ops and MACs only (the papers' convention); "E Loihi"
  is the per-event model of docs/cost-model.md, which includes the chip's static power over
  the sample's latency, so anything that adds time steps (a token selector adds T - 1 = 3)
  can cost more Loihi energy despite fewer synaptic ops; the frontier plot shows both axes.
- *Pruned tensors*: "L1P 95% blocks" prunes the block matrices only (q/k/v/proj/fc1/fc2),
  the papers' L1P scope; "L1P 85%/90%" and "LTH 90%" prune every >= 2-D weight except the
  first conv and the head (pruning those two with the rest collapses the model: one-shot
  L1P of all weights at 90 % left 10-12 % accuracy in the pilot). DSP factorises the block
  matrices (rank budget = share of their dense weights); "(relay)" rows deploy the factors as
  two synaptic stages through graded relays, the others fused into one matrix.
- *sLIF*: for L1P (and the 'small' study's DSP) every neuron, blocks and SPS ("all"), for the
  digits study's DSP the blocks' neurons ("blocks": DSP changes only the blocks) get a
  learnable threshold and leak per channel, initialised to the dense LIF (bit-identical at
  start, tests/prune/test_prune_slif.py),
  trained jointly with the weights for the same epochs and learning rate as the plain arm;
  the thresholds and leaks use AdamW at 1e-2 without weight decay (the "(lr 1e-3)" row: at the
  weights' 1e-3). The sLIF settings were fixed on a pilot (standard split, seed 0) before these
  replicates ran; the pilot's images overlap the replicates' test folds.
- *Regime*: on the digits model the blocks are over-parameterised (the SPS convolutions and
  the head carry most of the task), so block-only pruning (L1P 95 % blocks, DSP of the block
  matrices, even to rank 1 everywhere in the pilot) costs little after fine-tuning (in the
  pilot, one epoch sufficed; the arms here run 5). Pruning the SPS convolutions too (L1P
  85/90 %) hurts. For DSP the studies 'small' and 'small-dsp' use a smaller model (D = 16,
  SPS 4-8-16 channels, 8,036 weights) with 3 and 1 fine-tuning epochs.
- *LTH schedules* (item 3): study 'lth' (replicates of the first repeat) compares the
  release's prune fraction 0.25 (9 rounds to reach 90 %: 135 epochs), 0.56 per round (3
  rounds) with 30 epochs per round, and 0.56 with 15 epochs per round rewinding to epoch 10
  instead of 3; study 'lth30' runs the 30-epoch schedule on all 10 replicates (its dense rows
  are the digits study's dense models again: same replicates and seeds). Every LTH arm
  rewinds to the dense run's weights after `rewind_epoch` epochs (late rewinding) and trains
  each round at the recipe's learning rate (5e-3, cosine).
- *MNIST*: `benchmarks/pruning.py run --dataset mnist --data-path DIR` runs the same studies
  on MNIST from the user's files (model from `study_config`); no MNIST files were available
  on the machine that produced this page (no download), so there are no MNIST rows; the path
  is tested on a small fixture in the MNIST idx format (tests/prune/test_study.py).
- Rows: docs/data/pruning-study/<dataset>-<study>-rep<i>.json (one file per replicate, every
  row with its settings, state digest and seconds); this page and the plot are regenerated
  from them by `benchmarks/pruning.py aggregate docs/data/pruning-study --plot
  docs/pruning-frontier.png`. The runs took about 7 min per replicate for 'digits', 10 for
  'lth', 4 for 'lth30' and 1-2 for 'small'/'small-dsp' (one torch thread, 2-core machine,
  two or more runs sharing it).
- Earlier single-split results (issue 3, 3 seeds on the fixed 360-image test split) are in
  the git history of this file (commit fc11683).
"""
