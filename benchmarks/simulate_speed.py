"""Reference simulator speed: vs Lava on the digits program, and on dense CIFAR-shaped Spikformers.

Usage: .venv/bin/python benchmarks/simulate_speed.py [--out DIR] [--digits-build DIR]
           [--widths 128,256,384] [--depth 4] [--samples 200] [--cifar-samples 40]
           [--skip-lava] [--compile [--target T]] [--digits-repeats N]
       .venv/bin/python benchmarks/simulate_speed.py --scale-work DIR [--runs 5]

Each timed run is preceded by an untimed 1-2 sample warm-up run of the reference (first-call
costs: BLAS thread start, lazy imports); Lava is timed as one cold run (its setup included).

1. Digits (the demo's program: ``train --preset digits --seed 0``, export, ``compile
   --target loihi2``; or an existing build with ``--digits-build``): the reference and Lava
   (``Loihi2SimCfg``, fixed_pt) each run the first ``--samples`` test images once; samples/s
   of each (wall clock of the ``simulate_*`` call, Lava's setup included) and the spike
   mismatches of the two runs (every population, every step).
2. Dense Spikformers at the CIFAR-10 shape (32x32x3, SPS D/8, D/4, D/2, D with pools after
   the last two stages: 64 tokens; ``--depth`` blocks, mlp_ratio 4, D/32 heads, T = 4),
   random weights with BatchNorms that make every layer fire (tests/conftest.py
   ``make_active_spikformer``), on seeded random integer images (0..15; no CIFAR copy is
   needed). The program is made by the compiler's own passes (export, ``lower_graph``,
   ``schedule_program``, ``quantize_program``); ``--compile`` runs the whole
   ``compile_model`` (placement included) instead. Reports the reference's samples/s, the
   multiply-accumulates its products do per sample (dense kernels: what BLAS computes), the
   rate they reach and its fraction of this machine's matrix-multiply peak (a float32 and a
   float64 2048^3 numpy product, best of 5, measured right after each run: the machine is
   shared, so the peak is measured under the same load), and the process CPU seconds per
   sample (all threads; less dependent on the load of other processes than wall time), and
   the peak resident memory of the benchmark process so far.
   ``--digits-repeats N`` also reports the median of N more reference runs on digits and its
   ratio to the one Lava run (a 0.3 s run is at the mercy of other processes' bursts).
3. ``--scale-work DIR`` (a rung directory of benchmarks/scale.py: ``build/`` and
   ``inputs.npy``): the reference step of benchmarks/scale.py itself (``--stage simulate``:
   a fresh process, one cold ``simulate_reference`` call on the rung's inputs, no warm-up),
   ``--runs`` times in a row, each in its own process running this tree's code, in a
   scratch copy of the directory (scale.py's ``simulate.json`` in DIR is not touched); then
   the matrix-multiply peaks and the product work as in 2. Reports every run with the load
   average around it, and the median.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # make_active_spikformer
sys.path.insert(0, str(ROOT))  # this tree's nmc_deploy, not the installed one


def matmul_peak(dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an (n, n) @ (n, n) numpy product of ``dtype``."""
    a = np.random.default_rng(0).random((n, n)).astype(dtype)
    a @ a
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def product_macs(program) -> int:
    """Multiply-accumulates the reference's products do per sample (dense kernels, merged
    stages, T steps; attention: Q K^T, A V). A merged stage with a negative exponent counts
    its merged product plus its packed residual products (``drive._floor_sum``), or one
    product per group when it does not pack (spike sources assumed)."""
    import scipy.sparse as sp

    from nmc_deploy.program.shared_weights import ConvShared, TokenShared
    from nmc_deploy.simulate.drive import DENSE_KERNEL_DENSITY, _packing, plan_program

    def kernel_macs(k, w) -> int:
        if isinstance(w, TokenShared):
            if sp.issparse(k):
                dense = k.nnz >= DENSE_KERNEL_DENSITY * k.shape[0] * k.shape[1]
                return (k.shape[0] * k.shape[1] if dense else k.nnz) * w.n_tokens
            return k.size * w.n_tokens
        co, cig, kh, kw = w.kernel.shape
        return co * cig * kh * kw * w.out_hw[0] * w.out_hw[1]

    macs = 0
    for plan in plan_program(program).values():
        for st in plan.stages:
            w = st.weights
            if isinstance(w, (TokenShared, ConvShared)):
                one = kernel_macs(w.kernel, w)
                n = len(st.groups)
                if st.weight_exp < 0 and n > 1:
                    packing = _packing(st, n, -st.weight_exp)
                    if packing is None:
                        macs += n * one
                    else:
                        per, residual = packing[1], packing[3]
                        macs += one + -(-n // per) * kernel_macs(residual, w)
                else:
                    macs += one
            else:
                macs += int(w.nnz)
        for g in plan.own:
            macs += int(g.weights.nnz)
    for op in program.attention:
        d = op.dim // op.num_heads
        macs += 2 * op.num_heads * op.n_tokens * op.n_tokens * d
    return macs * program.time_steps


def build_digits(out: Path) -> Path:
    from nmc_deploy.pipeline import compile_model, export_checkpoint, train_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    if not (out / "model.pt").exists():
        train_checkpoint(out / "model.pt", preset="digits", seed=0)
    export_checkpoint(out / "model.pt", out / "model.nir")
    compile_model(out / "model.nir", "loihi2", out / "build")
    return out / "build"


def bench_digits(build: Path, samples: int, lava: bool, repeats: int = 0) -> dict:
    from nmc_deploy.data import load_dataset
    from nmc_deploy.program import load_program
    from nmc_deploy.simulate.compare import compare_runs
    from nmc_deploy.simulate.reference import simulate_reference

    program = load_program(build)
    x = load_dataset("digits").x_test[:samples]
    simulate_reference(program, x[:2])  # warm-up: first-call costs (BLAS threads, caches)
    c0, t0 = time.process_time(), time.perf_counter()
    ref = simulate_reference(program, x)
    t_ref, cpu = time.perf_counter() - t0, time.process_time() - c0
    again = []
    for _ in range(repeats):  # more reference runs, for the spread under the machine's load
        t0 = time.perf_counter()
        simulate_reference(program, x)
        again.append(time.perf_counter() - t0)
    row = {"program": str(build), "samples": len(x), "reference_s": round(t_ref, 3),
           "reference_samples_per_s": round(len(x) / t_ref, 1),
           "reference_cpu_s": round(cpu, 3),
           "reference_repeats_median_samples_per_s": round(len(x) / float(np.median(again)), 1)
           if again else "-",
           "neurons": sum(p.size for p in program.populations),
           "product_macs_per_sample": product_macs(program)}
    if lava:
        from nmc_deploy.simulate.lava.backend import simulate_lava

        t0 = time.perf_counter()
        lav = simulate_lava(program, x)
        t_lava = time.perf_counter() - t0
        cmp = compare_runs(ref, lav)
        row.update(lava_s=round(t_lava, 2), lava_samples_per_s=round(len(x) / t_lava, 2),
                   speedup=round(t_lava / t_ref, 1),
                   spike_mismatches=cmp["spike_mismatches_reference_vs_lava"],
                   spikes_compared=cmp["spikes_compared"],
                   prediction_mismatches=cmp["prediction_mismatches"])
        if again:
            row["speedup_repeats_median"] = round(t_lava / float(np.median(again)), 1)
    return row


def cifar_config(width: int, depth: int):
    from nmc_deploy.models.spikformer import SpikformerConfig

    return SpikformerConfig(img_size=32, in_channels=3, num_classes=10, embed_dim=width,
                            num_heads=max(1, width // 32), depth=depth, mlp_ratio=4,
                            time_steps=4, sps_channels=(width // 8, width // 4, width // 2,
                                                        width),
                            sps_pool=(False, False, True, True))


def cifar_program(width: int, depth: int, out: Path, full_compile: bool, target: str = "loihi2"):
    """(program, seconds to make it, how it was made)."""
    from conftest import make_active_spikformer

    from nmc_deploy.export.spikformer import export_spikformer

    model = make_active_spikformer(cifar_config(width, depth), seed=0)
    graph = export_spikformer(model, {"dataset": "cifar10", "input_levels": 16})
    t0 = time.perf_counter()
    if full_compile:
        from nmc_deploy.nirio import write_nir
        from nmc_deploy.pipeline import compile_model
        from nmc_deploy.program import load_program

        out.mkdir(parents=True, exist_ok=True)
        write_nir(graph, out / "model.nir")
        compile_model(out / "model.nir", target, out / "build")
        return load_program(out / "build"), time.perf_counter() - t0, f"compile_model ({target})"
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.compile.schedule import schedule_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(graph)
        program = quantize_program(fp, schedule_program(fp))
    return program, time.perf_counter() - t0, "lower + schedule + quantize"


def bench_cifar(width: int, depth: int, samples: int, out: Path, full_compile: bool,
                target: str = "loihi2") -> dict:
    from nmc_deploy.program.shared_weights import is_shared
    from nmc_deploy.simulate.reference import simulate_reference

    program, t_make, how = cifar_program(width, depth, out / f"cifar{width}x{depth}",
                                         full_compile, target)
    x = np.random.default_rng(0).integers(0, 16, (samples, *program.input_shape))
    simulate_reference(program, x[:1], record=False)  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    res = simulate_reference(program, x, record=False)
    t_sim, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak32, peak64 = matmul_peak(np.float32), matmul_peak(np.float64)
    macs = product_macs(program)
    rate = 2 * macs * samples / t_sim / 1e9
    spikes = sum(int(c.sum()) for c in res.counts.values())
    neurons = sum(p.size for p in program.populations if p.spiking)
    return {"width": width, "depth": depth, "program": how, "program_s": round(t_make, 1),
            "neurons": sum(p.size for p in program.populations),
            "stored_weights": int(sum(g.weights.stored if is_shared(g.weights)
                                      else g.weights.nnz for g in program.groups)),
            "synapses": int(sum(g.weights.nnz for g in program.groups)),
            "samples": samples, "reference_s": round(t_sim, 2),
            "reference_samples_per_s": round(samples / t_sim, 2),
            "cpu_s_per_sample": round(cpu / samples, 3),
            "product_macs_per_sample": macs, "gflop_per_s": round(rate, 1),
            "peak_f32_gflop_per_s": round(peak32, 1), "peak_f64_gflop_per_s": round(peak64, 1),
            "fraction_of_f32_peak": round(rate / peak32, 3),
            "fraction_of_f64_peak": round(rate / peak64, 3),
            "firing_rate": round(spikes / (neurons * samples * program.time_steps), 3),
            "peak_rss_gb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                                        2)}


def bench_scale_work(work: Path, runs: int) -> dict:
    """benchmarks/scale.py's reference step on the rung in ``work``, ``runs`` fresh processes
    (this tree's code), then the matmul peaks and the product work (see the module doc)."""
    from nmc_deploy.program import load_program

    rung = work.resolve().name
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # scale.py would import the installed copy
    done = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / rung
        scratch.mkdir()
        for name in ("build", "inputs.npy"):
            (scratch / name).symlink_to((work / name).resolve())
        for _ in range(runs):
            load0 = os.getloadavg()[0]
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--stage",
                            "simulate", "--rung", rung, "--work", str(scratch)], env=env,
                           check=True, stdout=subprocess.DEVNULL)
            res = json.loads((scratch / "simulate.json").read_text())
            done.append({"samples_per_s": round(res["samples_per_s"], 2),
                         "simulate_s": round(res["simulate_s"], 2),
                         "load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]})
            print(json.dumps(done[-1]), flush=True)
    peak32, peak64 = matmul_peak(np.float32), matmul_peak(np.float64)
    program = load_program(work / "build")
    macs = product_macs(program)
    median = statistics.median(r["samples_per_s"] for r in done)
    rate = 2 * macs * median / 1e9
    return {"rung": rung, "samples": res["samples"], "runs": done,
            "median_samples_per_s": median, "product_macs_per_sample": macs,
            "gflop_per_s_at_median": round(rate, 1), "peak_f32_gflop_per_s": round(peak32, 1),
            "peak_f64_gflop_per_s": round(peak64, 1),
            "fraction_of_f32_peak": round(rate / peak32, 3),
            "fraction_of_f64_peak": round(rate / peak64, 3)}


def table(rows: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "-")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("simulate_speed_out"))
    ap.add_argument("--digits-build", type=Path)
    ap.add_argument("--widths", default="128,256,384")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--cifar-samples", type=int, default=40)
    ap.add_argument("--skip-lava", action="store_true")
    ap.add_argument("--digits-repeats", type=int, default=0,
                    help="Runs the digits reference this many more times (median reported).")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--compile", action="store_true",
                    help="Makes the CIFAR-shaped programs with the whole compile_model.")
    ap.add_argument("--target", default="loihi2", help="Names the target of --compile.")
    ap.add_argument("--scale-work", type=Path,
                    help="Times benchmarks/scale.py's reference step on this rung directory.")
    ap.add_argument("--runs", type=int, default=5, help="Runs of --scale-work.")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.scale_work:
        res = bench_scale_work(args.scale_work, args.runs)
        print(json.dumps(res, indent=1))
        (args.out / f"scale_{res['rung']}.json").write_text(json.dumps(res, indent=1))
        return
    results = {"load_average_start": [round(v, 2) for v in os.getloadavg()],
               "peak_f32_gflop_per_s_start": round(matmul_peak(np.float32), 1),
               "peak_f64_gflop_per_s_start": round(matmul_peak(np.float64), 1)}
    print(json.dumps(results), flush=True)
    if not args.skip_digits:
        build = args.digits_build or build_digits(args.out / "digits")
        results["digits"] = bench_digits(build, args.samples, not args.skip_lava,
                                          args.digits_repeats)
        print(table([results["digits"]], list(results["digits"])), flush=True)
    results["cifar"] = []
    for width in (int(w) for w in args.widths.split(",") if w):
        results["cifar"].append(bench_cifar(width, args.depth, args.cifar_samples, args.out,
                                            args.compile, args.target))
        print(table(results["cifar"][-1:], list(results["cifar"][-1])), flush=True)
    results["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({k: v for k, v in results.items() if "load" in k}))
    (args.out / "simulate_speed.json").write_text(json.dumps(results, indent=1))
    if results["cifar"]:
        print(table(results["cifar"], list(results["cifar"][0])))


if __name__ == "__main__":
    main()
