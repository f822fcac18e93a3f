"""Scale ladder: the papers' Spikformers from digits to Spikformer-8-512, dense and 90 % sparse.

Usage:
    .venv/bin/python benchmarks/scale.py [--rungs digits,d64,...] [--timeout S] [--target T]
        [--samples N] [--lava-samples N | --no-lava] [--lava-rungs d64 --lava-rung-samples N]
        [--work DIR] [--out docs/results-scale.md]
        [--preliminary]

Rungs (``-90``: 90 % unstructured sparsity of the block matrices, one L1P magnitude step,
:func:`nmc_deploy.prune.l1p.prune_one_shot`, before the BatchNorm calibration):

* ``digits``, ``digits-90``: the digits preset (8x8, 16 tokens), random weights calibrated on
  digits training images (or ``--digits-checkpoint``, a trained model, for ``digits``);
* ``d64``, ``d128``, ``d256``, ``d384`` (+ ``-90``): CIFAR shape (32x32x3, T = 4, 64 tokens),
  2 blocks, D/32 heads;
* ``4-384`` (+ ``-90``): Spikformer-4-384 CIFAR-10 (preset ``cifar10-4-384``);
* ``8-512`` (+ ``-90``): Spikformer-8-512 ImageNet (preset ``imagenet-8-512``).

Every paper-shaped rung goes the user's way: a synthetic official-format state_dict
(:func:`nmc_deploy.models.synthetic.synthetic_official_state_dict`, BatchNorms set for 5-15 %
firing), saved, imported with ``load_official_checkpoint``, exported to NIR, compiled with
``nmc-deploy compile`` and simulated on the reference backend. Each stage is a subprocess
under ``/usr/bin/time -v`` (peak RSS per stage and rung); the stages of a rung share the
``--timeout`` budget. A stage that fails or times out ends its rung, and the report says so
with the stage's one-line error. The digits program is also run on Lava and on the reference
(``--lava-samples`` samples, one run each, spikes compared).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LADDER = ("digits", "d64", "d128", "d256", "d384", "4-384", "8-512")
ALL_RUNGS = tuple(r + s for r in LADDER for s in ("", "-90"))
SPARSITY = 0.9
# a Loihi 2 system (Hala Point, 1,152 chips) where the target exists, else one Loihi 2 chip
DEFAULT_TARGET = "hala_point" if (ROOT / "hw_targets" / "hala_point.toml").exists() else "loihi2"
FIRING = (0.05, 0.15)
CALIBRATION_SAMPLES = {"8-512": 2}
REFERENCE_REPEATS = 5  # extra reference runs on the Lava comparison's inputs (median reported)  # default 8: the ImageNet SPS at 224x224 is large


# --------------------------------------------------------------------------- rung stages

def _rung_model(rung: str, seed: int, digits_checkpoint: str | None):
    """(model, official parameter count or None, nonzero count, variant, levels, sim inputs)."""
    import functools

    import torch

    from nmc_deploy.models.config import PRESETS, paper_config
    from nmc_deploy.models.synthetic import (INPUT_LEVELS, synthetic_inputs, synthetic_model,
                                             synthetic_official_state_dict)
    from nmc_deploy.prune.l1p import prune_one_shot

    base, sparse = rung.removesuffix("-90"), rung.endswith("-90")
    prune = functools.partial(prune_one_shot, sparsity=SPARSITY) if sparse else None
    if base == "digits":
        from nmc_deploy.data import load_dataset

        data = load_dataset("digits")
        if digits_checkpoint and not sparse:
            from nmc_deploy.models.checkpoint import load_checkpoint

            model, _ = load_checkpoint(digits_checkpoint)
        else:
            model = synthetic_model(PRESETS["digits"], seed=seed, levels=data.levels,
                                    prune=prune, inputs=data.x_train[:64])
        return model, None, None, "digits", data.levels, data.x_test
    if base.startswith("d"):
        d = int(base[1:])
        cfg, variant = paper_config("cifar", embed_dim=d, depth=2, num_heads=d // 32), "cifar"
    else:
        name = {"4-384": "cifar10-4-384", "8-512": "imagenet-8-512"}[base]
        cfg, variant = PRESETS[name], ("cifar" if base == "4-384" else "imagenet")
    sd = synthetic_official_state_dict(variant, cfg, seed=seed, prune=prune,
                                       samples=CALIBRATION_SAMPLES.get(base, 8))
    used = {k: v for k, v in sd.items() if not re.search(
        r"running_|num_batches|\.norm[12]\.|^norm\.|pos_embed", k)}
    params = sum(v.numel() for v in used.values())
    nonzero = sum(int(torch.count_nonzero(v)) for v in used.values())
    return sd, params, nonzero, variant, INPUT_LEVELS[variant], (cfg, synthetic_inputs)


def stage_export(rung: str, work: Path, seed: int, samples: int,
                 digits_checkpoint: str | None) -> dict:
    """Synthetic state_dict -> official file -> import -> NIR; inputs for the simulation."""
    import numpy as np
    import torch

    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.models.import_official import load_official_checkpoint
    from nmc_deploy.models.synthetic import measure_firing, model_inputs
    from nmc_deploy.nirio import write_nir

    out = {}
    t0 = time.perf_counter()
    obj, params, nonzero, variant, levels, extra = _rung_model(rung, seed, digits_checkpoint)
    out["synthetic_s"] = time.perf_counter() - t0
    if variant == "digits":
        model, x = obj, extra[:samples]
        out["parameters"] = sum(p.numel() for p in model.parameters())
        out["nonzero"] = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    else:
        cfg, make_inputs = extra
        torch.save(obj, work / "official.pth")
        t1 = time.perf_counter()
        model, _ = load_official_checkpoint(work / "official.pth", num_heads=cfg.num_heads,
                                            img_size=cfg.img_size, time_steps=cfg.time_steps)
        out["import_s"] = time.perf_counter() - t1
        out["parameters"], out["nonzero"] = params, nonzero
        x = make_inputs(cfg, samples, seed=seed + 1, frames=variant == "dvs", levels=levels)
    np.save(work / "inputs.npy", x)
    torch.set_num_threads(1)
    rates = measure_firing(model, model_inputs(x[:min(len(x), 4)], levels))
    out["torch_firing"] = [min(rates.values()), max(rates.values())]
    t2 = time.perf_counter()
    graph = export_spikformer(model, {"input_levels": levels, "dataset": variant})
    write_nir(graph, work / "model.nir")
    out["export_s"] = time.perf_counter() - t2
    return out


def stage_simulate(work: Path) -> dict:
    """Reference simulation of the build on the rung's inputs: speed and firing rates."""
    import numpy as np

    from nmc_deploy.program import load_program
    from nmc_deploy.simulate.reference import simulate_reference

    program = load_program(work / "build")
    x = np.load(work / "inputs.npy")
    t0 = time.perf_counter()
    run = simulate_reference(program, x)
    seconds = time.perf_counter() - t0
    kinds = {p.name: p.kind for p in program.populations}
    lif = sorted(p["spikes"] / p["neuron_updates"] for p in run.stats["populations"]
                 if kinds[p["name"]] == "lif")
    other = sorted(p["spikes"] / p["neuron_updates"] for p in run.stats["populations"]
                   if kinds[p["name"]] != "lif")
    return {"samples": int(len(x)), "simulate_s": seconds, "samples_per_s": len(x) / seconds,
            "lif_rates": [lif[0], lif[len(lif) // 2], lif[-1]],
            "lif_outside": sum(not FIRING[0] <= r <= FIRING[1] for r in lif),
            "lif_populations": len(lif),
            "pool_rates": [other[0], other[-1]] if other else None}


def stage_lava(work: Path, samples: int, rung: str = "digits") -> dict:
    """Reference and Lava on the same inputs (digits test images, or the rung's simulation
    inputs), one run each; spike mismatches."""
    import numpy as np

    from nmc_deploy.data import load_dataset
    from nmc_deploy.program import load_program
    from nmc_deploy.simulate.compare import compare_runs
    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    program = load_program(work / "build")
    x = load_dataset("digits").x_test[:samples] if rung.startswith("digits") else \
        np.load(work / "inputs.npy")[:samples]
    t0 = time.perf_counter()
    ref = simulate_reference(program, x)
    t_ref = time.perf_counter() - t0
    t1 = time.perf_counter()
    lav = simulate_lava(program, x)
    t_lava = time.perf_counter() - t1
    cmp = compare_runs(ref, lav)
    # a reference run lasts a fraction of a second, so one burst of load skews it: time it
    # REFERENCE_REPEATS more times (same inputs) and report the median next to the first run
    repeats = []
    for _ in range(REFERENCE_REPEATS):
        t = time.perf_counter()
        simulate_reference(program, x)
        repeats.append(time.perf_counter() - t)
    return {"samples": len(x), "reference_s": t_ref, "lava_s": t_lava,
            "reference_repeats_s": repeats,
            "spike_mismatches": cmp["spike_mismatches_reference_vs_lava"],
            "spikes": cmp["spikes_compared"],
            "prediction_mismatches": cmp["prediction_mismatches"]}


# ------------------------------------------------------------------------------- driver

def _last_line(text: str) -> str:
    killed = re.search(r"Command terminated by signal (\d+)", text)
    if killed:
        return (f"killed by signal {killed.group(1)}"
                + (" (out of memory?)" if killed.group(1) == "9" else ""))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()
             and not ln.lstrip().startswith(("Command being timed", "\t"))]
    lines = [ln for ln in lines if not re.match(r"^(Command|User time|System time|Percent|"
                                                r"Elapsed|Average|Maximum|Major|Minor|"
                                                r"Voluntary|Involuntary|Swaps|File system|"
                                                r"Socket|Signals|Page size|Exit status)", ln)]
    return lines[-1][:300] if lines else "(no message)"


def time_facts(log: Path) -> dict:
    """Wall and CPU seconds and peak RSS of a stage, from ``/usr/bin/time -v`` in its log."""
    text = log.read_text(errors="replace") if log.exists() else ""

    def num(label: str) -> float | None:
        m = re.search(re.escape(label) + r":\s*([\d.:]+)", text)
        if not m:
            return None
        parts = [float(v) for v in m.group(1).split(":")]
        return sum(v * 60 ** i for i, v in enumerate(reversed(parts)))

    user, system = num("User time (seconds)"), num("System time (seconds)")
    rss = num("Maximum resident set size (kbytes)")
    return {"wall_s": num("Elapsed (wall clock) time (h:mm:ss or m:ss)"),
            "cpu_s": None if user is None else user + (system or 0.0),
            "peak_rss_gb": None if rss is None else rss / 1024 ** 2}


def run_timed(cmd: list[str], timeout: float, log: Path) -> str | None:
    """Run ``cmd`` under ``/usr/bin/time -v`` in its own process group, output to ``log``;
    return None, or the one-line error (a timeout kills the group)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(log, "w") as fh:
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"timed out after {timeout:.0f} s"
    return None if code == 0 else _last_line(log.read_text(errors="replace"))


def _stage_cmd(stage: str, rung: str, work: Path, args) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--rung", rung,
           "--work", str(work), "--seed", str(args.seed), "--samples", str(args.samples),
           "--lava-samples", str(args.lava_samples)]
    if args.digits_checkpoint:
        cmd += ["--digits-checkpoint", args.digits_checkpoint]
    return cmd


STAGES = ("export", "compile", "simulate")


def run_rung(rung: str, args) -> None:
    """All stages of one rung within ``args.timeout`` seconds; the outcome goes to
    ``<work>/<rung>/status.json`` (the stage that failed and its one-line error)."""
    work = Path(args.work) / rung
    (work / "build").mkdir(parents=True, exist_ok=True)
    for name in [f"{st}.json" for st in STAGES] + ["status.json"]:
        (work / name).unlink(missing_ok=True)
    deadline = time.perf_counter() + args.timeout
    cmds = {"export": _stage_cmd("export", rung, work, args),
            "compile": [sys.executable, "-m", "nmc_deploy.cli", "compile",
                        str(work / "model.nir"), "--target", args.target, "-o",
                        str(work / "build")],
            "simulate": _stage_cmd("simulate", rung, work, args)}
    status = {"target": args.target, "commit": _commit()}
    for stage in STAGES:
        error = run_timed(cmds[stage], deadline - time.perf_counter(), work / f"{stage}.log")
        facts = time_facts(work / f"{stage}.log")
        print(f"  {rung} {stage}: {facts['wall_s'] or 0:.1f} s, peak RSS "
              f"{facts['peak_rss_gb'] or 0:.2f} GB" + (f", FAILED {error}" if error else ""),
              flush=True)
        if error:
            status["failed"] = f"{stage}: {error}"
            break
    (work / "status.json").write_text(json.dumps(status))


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out + ("+dirty" if dirty else "")


def collect_row(rung: str, work: Path, target: str) -> dict | None:
    """The report row of a rung from its work files (None: never run)."""
    work = work / rung
    if not (work / "export.log").exists():
        return None
    row = {"rung": rung}
    status = json.loads((work / "status.json").read_text()) \
        if (work / "status.json").exists() else {}
    for stage in STAGES:
        for key, value in time_facts(work / f"{stage}.log").items():
            row[f"{stage}_{key}"] = value
        if stage == "compile" and (work / "build" / "placement.json").exists() \
                and "failed" not in status:
            row.update(_placement_facts(work / "build" / "placement.json",
                                        status.get("target", target)))
        elif (work / f"{stage}.json").exists():
            row.update(json.loads((work / f"{stage}.json").read_text()))
    row["commit"], row["target"] = status.get("commit", "?"), status.get("target", target)
    if "failed" in status:
        row["failed"] = status["failed"]
    elif not (work / "simulate.json").exists():
        row["failed"] = "incomplete (no status; interrupted?)"
    return row


def _placement_facts(path: Path, target: str) -> dict:
    from nmc_deploy.targets import load_target

    s = json.loads(path.read_text())
    share = s.get("weight_sharing") or {}
    written = (share.get("forms") or {}).get(share.get("written"), {})
    stored = written.get("synapses_stored") if isinstance(written, dict) else None
    cores = s["cores_used"]
    chips = s.get("chips_used", (s.get("system") or {}).get("chips_used"))
    if chips is None:
        per_chip = load_target(target).cores_per_chip
        chips, source = math.ceil(cores / per_chip), f"ceil(cores / {per_chip})"
    else:
        source = "placement.json"
    residual = (s.get("residual") or {}).get("forms") or {}
    relay = residual.get("relay")
    relay_cores = relay.get("cores") if isinstance(relay, dict) and "cores" in relay else None
    return {"neurons": s.get("neurons"), "synapses": s.get("synapses"),
            "weights_stored": share.get("weights"), "synapses_on_cores": stored,
            "cores": cores, "chips": chips, "chips_source": source,
            "relay_cores": relay_cores,
            "relay_chips": None if relay_cores is None else
            math.ceil(relay_cores / load_target(target).cores_per_chip)}


def run_lava(args, rung: str = "digits", samples: int | None = None) -> None:
    work = Path(args.work) / rung
    (work / "lava.json").unlink(missing_ok=True)
    if not (work / "build" / "program.json").exists():
        (work / "lava.status").write_text(f"the {rung} rung has no build (run it first)")
        return
    cmd = _stage_cmd("lava", rung, work, args)
    if samples is not None:
        cmd[cmd.index("--lava-samples") + 1] = str(samples)
    error = run_timed(cmd, args.timeout, work / "lava.log")
    (work / "lava.status").write_text(error or "")


def collect_lava(work: Path, rung: str = "digits") -> dict | None:
    work = work / rung
    error = (work / "lava.status").read_text().strip() \
        if (work / "lava.status").exists() else ""
    if error:
        return {"failed": error}
    if not (work / "lava.json").exists():
        return None
    return {**json.loads((work / "lava.json").read_text()), **time_facts(work / "lava.log")}


# ------------------------------------------------------------------------------- report

def _f(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def _count(v):
    if v is None:
        return "–"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else (f"{v / 1e3:.1f} k" if v >= 1e4 else str(v))


def render(rows: list[dict], lava: dict | None, args) -> str:
    lines = ["# Scale ladder (benchmarks/scale.py)", ""]
    if args.preliminary:
        lines += ["**Preliminary**: only the rungs listed below were run on this revision; the "
                  "others are marked \"not run\". Numbers will change with the compile-speed, "
                  "chip-system and attention-split work of issue 9.", ""]
    commits = sorted({r["commit"] for r in rows}) or ["none"]
    targets = sorted({r["target"] for r in rows}) or [args.target]
    command = " ".join(["benchmarks/scale.py"] + [a for a in sys.argv[1:] if a != "--render-only"])
    lines += [f"Revision {', '.join(f'`{c}`' for c in commits)}, target "
              f"{', '.join(f'`{t}`' for t in targets)}, {os.cpu_count()} CPUs "
              f"({platform.machine()}, shared with other sessions), timeout {args.timeout:.0f} s "
              f"per rung, reference simulation on {args.samples} samples per rung, seed "
              f"{args.seed}. Command: `{command}`.", ""]
    lines += ["Weights are synthetic (random, official initialisation) with BatchNorms calibrated "
              "so every LIF layer fires at 5-15 % (nmc_deploy/models/synthetic.py, "
              "docs/papers-models.md); `-90`: 90 % of every block matrix zero (one L1P magnitude "
              "step). Parameters: the official state_dict's, without BN statistics and unused "
              "LayerNorms (digits: our model's). Synapses: expanded (one copy per "
              "token/position); weights stored: distinct stored weights; on cores: synapses "
              "stored on cores with shared weights (placement.json `weight_sharing`). Chips: "
              "placement.json's `chips_used`, else ceil(cores / cores per chip). Relay form: "
              "the residual stream through graded relays (`--residual relay`, deployment "
              "decision 3 b) as compile places it for its report (placement.json `residual`; "
              "the written form is the default fan-in), chips ceil(cores / cores per chip). "
              "Export s: "
              "`export_spikformer` + writing the NIR file. Compile: `nmc-deploy compile` as a "
              "subprocess (wall and user+system CPU seconds, peak RSS from `/usr/bin/time -v`; "
              "the machine is shared, so CPU seconds are the steadier number). Firing: LIF "
              "populations of the fixed-point program on the reference simulator (min / median "
              "/ max, count outside 5-15 %).", ""]
    lines += ["| rung | params (nonzero) | synapses | weights stored | on cores | neurons | "
              "cores | chips | cores (chips) relay form | export s | compile s wall (CPU) | "
              "compile peak RSS GB | ref samples/s | firing % min/med/max (outside) | status |",
              "|" + "---|" * 15]
    done = {r["rung"]: r for r in rows}
    for rung in ALL_RUNGS:
        r = done.get(rung)
        if r is None:
            lines.append(f"| {rung} |" + " |" * 13 + " not run |")
            continue
        fire = r.get("lif_rates")
        fire_s = ("–" if fire is None else
                  f"{100 * fire[0]:.1f} / {100 * fire[1]:.1f} / {100 * fire[2]:.1f} "
                  f"({r['lif_outside']} of {r['lif_populations']})")
        status = f"FAILED {r['failed']}" if "failed" in r else "ok"
        compile_s = (f"{_f(r.get('compile_wall_s'))} ({_f(r.get('compile_cpu_s'))})"
                     if r.get("compile_wall_s") is not None else "–")
        lines.append(
            f"| {rung} | {_count(r.get('parameters'))} ({_count(r.get('nonzero'))}) | "
            f"{_count(r.get('synapses'))} | {_count(r.get('weights_stored'))} | "
            f"{_count(r.get('synapses_on_cores'))} | {_count(r.get('neurons'))} | "
            f"{_f(r.get('cores'), '{}')} | {_f(r.get('chips'), '{}')} | "
            + ("–" if r.get("relay_cores") is None else
               f"{r['relay_cores']} ({r['relay_chips']})")
            + f" | {_f(r.get('export_s'), '{:.2f}')} | {compile_s} | "
            f"{_f(r.get('compile_peak_rss_gb'), '{:.2f}')} | "
            f"{_f(r.get('samples_per_s'), '{:.2f}')} | {fire_s} | {status} |")
    lines += ["", "Per stage (wall seconds, peak RSS GB of the subprocess; synthetic: random "
              "weights + calibration; import: `load_official_checkpoint`; torch firing: LIF "
              "layers of the float model on 4 simulation inputs; pool OR: the max-pool "
              "threshold populations of the program, which are no LIF layers):", "",
              "| rung | synthetic s | import s | export stage s / GB | compile stage s / GB | "
              "simulate stage s / GB (samples) | torch firing % min-max | pool OR firing % |",
              "|" + "---|" * 8]
    for r in rows:
        torch_f, pool = r.get("torch_firing"), r.get("pool_rates")
        lines.append(
            f"| {r['rung']} | {_f(r.get('synthetic_s'))} | {_f(r.get('import_s'), '{:.2f}')} | "
            + " | ".join(f"{_f(r.get(f'{st}_wall_s'))} / {_f(r.get(f'{st}_peak_rss_gb'), '{:.2f}')}"
                         for st in STAGES[:2])
            + f" | {_f(r.get('simulate_wall_s'))} / {_f(r.get('simulate_peak_rss_gb'), '{:.2f}')}"
            f" ({_f(r.get('samples'), '{}')}) | "
            + ("–" if torch_f is None else f"{100 * torch_f[0]:.1f}-{100 * torch_f[1]:.1f}")
            + " | " + ("–" if pool is None else f"{100 * pool[0]:.1f}-{100 * pool[1]:.1f}")
            + " |")
    if lava is not None:
        lines += ["", "## Reference vs Lava on the digits program", ""]
        if "failed" in lava:
            lines.append(f"FAILED: {lava['failed']}")
        else:
            ref_rate = lava["samples"] / lava["reference_s"]
            lava_rate = lava["samples"] / lava["lava_s"]
            lines += ["| backend | samples | seconds | samples/s |", "|---|---|---|---|",
                      f"| reference | {lava['samples']} | {lava['reference_s']:.2f} | "
                      f"{ref_rate:.1f} |",
                      f"| Lava (Loihi2SimCfg fixed_pt) | {lava['samples']} | "
                      f"{lava['lava_s']:.2f} | {lava_rate:.2f} |"]
            reps = sorted(lava.get("reference_repeats_s") or [])
            if reps:
                med = reps[len(reps) // 2]
                lines.append(f"| reference, median of {len(reps)} more runs (min-max "
                             f"{reps[0]:.2f}-{reps[-1]:.2f} s) | {lava['samples']} | {med:.2f} | "
                             f"{lava['samples'] / med:.1f} |")
                lines.append("")
                lines.append(f"Reference (median) / Lava: "
                             f"{lava['samples'] / med / lava_rate:.0f}x.")
            lines += ["",
                      f"Reference / Lava: {ref_rate / lava_rate:.0f}x; spike mismatches "
                      f"{lava['spike_mismatches']} of {lava['spikes']:,} spikes (one run each, "
                      f"same program and inputs: digits test images 0..{lava['samples'] - 1}).",
                      ]
        lines += _render_lava_rungs(lava.get("rungs") or {})
    return "\n".join(lines) + "\n"


def _lava_rungs(args, rungs) -> list[str]:
    return [] if args.no_lava else [r for r in args.lava_rungs.split(",") if r in rungs]


def _render_lava_rungs(found: dict) -> list[str]:
    if not found:
        return []
    lines = ["", "## Reference vs Lava on paper-shaped programs (shared weights, attention "
             "units)", "", "| rung | samples | reference s | Lava s | Lava peak RSS GB | "
             "spikes compared | spike mismatches |", "|---|---|---|---|---|---|---|"]
    for rung, r in found.items():
        if r is None:
            continue
        if "failed" in r:
            lines.append(f"| {rung} | | | | | | FAILED: {r['failed']} |")
            continue
        lines.append(f"| {rung} | {r['samples']} | {r['reference_s']:.2f} | {r['lava_s']:.2f} "
                     f"| {_f(r.get('peak_rss_gb'), '{:.2f}')} | {r['spikes']:,} | "
                     f"{r['spike_mismatches']} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rungs", default=",".join(ALL_RUNGS),
                   help=f"comma-separated rungs of {', '.join(ALL_RUNGS)}")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per rung")
    p.add_argument("--target", default=DEFAULT_TARGET,
                   help=f"hardware target of the compile (default {DEFAULT_TARGET})")
    p.add_argument("--samples", type=int, default=16, help="reference samples per rung")
    p.add_argument("--lava-samples", type=int, default=200)
    p.add_argument("--no-lava", action="store_true", help="skip reference vs Lava on digits")
    p.add_argument("--lava-rungs", default="d64",
                   help="paper-shaped rungs also run on Lava (shared weights, split attention)")
    p.add_argument("--lava-rung-samples", type=int, default=2)
    p.add_argument("--digits-checkpoint", default=None,
                   help="a trained nmc-deploy checkpoint for the dense digits rung")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / "scale_work"))
    p.add_argument("--out", default=str(ROOT / "docs" / "results-scale.md"))
    p.add_argument("--preliminary", action="store_true", help="mark the report preliminary")
    p.add_argument("--render-only", action="store_true",
                   help="write the report from the work files of earlier runs (no new runs)")
    p.add_argument("--stage", choices=["export", "simulate", "lava"], help=argparse.SUPPRESS)
    p.add_argument("--rung", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.stage:
        work = Path(args.work)
        if args.stage == "export":
            res = stage_export(args.rung, work, args.seed, args.samples, args.digits_checkpoint)
        elif args.stage == "simulate":
            res = stage_simulate(work)
        else:
            res = stage_lava(work, args.lava_samples, args.rung)
        (work / f"{args.stage}.json").write_text(json.dumps(res, indent=1))
        return 0
    rungs = [r.strip() for r in args.rungs.split(",") if r.strip()]
    unknown = [r for r in rungs if r not in ALL_RUNGS]
    if unknown:
        p.error(f"unknown rung {unknown[0]!r}; choose from {', '.join(ALL_RUNGS)}")
    work = Path(args.work)
    if not args.render_only:
        for rung in rungs:
            print(f"rung {rung} (timeout {args.timeout:.0f} s)", flush=True)
            run_rung(rung, args)
        if not args.no_lava and "digits" in rungs:
            print(f"reference vs Lava on digits, {args.lava_samples} samples", flush=True)
            run_lava(args)
        for rung in _lava_rungs(args, rungs):
            print(f"reference vs Lava on {rung}, {args.lava_rung_samples} samples", flush=True)
            run_lava(args, rung, args.lava_rung_samples)
    rows = [r for r in (collect_row(rung, work, args.target) for rung in rungs) if r]
    lava = None if args.no_lava or "digits" not in rungs else collect_lava(work)
    if lava is not None:
        lava["rungs"] = {r: collect_lava(work, r) for r in _lava_rungs(args, rungs)}
    work.mkdir(parents=True, exist_ok=True)
    (Path(args.work) / "results.json").write_text(json.dumps({"rows": rows, "lava": lava},
                                                             indent=1))
    Path(args.out).write_text(render(rows, lava, args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
