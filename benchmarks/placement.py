"""Greedy vs traffic-aware placement, measured: message hops, messages between chips and the
estimated latency per step, on the digits preset (loihi2) and the 4-384 CIFAR Spikformer at
90 % sparsity (hala_point). Writes docs/results-placement.md.

Usage: .venv/bin/python benchmarks/placement.py [--models digits,4-384-90] [--work DIR]

Per model, through the CLI as a user would run it:

1. ``compile MODEL --placement greedy`` -> G; ``simulate G`` on the *rate* samples: the
   measured firing rates (``G/activity_reference.json``).
2. ``compile MODEL --placement traffic --seed S --rates G/activity_reference.json`` -> T
   (and the same with ``--rates prior`` -> P; and seed S again -> T2, whose
   placement.json must equal T's byte for byte).
3. ``simulate`` G, T and P on the *evaluation* samples (disjoint from the rate samples) and
   ``report --format json``: message hops per sample (tile + chip hops of every message,
   counted from the simulated spikes on each build's placement), messages between chips,
   latency per step (the report's model), chips used.

Digits: the preset trained with ``nmc-deploy train`` (seed 0), rates from test samples
0-59, evaluation on samples 60-359. 4-384-90: benchmarks/scale.py's synthetic
official-format checkpoint (its work dir ``scale_work/4-384-90``, made when missing), rates
from its inputs 0-7, evaluation on 8-15.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "nmc_deploy.cli"]
MODELS = {"digits": "loihi2", "4-384-90": "hala_point"}


def run(cmd: list[str], log: Path) -> float:
    """Run a command (stdout+stderr to ``log``); its wall seconds; raise on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed; see {log}")
    return time.perf_counter() - t0


def model_and_inputs(name: str, work: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """(model.nir, rate inputs, evaluation inputs) of one model, made when missing."""
    if name == "digits":
        from nmc_deploy.data import load_dataset

        nir = work / "digits" / "model.nir"
        if not nir.exists():
            nir.parent.mkdir(parents=True, exist_ok=True)
            run(CLI + ["train", "--seed", "0", "-o", nir.parent / "model.pt"],
                nir.parent / "train.log")
            run(CLI + ["export", nir.parent / "model.pt", "-o", nir], nir.parent / "export.log")
        x = load_dataset("digits").x_test
        return nir, x[:60], x[60:]
    rung = ROOT / "scale_work" / name
    if not (rung / "model.nir").exists():
        rung.mkdir(parents=True, exist_ok=True)
        run([sys.executable, ROOT / "benchmarks" / "scale.py", "--stage", "export", "--rung",
             name, "--work", rung, "--samples", "16"], rung / "export.log")
    x = np.load(rung / "inputs.npy")
    return rung / "model.nir", x[:8], x[8:16]


def measure(build: Path, x: np.ndarray, work: Path) -> dict:
    """Simulate ``build`` on ``x`` (reference) and read its report's traffic and latency."""
    np.save(work / "eval.npy", x)
    run(CLI + ["simulate", build, "--input", work / "eval.npy"], build / "simulate_eval.log")
    run(CLI + ["report", build, "--format", "json", "-o", build / "report.json"],
        build / "report.log")
    r = json.loads((build / "report.json").read_text())
    per = r["traffic"]["per_sample"]
    placement = json.loads((build / "placement.json").read_text())
    return {
        "messages_per_sample": per["messages"],
        "message_hops_per_sample": per["tile_hops_ew"] + per["tile_hops_ns"] + per["chip_hops"],
        "chip_hops_per_sample": per["chip_hops"],
        "messages_between_chips_per_sample": per["messages_between_chips"],
        "latency_per_step_ns": r["latency"]["per_step_ns"],
        "latency_bound": r["latency"].get("bound"),
        "barrier_ns": r["latency"].get("barrier_ns"),
        "route_ns_per_step": r["latency"].get("route_ns_per_step"),
        "chips_used": placement.get("chips_used"), "cores_used": placement["cores_used"],
        "energy_per_sample_uj": r["energy_per_sample_uj"],
        "estimates": (placement.get("placement") or {}).get("estimates"),
        "rates": (placement.get("placement") or {}).get("rates"),
        "balance": (placement.get("placement") or {}).get("balance"),
        "critical_terms_ns": r["latency"].get("critical_terms_ns"),
        "cores_per_chip": placement["system"]["cores_per_chip"],
        "firing_rates": [min(p["firing_rate"] for p in r["populations"]),
                         max(p["firing_rate"] for p in r["populations"])],
    }


def bench_model(name: str, work: Path, seed: int) -> dict:
    target = MODELS[name]
    work = work / name
    work.mkdir(parents=True, exist_ok=True)
    nir, x_rates, x_eval = model_and_inputs(name, ROOT / "scale_work" if name != "digits"
                                            else work.parent)
    builds = {k: work / k for k in ("greedy", "traffic", "traffic_again", "prior")}
    out: dict = {"model": name, "target": target, "rate_samples": len(x_rates),
                 "eval_samples": len(x_eval), "seed": seed, "compile_s": {}}
    base = CLI + ["compile", nir, "--target", target]
    shutil.rmtree(builds["greedy"], ignore_errors=True)
    out["compile_s"]["greedy"] = run(base + ["-o", builds["greedy"]], work / "greedy.log")
    np.save(work / "rates.npy", x_rates)
    run(CLI + ["simulate", builds["greedy"], "--input", work / "rates.npy"], work / "rates.log")
    rates = work / "rates_activity.json"
    rates.write_bytes((builds["greedy"] / "activity_reference.json").read_bytes())
    for key, extra in (("traffic", ["--rates", rates]), ("traffic_again", ["--rates", rates]),
                       ("prior", ["--rates", "prior"])):
        shutil.rmtree(builds[key], ignore_errors=True)  # no earlier run's files
        out["compile_s"][key] = run(base + ["-o", builds[key], "--placement", "traffic",
                                           "--seed", str(seed)] + extra, work / f"{key}.log")
    for key, start in (("traffic", "measured"), ("prior", "prior")):
        rec = json.loads((builds[key] / "placement.json").read_text())["placement"]
        if not rec["rates"].startswith(start):
            raise SystemExit(f"{key}: placed with rates '{rec['rates']}', not {start}")
    out["identical_for_seed"] = filecmp.cmp(builds["traffic"] / "placement.json",
                                            builds["traffic_again"] / "placement.json",
                                            shallow=False)
    for key in ("greedy", "traffic", "prior"):
        out[key] = measure(builds[key], x_eval, work)
        print(f"  {name} {key}: {out[key]['message_hops_per_sample']:,.0f} message hops/sample, "
              f"{out[key]['latency_per_step_ns']:,.1f} ns/step", flush=True)
    g = out["greedy"]["message_hops_per_sample"]
    for key in ("traffic", "prior"):
        out[key]["hops_change"] = out[key]["message_hops_per_sample"] / g - 1 if g else 0.0
        out[key]["latency_change"] = (out[key]["latency_per_step_ns"]
                                      / out["greedy"]["latency_per_step_ns"] - 1)
    return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _shows(r: dict) -> list[str]:
    """What one model's rows show, from the numbers themselves."""
    t, g = r["traffic"], r["greedy"]
    est = t.get("estimates") or {}
    out = []
    if "greedy" in est and "traffic" in est:
        out.append(f"* {r['model']}: longest route {est['greedy']['longest_route_hops']} -> "
                   f"{est['traffic']['longest_route_hops']} hops (expected); messages between "
                   f"chips per sample {g['messages_between_chips_per_sample']:,.0f} -> "
                   f"{t['messages_between_chips_per_sample']:,.0f}.")
    free = g["chips_used"] * g["cores_per_chip"] - g["cores_used"]
    b = t.get("balance") or {}
    if b.get("work_cap") is not None:
        (c0, c1), (w0, w1) = b["cores"], b["busiest_core_work_ns"]
        out.append(f"  Balance: {free:,} free core slots on its {g['chips_used']} chip(s); the "
                   f"partition was re-cut at {b['work_cap']:g} x the busiest core's estimated "
                   f"work: {c0:,} -> {c1:,} cores, busiest core {w0:,.0f} -> {w1:,.0f} ns per "
                   "step (estimated).")
    else:
        out.append(f"  Balance: none ({free:,} free core slots on its {g['chips_used']} "
                   "chip(s)).")
    terms = t.get("critical_terms_ns") or {}
    if terms:
        share = (terms.get("route", 0) + terms.get("barrier", 0)) / t["latency_per_step_ns"]
        out.append(f"  Route + barrier: {100 * share:.2f} % of the traffic build's step; "
                   f"bound: {t['latency_bound']}. Population firing rates (greedy run): "
                   f"{g['firing_rates'][0]:.3f} to {g['firing_rates'][1]:.3f} spikes per "
                   "neuron and step (the prior is 0.1).")
    return out


def render(rows: list[dict], commit: str) -> str:
    lines = ["# Results: greedy vs traffic-aware placement (issue 10)", "",
             f"Measured by `benchmarks/placement.py` at revision {commit} on this machine "
             "(2 cores). Each build is simulated with the reference simulator on evaluation "
             "samples disjoint from the samples whose firing rates weighed the traffic-aware "
             "layout; message hops are counted from those simulated spikes on each build's "
             "own placement (tile hops east-west + north-south + chip hops of every message, "
             "one message per spiking source neuron and destination core); latency per step "
             "is the report's model (docs/cost-model.md). The traffic-aware builds may hold more "
             "cores than greedy: the partition is re-cut to balance the busiest cores' work "
             "when the chips and the hops allow (docs/architecture.md, traffic-aware "
             "placement).", "",
             "| model | target | layout | cores | chips | messages / sample | message hops / "
             "sample | change | between chips / sample | latency / step (ns) | change | bound "
             "| compile (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    names = {"greedy": "greedy (baseline)", "traffic": "traffic, measured rates",
             "prior": "traffic, prior rate"}
    for r in rows:
        for key in ("greedy", "traffic", "prior"):
            m = r[key]
            ch = "" if key == "greedy" else f"{100 * m['hops_change']:+.1f} %"
            lc = "" if key == "greedy" else f"{100 * m['latency_change']:+.1f} %"
            lines.append(
                f"| {r['model']} | {r['target']} | {names[key]} | {m['cores_used']:,} | "
                f"{m['chips_used']} | {m['messages_per_sample']:,.0f} | "
                f"{m['message_hops_per_sample']:,.0f} | {ch} | "
                f"{m['messages_between_chips_per_sample']:,.0f} | "
                f"{m['latency_per_step_ns']:,.1f} | {lc} | {m['latency_bound']} | "
                f"{r['compile_s'][key]:.1f} |")
    lines += ["", "Same seed, same layout: placement.json of two traffic-aware compiles with "
              "the same seed and rates, compared byte for byte: " + ", ".join(
                  f"{r['model']} (seed {r['seed']}) "
                  f"{'identical' if r['identical_for_seed'] else 'DIFFERENT'}"
                  for r in rows) + ".", ""]
    lines += ["## Reading it against issue 10's acceptance", ""]
    for r in rows:
        t = r["traffic"]
        ok = (t["hops_change"] <= -0.30 and t["latency_change"] < 0
              and t["chips_used"] <= r["greedy"]["chips_used"] and r["identical_for_seed"])
        lines.append(
            f"* {r['model']} ({r['target']}): message hops {100 * t['hops_change']:+.1f} % "
            f"(needs <= -30 %), latency per step {100 * t['latency_change']:+.1f} % (needs < 0), "
            f"chips {r['greedy']['chips_used']} -> {t['chips_used']}, identical for the seed: "
            f"{r['identical_for_seed']} - **{'MET' if ok else 'NOT MET'}**. With the prior "
            f"rate instead of measured rates: {100 * r['prior']['hops_change']:+.1f} %.")
    lines += ["", "## What it shows", ""]
    for r in rows:
        lines += _shows(r)
    lines += ["", "Both programs are memory-bound on their busiest cores (the synaptic ops of a "
              "core the resource-driven partition filled), so the latency gain is the "
              "balance; the layout gives the hops. Messages between chips can rise: a chip "
              "hop counts as much as a tile hop in the objective (messages x hops, as the "
              "issue asks), so the layout may spread layers over the chips where their "
              "partners' tiles are. Weighing a chip hop by its energy instead "
              "(`place_by_traffic(chip_weight=3.9)`: 13.5 pJ against 3.5 pJ per tile hop) was "
              "tried once on 4-384-90 with the rate-weighted estimate only (revision "
              "f548f0d): message hops -31 % instead of -37 %, hop energy -30 % instead of "
              "-24 %, messages between chips still +6 % over greedy; not the default, not "
              "measured on simulated spikes.", ""]
    lines += ["Rates samples: digits test samples 0-59, evaluation 60-359; 4-384-90: the "
              "synthetic rung's inputs 0-7, evaluation 8-15 (benchmarks/scale.py). Raw "
              "numbers: docs/data/placement.json.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--work", default=str(ROOT / "placement_work"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "docs" / "results-placement.md"))
    p.add_argument("--render-only", action="store_true",
                   help="re-render the doc from docs/data/placement.json")
    args = p.parse_args(argv)
    data = ROOT / "docs" / "data" / "placement.json"
    if args.render_only:
        saved = json.loads(data.read_text())
        Path(args.out).write_text(render(saved["rows"], saved["commit"]))
        return 0
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in MODELS:
            p.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        print(f"model {name}", flush=True)
        rows.append(bench_model(name, Path(args.work), args.seed))
    commit = _commit()
    data.write_text(json.dumps({"commit": commit, "rows": rows}, indent=1))
    Path(args.out).write_text(render(rows, commit))
    print(f"wrote {args.out} and {data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
