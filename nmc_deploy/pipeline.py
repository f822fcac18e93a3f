"""The stages as functions: each reads the previous stage's file and writes its own.

The CLI (``nmc_deploy.cli``) is a thin layer over these. Heavy imports (torch, nir, lava)
happen inside the functions that need them.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import InputFileError

__all__ = ["train_checkpoint", "prune_checkpoint", "export_checkpoint", "compile_model",
           "run_simulation", "make_report", "run_demo", "BUILD_FILES", "PRUNE_METHODS"]

PRUNE_METHODS = ("lth", "l1p", "dsp", "none")  # none: token selection only

BUILD_FILES = ("program.json", "program.npz", "placement.json", "model.nir")


def _log(msg: str, log: Callable[[str], None] | None) -> None:
    (log or (lambda m: print(m, file=sys.stderr)))(msg)


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, default=_json_default)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


# ------------------------------------------------------------------------------ train

def train_checkpoint(out: Path, *, preset: str = "digits", dataset: str = "digits",
                     data_path: Path | None = None, epochs: int | None = None, seed: int = 0,
                     progress: bool = True, log=None) -> dict:
    """Train a preset on a data set and write a checkpoint; returns its metadata."""
    from .data import load_dataset
    from .models.checkpoint import save_checkpoint
    from .models.spikformer import preset_config
    from .models.train import DEFAULT_EPOCHS, evaluate_model, train_model

    cfg = preset_config(preset)
    data = load_dataset(dataset, data_path)
    epochs = int(epochs if epochs is not None else DEFAULT_EPOCHS.get(preset, 30))
    t0 = time.perf_counter()
    model, history = train_model(cfg, data, epochs=epochs, seed=seed, progress=progress)
    seconds = time.perf_counter() - t0
    acc = evaluate_model(model, data.x_test, data.y_test, data.levels)
    meta = {"preset": preset, "dataset": dataset, "input_levels": data.levels, "epochs": epochs,
            "seed": seed, "train_seconds": round(seconds, 2), "accuracy_float": acc,
            "history": history}
    save_checkpoint(out, model, meta)
    _log(f"trained {preset} on {dataset}: float test accuracy {acc:.4f} "
         f"({epochs} epochs, {seconds:.0f} s) -> {out}", log)
    return meta


# ------------------------------------------------------------------------------ prune

def prune_checkpoint(ckpt: Path, out: Path, *, method: str, sparsity: float | None = None,
                     rank_budget: float | None = None, energy: float | None = None,
                     slif: bool = False, epochs: int = 5, rounds: int | None = None,
                     state_dir: Path | None = None, seed: int = 0, data_path=None,
                     token_keep: float | None = None, token_blocks=None,
                     token_epochs: int = 10, progress: bool = True, log=None) -> dict:
    """Prune a trained checkpoint with LTH, L1P or DSP (optionally with sLIF) and write it.

    With ``token_keep`` the (pruned) model then gets token selectors before
    ``token_blocks`` (default every block; a list or "1,2") trained for ``token_epochs``
    with the weight masks kept (method "none": token selection only).
    Arguments are checked before any work, so a bad request writes nothing. LTH rounds are
    resumable through ``state_dir`` (default: ``<out>.lth/``).
    """
    from .errors import NmcDeployError as _E

    if method not in PRUNE_METHODS:
        raise _E(f"prune: unknown method '{method}'; choose one of {', '.join(PRUNE_METHODS)}")
    if token_keep is not None and not 0.0 < token_keep < 1.0:
        raise _E(f"prune: token keep ratio ({token_keep}) must be in (0, 1); it is the "
                 "fraction of tokens each selector keeps")
    if method == "none" and token_keep is None:
        raise _E("prune: method 'none' prunes nothing; give --token-keep r for token "
                 "selection or choose lth, l1p or dsp")
    if isinstance(token_blocks, str):
        try:
            token_blocks = [int(b) for b in token_blocks.split(",") if b.strip()]
        except ValueError:
            raise _E(f"prune: token blocks ('{token_blocks}') must be comma-separated block "
                     "indices such as '0,1'") from None
    if sparsity is not None and not 0.0 <= sparsity < 1.0:
        raise _E(f"prune: sparsity ({sparsity}) must be in [0, 1); it is the fraction of "
                 "weights removed")
    if rank_budget is not None and not 0.0 < rank_budget <= 1.0:
        raise _E(f"prune: rank budget ({rank_budget}) must be in (0, 1], a fraction of the "
                 "dense block parameters")
    if method == "dsp" and rank_budget is None and energy is None:
        energy = 0.9
    if method in ("lth", "l1p") and sparsity is None:
        sparsity = 0.9
    from .data import load_dataset
    from .models.checkpoint import load_checkpoint, save_checkpoint
    from .prune.common import accuracy_on_test
    from .prune.masks import sparsity_report

    model, meta = load_checkpoint(ckpt)
    if not hasattr(model, "blocks"):
        raise _E(f"{ckpt}: not a Spikformer checkpoint; prune works on Spikformer models")
    if token_keep is not None:
        import dataclasses

        if model.config.token_blocks:
            raise _E(f"{ckpt}: the model already has token selectors; start from a model "
                     "without them")
        blocks = tuple(range(model.config.depth)) if token_blocks is None else tuple(token_blocks)
        dataclasses.replace(model.config, token_keep=token_keep, token_blocks=blocks)  # checks
    data = load_dataset(meta.get("dataset", "digits"), data_path)
    before = {"accuracy_float": accuracy_on_test(model, data),
              "params": int(sum(p.numel() for p in model.parameters())),
              "nonzeros": int(sum(int((p != 0).sum()) for p in model.parameters()))}
    if slif:
        from .prune.slif import convert_to_slif

        model = convert_to_slif(model)
    t0 = time.perf_counter()
    if method == "lth":
        from .prune.lth import run_lth

        result = run_lth(model, data, epochs_per_round=epochs, rounds=rounds,
                         target_sparsity=None if rounds else sparsity, seed=seed,
                         state_dir=state_dir or Path(str(out) + ".lth"), progress=progress)
    elif method == "none":
        from .prune.common import PruneResult

        result = PruneResult(model=model)
    elif method == "l1p":
        from .prune.l1p import run_l1p

        result = run_l1p(model, data, sparsity=sparsity, finetune_epochs=epochs, seed=seed,
                         progress=progress)
    else:
        from .prune.dsp import run_dsp

        result = run_dsp(model, data, energy=None if rank_budget else energy,
                         rank_budget=rank_budget, finetune_epochs=epochs, seed=seed,
                         progress=progress)
    pruned = result.model
    if token_keep is not None:
        from .prune.tokens import run_tokens

        _log(f"training token selectors (r = {token_keep}, blocks {list(blocks)}, "
             f"{token_epochs} epochs)", log)
        tok = run_tokens(pruned, data, keep=token_keep, blocks=blocks, epochs=token_epochs,
                         seed=seed, masks=result.masks or None, progress=progress)
        result.log.extend(tok.log)
        pruned = tok.model
    after = {"accuracy_float": accuracy_on_test(pruned, data),
             "params": int(sum(p.numel() for p in pruned.parameters())),
             "nonzeros": int(sum(int((p != 0).sum()) for p in pruned.parameters()))}
    rep = sparsity_report(pruned, result.masks or None)
    summary = {"method": method, "slif": slif, "sparsity": sparsity, "rank_budget": rank_budget,
               "energy": energy, "token_keep": token_keep,
               "token_blocks": list(pruned.config.token_blocks), "before": before, "after": after,
               "seconds": round(time.perf_counter() - t0, 1), "log": result.log,
               "prunable_sparsity": getattr(rep, "sparsity", None)}
    save_checkpoint(out, pruned, {**{k: v for k, v in meta.items() if k != "history"},
                                  "accuracy_float": after["accuracy_float"],
                                  "pruning": {k: v for k, v in summary.items() if k != "log"}})
    _log(f"{method}{' + sLIF' if slif else ''}: params {before['params']} -> {after['params']}, "
         f"nonzeros {before['nonzeros']} -> {after['nonzeros']}, float accuracy "
         f"{before['accuracy_float']:.4f} -> {after['accuracy_float']:.4f} -> {out}", log)
    return summary


# ----------------------------------------------------------------------------- export

def export_checkpoint(ckpt: Path, out: Path, log=None, portable: bool = False) -> dict:
    """Checkpoint -> NIR file (BatchNorm folded; attention as our extension node).

    ``portable``: a directory with standard NIR only (graph.nir), the extension ops in a
    manifest (:func:`~nmc_deploy.nirio.nir_io.write_portable`); `compile` reads it back.
    """
    from .export.spikformer import export_spikformer
    from .nirio.nir_io import write_nir, write_portable
    from .models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(ckpt)
    graph = export_spikformer(model, {
        "dataset": meta.get("dataset", "digits"),
        "input_levels": int(meta.get("input_levels", 16)),
        "accuracy_float": meta.get("accuracy_float"),
        "checkpoint": str(ckpt)})
    if portable:
        write_portable(graph, out)
    else:
        write_nir(graph, out)
    _log(f"exported {len(graph.nodes)} nodes, {len(graph.edges)} edges -> {out}"
         + (" (standard NIR + manifest)" if portable else ""), log)
    return {"nodes": len(graph.nodes), "edges": len(graph.edges)}


# ---------------------------------------------------------------------------- compile

def compile_model(nir_path: Path, target: str, out_dir: Path, *, vth_mant: int | None = None,
                  low_rank: str = "fused", emit: tuple[str, ...] = (), dt: float | None = None,
                  convention: str | None = None, reset: str | None = None, log=None) -> dict:
    """NIR -> core program directory (program.json/.npz, placement.json, model.nir).

    The compilation itself is :func:`~nmc_deploy.compile.recipe.compile_graph`. ``low_rank``
    ("fused" or "relay") chooses how low-rank factor pairs deploy
    (:func:`~nmc_deploy.compile.lower.lower_graph`). When the graph has such pairs, the other
    form is compiled too, only for the report: ``placement.json`` gets ``low_rank`` with the
    synapses, synapse memory, cores, neurons and pipeline depth of both forms.

    ``dt`` (seconds) and ``convention`` (a tool name of
    :data:`~nmc_deploy.ir.conventions.CONVENTIONS`) decide the discretisation of graphs from
    other tools; they win over the graph's metadata (:func:`~nmc_deploy.ir.conventions.
    resolve_timing`), and the resolved values are written into the build's metadata.

    ``emit`` names extra formats of the program: "netx" quantizes onto netx's grid
    (:data:`~nmc_deploy.compile.netx.NETX_GRID`: weight_exp 0, biases in multiples of 64) and
    also writes ``model.net.h5`` for lava-dl's ``netx.hdf5.Network``
    (:func:`~nmc_deploy.compile.netx.write_netx`; a program netx cannot express fails the
    whole compilation, and nothing is written).

    Everything is written to a temporary directory first and moved into ``out_dir`` only
    when the whole compilation succeeded.
    """
    from .compile.lower import low_rank_down_nodes
    from .compile.netx import NETX_FILE, write_netx
    from .compile.partition import format_utilization
    from .compile.recipe import compile_graph, format_low_rank_forms
    from .errors import NmcDeployError
    from .fileio import write_json_atomic
    from .ir.conventions import apply_timing, resolve_timing
    from .nirio.nir_io import read_nir, read_portable, write_nir
    from .program import LOW_RANK_MODES, save_program
    from .targets import load_target

    if low_rank not in LOW_RANK_MODES:
        raise NmcDeployError(f"compile: low-rank form '{low_rank}' is not one of "
                             f"{', '.join(LOW_RANK_MODES)}")
    unknown = sorted(set(emit) - {"netx"})
    if unknown:
        raise NmcDeployError(f"compile: format '{unknown[0]}' to emit is not one of netx")
    tgt = load_target(target)
    # a directory is a portable export: standard NIR + manifest
    graph = read_portable(nir_path) if Path(nir_path).is_dir() else read_nir(nir_path)
    timing = None  # the graph metadata's (lower_graph)
    if dt is not None or convention is not None or reset is not None \
            or "dt" not in graph.metadata:
        timing = resolve_timing(graph, dt=dt, convention=convention, reset=reset)
        graph = apply_timing(graph, timing)
        _log(f"timing: dt {timing.dt:g} s, {timing.integrator}, reset {timing.reset}, "
             f"threshold {timing.threshold_comparison} ({timing.source})", log)
    pairs = low_rank_down_nodes(graph)
    if pairs and low_rank == "relay" and tgt.graded_spike_bits == 0:
        raise NmcDeployError(f"{nir_path}: {len(pairs)} low-rank relays need graded spikes, "
                             f"but target {tgt.name} has none (graded_spike_bits 0); compile "
                             "with --low-rank fused")
    _log(f"lowering {nir_path} ({len(graph.nodes)} nodes, low-rank factors {low_rank})", log)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compile_graph(graph, tgt, low_rank=low_rank, vth_mant=vth_mant,
                               netx_grid="netx" in emit, timing=timing)
    for w in caught:
        _log(f"warning: {w.message}", log)
    program, summary = result.program, result.summary()
    if not pairs and low_rank != "fused":
        _log(f"note: {nir_path} has no low-rank factors; --low-rank {low_rank} changes nothing",
             log)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"{out_dir}: exists and is not a directory; choose another -o")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        extra = ()
        if "netx" in emit:  # before anything moves: an inexpressible program writes nothing
            write_netx(program, tmp / NETX_FILE)
            extra = (NETX_FILE,)
        save_program(program, tmp)
        write_json_atomic(tmp / "placement.json", summary)
        write_nir(graph, tmp / "model.nir")  # as compiled: resolved timing, portable parts joined
        out_dir.mkdir(exist_ok=True)
        for pattern in ("activity_*.json", "simulation_*.json", NETX_FILE):
            for stale in out_dir.glob(pattern):
                stale.unlink()  # results of an older program would no longer match
        for name in BUILD_FILES + extra:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _log(format_utilization(summary), log)
    if "low_rank" in summary:
        _log(format_low_rank_forms(summary["low_rank"]), log)
    for name in extra:
        _log(f"wrote {out_dir / name} (netx.hdf5.Network; docs/architecture.md, netx export)",
             log)
    return summary


# --------------------------------------------------------------------------- simulate

def _load_build(build_dir: Path):
    from .program import load_program

    program = load_program(build_dir)
    placement = Path(build_dir) / "placement.json"
    if not placement.exists():
        raise InputFileError(f"{build_dir}: placement.json missing; run `nmc-deploy compile` again")
    return program, json.loads(placement.read_text())


def load_user_inputs(path: Path, program) -> np.ndarray:
    """User input for a program: ``.npy`` images ``(B, *input_shape)`` or sequences
    ``(B, T, *input_shape)`` (a flat last axis is reshaped), or a NIRData file whose node named
    like the graph's Input holds ``TimeGriddedData``/``EventData`` on the program's dt.
    Fixed point needs integers (spikes or integer currents)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file; give a .npy array or a NIRData file")
    shape = tuple(program.input_shape)
    n_in = int(np.prod(shape))
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputFileError(f"{path}: not a readable .npy array ({type(exc).__name__})") \
                from None
    else:
        from .nirio.nir_io import read_nirdata_input

        x = read_nirdata_input(path, program.metadata.get("input_name", "input"),
                               float(program.metadata.get("dt", 1.0)))
    if tuple(x.shape[1:]) == shape or tuple(x.shape[2:]) == shape:
        pass
    elif x.ndim == 3 and x.shape[2] == n_in:
        x = x.reshape(x.shape[0], x.shape[1], *shape)
    else:
        raise InputFileError(f"{path}: input shape {tuple(x.shape)} fits neither (B, {shape}) "
                             f"nor (B, T, {shape}); reshape the array")
    if x.dtype.kind == "b":
        x = x.astype(np.int64)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
            raise InputFileError(f"{path}: fixed-point simulation needs integer inputs (spikes or "
                                 "integer currents); scale and round the array first")
        x = x.astype(np.int64)
    return x


def run_simulation(build_dir: Path, backend: str = "reference", *, samples: int | None = None,
                   compare: bool = False, dataset: str | None = None,
                   data_path: Path | None = None, inputs: Path | None = None,
                   record: Path | None = None, log=None) -> dict:
    """Simulate the compiled program on the test split; writes ``activity_<backend>.json``.

    ``backend`` is "reference" or "lava"; ``compare`` runs both on the same samples and counts
    spike mismatches per population. Returns accuracies and mismatch counts.
    ``inputs``: a user input file instead of the data set (:func:`load_user_inputs`; no
    accuracies then); the per-step graph outputs go to ``outputs_<backend>.npz``.
    ``record``: write every population's per-step output (spikes, LI voltages) as NIRData.
    """
    from .compile.lower import lower_graph
    from .data import load_dataset
    from .nirio.nir_io import read_nir
    from .simulate.reference import accuracy, simulate_float, simulate_reference

    build_dir = Path(build_dir)
    program, placement = _load_build(build_dir)
    if record is not None:  # checked before any work, so a bad path costs no simulation
        record = Path(record)
        if record.is_dir():
            raise InputFileError(f"{record}: is a directory; give a file name for --record")
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputFileError(f"{record}: cannot create its directory ({exc.strerror}); "
                                 "choose another --record path") from None
        if not os.access(record.parent, os.W_OK):
            raise InputFileError(f"{record.parent}: not writable; choose another --record path")
    if inputs is not None:
        name = str(inputs)
        x = load_user_inputs(inputs, program)
        if samples is not None:
            x = x[:samples]
        y = None
    else:
        name = dataset or program.metadata.get("dataset", "digits")
        data = load_dataset(name, data_path)
        if data.levels != program.input_levels:
            raise InputFileError(f"dataset '{name}': intensity levels ({data.levels}) differ "
                                 f"from the program's input_levels ({program.input_levels})")
        x, y = data.test_subset(samples)
    if y is None:
        accuracy = lambda run, labels: None  # noqa: E731  (user inputs carry no labels)
    result = {"dataset": name, "samples": int(len(x)), "backend": backend}
    t0 = time.perf_counter()
    fp = lower_graph(read_nir(build_dir / "model.nir"),
                     low_rank=program.metadata.get("low_rank", "fused"))
    flt = simulate_float(fp, x)
    result["accuracy_float"] = accuracy(flt, y)
    if y is not None:
        _log(f"float (graph, float64): accuracy {result['accuracy_float']:.4f} on {len(y)} "
             "samples", log)
    runs = {}
    if backend == "reference" or compare:
        t0 = time.perf_counter()
        ref = simulate_reference(program, x)
        if program.token_selects:  # the counterfactual: every token kept
            full = simulate_reference(program, x, record=False, token_selection=False)
            ref.stats["synops_without_token_selection"] = int(
                sum(e["synops"] for e in full.stats["layers"]))
        runs["reference"] = ref
        result["accuracy_fixed_reference"] = accuracy(ref, y)
        result["seconds_reference"] = round(time.perf_counter() - t0, 2)
        if y is not None:
            _log(f"fixed point (reference): accuracy {result['accuracy_fixed_reference']:.4f}",
                 log)
        if ref.stats.get("u_wraps") or ref.stats.get("v_saturations"):
            _log(f"warning: fixed-point overflow: {ref.stats['u_wraps']} current wraps, "
                 f"{ref.stats['v_saturations']} voltage saturations; lower --vth-mant", log)
    if backend == "lava" or compare:
        from .simulate.lava.backend import simulate_lava

        n_proc = len(program.populations) * 2 + len(program.groups) + 1
        _log(f"running Lava: ~{n_proc} processes, "
             f"{len(x) * program.time_steps + program.pipeline_depth}+ steps on "
             "Loihi2SimCfg(fixed_pt) ...", log)
        t1 = time.perf_counter()
        lav = simulate_lava(program, x)
        runs["lava"] = lav
        result["accuracy_fixed_lava"] = accuracy(lav, y)
        result["seconds_lava"] = round(time.perf_counter() - t1, 2)
        _log(f"fixed point (Lava): {result['seconds_lava']:.1f} s"
             + (f", accuracy {result['accuracy_fixed_lava']:.4f}" if y is not None else ""), log)
    if compare:
        ref, lav = runs["reference"], runs["lava"]
        out_ref, out_lav = ref.outputs(), lav.outputs()  # spikes; payloads for relays
        per_pop = {k: int(np.count_nonzero(out_ref[k] != out_lav[k])) for k in out_ref}
        result["spike_mismatches_per_population"] = per_pop
        result["spike_mismatches_reference_vs_lava"] = int(sum(per_pop.values()))
        result["spikes_compared"] = int(sum(int(np.count_nonzero(s)) for s in out_ref.values()))
        result["prediction_mismatches"] = int(np.sum(ref.predictions != lav.predictions))
        if ref.token_masks:
            result["token_choice_mismatches"] = int(sum(
                np.count_nonzero(ref.token_masks[k] != lav.token_masks[k]) for k in ref.token_masks))
            _log(f"token choices (reference vs Lava): {result['token_choice_mismatches']} "
                 "mismatches", log)
        _log(format_mismatches(per_pop), log)
    if inputs is not None or record is not None:
        main_run = runs.get(backend) or next(iter(runs.values()))
        if record is not None:
            from .nirio.nir_io import write_nirdata

            traces = {k: {"spikes": np.asarray(v).transpose(1, 0, 2)}
                      for k, v in main_run.spikes.items()}
            scales = getattr(main_run, "voltage_scales", None) or {}
            for k, v in main_run.voltages.items():  # fixed-point units -> float units
                traces.setdefault(k, {})["v"] = (np.asarray(v, np.float64)
                                                 / scales.get(k, 1.0)).transpose(1, 0, 2)
            write_nirdata(record, traces, float(program.metadata.get("dt", 1.0)))
            result["record"] = str(record)
            _log(f"recorded {len(traces)} populations as NIRData -> {record}", log)
        arrays = {"float": flt.output_steps} if flt.output_steps is not None else {}
        for name_b, run in runs.items():
            if run.output_steps is not None:
                arrays[name_b] = run.output_steps
        np.savez_compressed(build_dir / f"outputs_{backend}.npz", **arrays)
        result["outputs_file"] = f"outputs_{backend}.npz"
    for name_b, run in runs.items():
        stats = dict(run.stats)
        if "layers" not in stats:  # Lava gives spikes; activity counts come from the reference
            continue
        stats["dataset"] = name
        _write_json(build_dir / f"activity_{name_b}.json", stats)
    _write_json(build_dir / f"simulation_{backend if not compare else 'compare'}.json", result)
    return result


def format_mismatches(per_pop: dict) -> str:
    width = max(len(k) for k in per_pop)
    lines = [f"{'population':<{width}}  spike mismatches (reference vs Lava; relays: payloads)"]
    lines += [f"{k:<{width}}  {v}" for k, v in per_pop.items()]
    lines.append(f"{'total':<{width}}  {sum(per_pop.values())}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- report

def make_report(build_dir: Path, fmt: str = "table", out: Path | None = None,
                backend: str = "reference", log=None) -> dict:
    """Price the simulated activity of a build with the target's energy tables."""
    from .report.energy import estimate_costs
    from .report.render import render_table, write_report
    from .targets import load_target

    build_dir = Path(build_dir)
    _, placement = _load_build(build_dir)
    act_path = build_dir / f"activity_{backend}.json"
    if not act_path.exists():
        raise InputFileError(f"{act_path}: no simulated activity; run `nmc-deploy simulate "
                             f"{build_dir} --backend reference` first")
    activity = json.loads(act_path.read_text())
    report = estimate_costs(activity, placement, load_target(placement["target"]))
    if out is not None:
        write_report(report, fmt, out)
        _log(f"report ({fmt}) -> {out}", log)
    elif fmt == "table":
        print(render_table(report))
    else:
        from .report.render import render_html, render_json

        print(render_json(report) if fmt == "json" else render_html(report))
    return report


# ------------------------------------------------------------------------------- demo

def run_demo(out_dir: Path, *, epochs: int | None = None, seed: int = 0, lava_samples: int = 50,
             target: str = "loihi2", log=None) -> dict:
    """train -> export -> compile -> simulate (reference: all test samples; Lava: a subset,
    compared spike for spike) -> report; writes ``summary.json``."""
    from .report.render import write_report

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, nir_path, build = out_dir / "model.pt", out_dir / "model.nir", out_dir / "build"
    _log("== train", log)
    meta = train_checkpoint(ckpt, epochs=epochs, seed=seed, log=log)
    _log("== export", log)
    export_checkpoint(ckpt, nir_path, log=log)
    _log("== compile", log)
    placement = compile_model(nir_path, target, build, log=log)
    _log(f"== simulate (Lava vs reference, first {lava_samples} test samples)", log)
    cmp = run_simulation(build, "lava", samples=lava_samples, compare=True, log=log)
    _log("== simulate (reference, full test split)", log)
    full = run_simulation(build, "reference", log=log)  # its activity feeds the report
    _log("== report", log)
    report = make_report(build, "table", out_dir / "report.txt", log=log)
    write_report(report, "html", out_dir / "report.html")
    write_report(report, "json", out_dir / "report.json")
    summary = {
        "accuracy_float": meta["accuracy_float"],
        "accuracy_float_graph": full["accuracy_float"],
        "accuracy_fixed_reference": full["accuracy_fixed_reference"],
        "accuracy_fixed_lava": cmp["accuracy_fixed_lava"],
        "accuracy_fixed_reference_on_lava_samples": cmp["accuracy_fixed_reference"],
        "test_samples": full["samples"],
        "lava_samples": cmp["samples"],
        "spike_mismatches_reference_vs_lava": cmp["spike_mismatches_reference_vs_lava"],
        "spikes_compared": cmp["spikes_compared"],
        "prediction_mismatches_reference_vs_lava": cmp["prediction_mismatches"],
        "cores_used": placement["cores_used"],
        "target": target,
        "neurons": placement["neurons"],
        "synapses": placement["synapses"],
        "energy_per_sample_uj": report["energy_per_sample_uj"],
        "latency_per_sample_us": report["latency_per_sample_us"],
        "train_seconds": meta["train_seconds"],
        "lava_seconds": cmp["seconds_lava"],
        "seconds_total": round(time.perf_counter() - t0, 1),
    }
    _write_json(out_dir / "summary.json", summary)
    _log(json.dumps(summary, indent=1), log)
    return summary
