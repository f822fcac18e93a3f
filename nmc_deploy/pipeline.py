"""The stages as functions: each reads the previous stage's file and writes its own.

The CLI (``nmc_deploy.cli``) is a thin layer over these. Heavy imports (torch, nir, lava)
happen inside the functions that need them.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from .checks import read_json, stage_options
from .console import Result, as_diagnostics, count_hidden, show_caught
from .errors import InputFileError
from .fileio import write_json_atomic
from .publish import consistent, final_path, publishes

__all__ = ["train_checkpoint", "prune_checkpoint", "export_checkpoint", "compile_model",
           "run_simulation", "make_report", "run_demo", "BUILD_FILES", "PRUNE_METHODS"]

from .prune.request import PRUNE_METHODS  # noqa: E402  (plain Python, no torch)

from .builds import (BUILD_FILES, build_target, compile_netx,  # noqa: E402,F401
                     traffic_record, write_build, write_neurobench_counts,
                     write_outputs)  # (BUILD_FILES re-exported)


def _log(msg: str, log: Callable[[str], None] | None) -> None:
    """A diagnostic, or with ``msg`` a :class:`~.console.Result` part of the stage's result
    (the CLI routes the two: stdout and stderr; docs/console.md)."""
    (log or (lambda m: print(m, file=sys.stdout if isinstance(m, Result) else sys.stderr)))(msg)


# ------------------------------------------------------------------------------ train

@publishes("out", kind="file")
def train_checkpoint(out: Path, *, preset: str = "digits", dataset: str = "digits",
                     data_path: Path | None = None, epochs: int | None = None, seed: int = 0,
                     progress: bool = True, log=None) -> dict:
    """Train a preset on a data set and write a checkpoint; returns its metadata."""
    from .data import load_dataset
    from .models.checkpoint import save_checkpoint
    from .models.spikformer import preset_config
    from .models.train import DEFAULT_EPOCHS, evaluate_model, train_model

    stage_options(epochs=epochs, out=out, where="train")
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
    _log(Result(f"trained {preset} on {dataset}: float test accuracy {acc:.4f} "
                f"({epochs} epochs, {seconds:.0f} s) -> {out}"), log)
    return meta


# ------------------------------------------------------------------------------ prune

@publishes("out", kind="file", inputs=("ckpt",))
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
    Arguments are checked before any work (:class:`~nmc_deploy.prune.request.PruneRequest`),
    so a bad request writes nothing. LTH rounds are resumable through ``state_dir``
    (default: ``<out>.lth/``).
    """
    from .prune.request import PruneRequest

    request = PruneRequest(method=method, sparsity=sparsity, rank_budget=rank_budget,
                           energy=energy, slif=slif, epochs=epochs, rounds=rounds, seed=seed,
                           token_keep=token_keep, token_blocks=token_blocks,
                           token_epochs=token_epochs)
    from .data import load_dataset
    from .models.checkpoint import load_checkpoint, save_checkpoint
    from .prune.run import check_prunable, run_prune

    stage_options(out=out, inputs=(ckpt,), where="prune")
    model, meta = load_checkpoint(ckpt)
    check_prunable(model, request, str(ckpt))
    data = load_dataset(meta.get("dataset", "digits"), data_path)
    pruned, summary = run_prune(model, data, request,
                                state_dir=state_dir or Path(str(out) + ".lth"),
                                progress=progress, log=lambda m: _log(m, log))
    before, after = summary["before"], summary["after"]
    save_checkpoint(out, pruned, {**{k: v for k, v in meta.items() if k != "history"},
                                  "accuracy_float": after["accuracy_float"],
                                  "pruning": {k: v for k, v in summary.items() if k != "log"}})
    _log(Result(f"{method}{' + sLIF' if slif else ''}: params {before['params']} -> "
                f"{after['params']}, nonzeros {before['nonzeros']} -> {after['nonzeros']}, "
                f"float accuracy {before['accuracy_float']:.4f} -> "
                f"{after['accuracy_float']:.4f} -> {out}"), log)
    return summary


# ----------------------------------------------------------------------------- export

@publishes("out", kind=lambda a: "dir" if a["portable"] else "file", inputs=("ckpt",),
            emit=lambda m, lg: _log(m, lg))
def export_checkpoint(ckpt: Path, out: Path, log=None, portable: bool = False) -> dict:
    """Checkpoint -> NIR file (BatchNorm folded; attention as our extension node).

    ``portable``: a directory with standard NIR only (graph.nir), the extension ops in a
    manifest (:func:`~nmc_deploy.nirio.write_portable`); `compile` reads it back.
    """
    from .export.spikformer import export_spikformer
    from .nirio import write_nir, write_portable
    from .models.checkpoint import load_checkpoint

    stage_options(out=out, inputs=(ckpt,), directory=portable, where="export")
    model, meta = load_checkpoint(ckpt)
    graph = export_spikformer(model, {
        "dataset": meta.get("dataset", "digits"),
        "input_levels": int(meta.get("input_levels", 16)),
        "accuracy_float": meta.get("accuracy_float"),
        "checkpoint": str(final_path(ckpt))})  # (the demo's, by its published name)
    if portable:
        write_portable(graph, out)
    else:
        write_nir(graph, out)
    _log(Result(f"exported {len(graph.nodes)} nodes, {len(graph.edges)} edges -> {out}"
                + (" (standard NIR + manifest)" if portable else "")), log)
    return {"nodes": len(graph.nodes), "edges": len(graph.edges)}


# ---------------------------------------------------------------------------- compile

def _log_compile_report(result, summary: dict, attention_split: str, log) -> None:
    """The compile report: design rules, per-core utilization, chips used and what binds each,
    attention units, both weight storage modes and both low-rank forms (those the program
    has)."""
    from .compile.chips import format_chips
    from .compile.partition import format_utilization
    from .compile.preflight import format_design_rules
    from .compile.recipe import (format_attention_units, format_low_rank_forms,
                                 format_residual_forms, format_weight_sharing)

    _log(Result(format_design_rules(result.design_rules)), log)
    _log(Result(format_utilization(summary)), log)
    if "system" in summary:
        _log(Result(format_chips(summary)), log)
    if result.program.attention:
        _log(Result(format_attention_units(result.program, attention_split)), log)
    if "weight_sharing" in summary:
        _log(Result(format_weight_sharing(summary["weight_sharing"])), log)
    if "low_rank" in summary:
        _log(Result(format_low_rank_forms(summary["low_rank"])), log)
    if "residual" in summary:
        _log(Result(format_residual_forms(summary["residual"])), log)


def _check_compile_options(low_rank, residual, weight_sharing, attention_split, emit,
                           placement, seed=0) -> None:
    """One-line errors for compile options outside their choices (the API's callers)."""
    from .compile.mesh import PLACEMENTS
    from .errors import NmcDeployError
    from .program import ATTENTION_SPLITS, LOW_RANK_MODES, RESIDUAL_MODES

    if low_rank not in LOW_RANK_MODES:
        raise NmcDeployError(f"compile: low-rank form '{low_rank}' is not one of "
                             f"{', '.join(LOW_RANK_MODES)}")
    if residual not in RESIDUAL_MODES:
        raise NmcDeployError(f"compile: residual form '{residual}' is not one of "
                             f"{', '.join(RESIDUAL_MODES)}")
    if weight_sharing not in (None, "on", "off"):
        raise NmcDeployError(f"compile: weight sharing '{weight_sharing}' is not one of on, off")
    if attention_split not in ATTENTION_SPLITS:
        raise NmcDeployError(f"compile: attention split '{attention_split}' is not one of "
                             f"{', '.join(ATTENTION_SPLITS)}")
    unknown = sorted(set(emit) - {"netx"})
    if unknown:
        raise NmcDeployError(f"compile: format '{unknown[0]}' to emit is not one of netx")
    if placement not in PLACEMENTS:
        raise NmcDeployError(f"compile: placement '{placement}' is not one of "
                             f"{', '.join(PLACEMENTS)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise NmcDeployError(f"compile: seed ({seed}) must be a non-negative integer")


def _apply_conventions(graph, log, **args):
    """``(graph, timing)``: the graph with the resolved timing and spike rule in its
    metadata, or ``(graph, None)`` unchanged when no argument is given and the file has a
    dt (lower_graph reads its metadata); logs the timing and what was assumed."""
    from .ir.conventions import apply_timing, assumed_reset, resolve_timing, spike_rule_text

    if all(v is None for v in args.values()) and "dt" in graph.metadata:
        return graph, None
    timing = resolve_timing(graph, **args)
    rule = f", {spike_rule_text(timing)}" if (timing.spike_fn != "single" or timing.min_v_mem
                                              is not None) and not assumed_reset(timing) else ""
    _log(f"timing: dt {timing.dt:g} s, {timing.integrator}, reset {timing.reset}, "
         f"threshold {timing.threshold_comparison}{rule} ({timing.source})", log)
    if assumed_reset(timing):
        _log(assumed_reset(timing), log)
    return apply_timing(graph, timing), timing


@publishes("out_dir", inputs=("nir_path",), emit=lambda m, lg: _log(m, lg))
def compile_model(nir_path: Path, target: str, out_dir: Path, *, vth_mant: int | None = None,
                  low_rank: str = "fused", emit: tuple[str, ...] = (), dt: float | None = None,
                  convention: str | None = None, reset: str | None = None,
                  spikes: str | None = None, v_min: str | None = None,
                  weight_sharing: str | None = None, attention_split: str = "fit",
                  residual: str = "fan-in", time_steps: int | None = None,
                  placement: str = "greedy", seed: int = 0, rates: Path | None = None,
                  log=None) -> dict:
    """NIR -> core program directory (program.json/.npz, placement.json, model.nir); a
    lava-dl netx file goes to :func:`compile_netx` (``time_steps`` per sample when the
    file does not say).

    The compilation itself is :func:`~nmc_deploy.compile.recipe.compile_graph`. ``low_rank``
    ("fused" or "relay") chooses how low-rank factor pairs deploy
    (:func:`~nmc_deploy.compile.lower.lower_graph`). When the graph has such pairs, the other
    form is compiled too, only for the report: ``placement.json`` gets ``low_rank`` with the
    synapses, synapse memory, cores, neurons and pipeline depth of both forms.

    ``weight_sharing`` ("on", "off"; default the target's ``weight_sharing``): whether
    shared weights (token-parallel layers, convolutions) are stored once per core or once
    per token/position; with shared weights, ``placement.json`` gets ``weight_sharing`` with
    the cores and synapse memory of both answers.

    ``residual`` ("fan-in", "relay"): how the residual stream reaches the layers that read
    it: one synapse group per stream population, or one graded relay population per stream
    (needs the target's graded spikes); with a stream, ``placement.json`` gets ``residual``
    with the synapses, cores, groups, largest out-degree and pipeline depth of both forms.

    ``attention_split`` ("fit", "head"): how attention ops split into core-sized units
    (:func:`~nmc_deploy.compile.attention_split.split_attention`): as few units of whole
    heads as fit, or one unit (or more) per head.

    ``dt`` (seconds) and ``convention`` (a tool name of
    :data:`~nmc_deploy.ir.conventions.CONVENTIONS`) decide the discretisation of graphs from
    other tools; they win over the graph's metadata (:func:`~nmc_deploy.ir.conventions.
    resolve_timing`), and the resolved values are written into the build's metadata.
    ``reset``, ``spikes`` ("single", "multi": floor(v/theta) spikes per step as a graded
    payload) and ``v_min`` (the clamp ``min_v_mem``: a number, "none", "-theta") override
    the convention's and the file's rules.

    ``placement`` ("greedy", "traffic"): how the cores are laid out on the chips' meshes
    (:func:`~nmc_deploy.compile.mesh.layout_cores`; ``seed`` seeds the traffic-aware
    search, whose message weights are the firing rates of ``rates`` (an activity file), of
    the reference activity already in ``out_dir``, or a prior: :func:`~.builds.
    placement_rates`).

    ``emit`` names extra formats of the program: "netx" quantizes onto netx's grid
    (:data:`~nmc_deploy.compile.netx.NETX_GRID`: weight_exp 0, biases in multiples of 64) and
    also writes ``model.net.h5`` for lava-dl's ``netx.hdf5.Network``
    (:func:`~nmc_deploy.compile.netx.write_netx`; a program netx cannot express fails the
    whole compilation, and nothing is written).

    Everything is written to a temporary directory first and moved into ``out_dir`` only
    when the whole compilation succeeded.
    """
    from .compile.lower import low_rank_down_nodes
    from .compile.recipe import compile_graph
    from .errors import NmcDeployError
    from .nirio import read_nir, read_portable
    from .targets import load_target

    _check_compile_options(low_rank, residual, weight_sharing, attention_split, emit,
                           placement, seed)
    stage_options(dt=dt, vth_mant=vth_mant, out=out_dir, inputs=(nir_path,), directory=True)
    tgt = load_target(target)
    from .builds import format_layout, placement_rates
    from .compile.netx import is_netx_file

    activity, source = placement_rates(placement, rates, out_dir, log)

    if is_netx_file(nir_path):  # lava-dl's netx HDF5: the file is the fixed-point program
        return compile_netx(nir_path, tgt, out_dir, time_steps=time_steps, log=log,
                            method=placement, seed=seed, activity=activity,
                            activity_source=source)
    # a directory is a portable export: standard NIR + manifest
    graph = read_portable(nir_path) if Path(nir_path).is_dir() else read_nir(nir_path)
    graph, timing = _apply_conventions(graph, log, dt=dt, convention=convention, reset=reset,
                               spikes=spikes, v_min=v_min)
    pairs = low_rank_down_nodes(graph)
    if pairs and low_rank == "relay" and tgt.graded_spike_bits == 0:
        raise NmcDeployError(f"{nir_path}: {len(pairs)} low-rank relays need graded spikes, "
                             f"but target {tgt.name} has none (graded_spike_bits 0); compile "
                             "with --low-rank fused")
    if residual == "relay" and tgt.graded_spike_bits == 0:
        raise NmcDeployError(f"{nir_path}: residual relays need graded spikes, but target "
                             f"{tgt.name} has none (graded_spike_bits 0); compile with "
                             "--residual fan-in")
    _log(f"compiling {nir_path} ({len(graph.nodes)} nodes, low-rank factors {low_rank}, "
         f"residual {residual}): design rules first, then lowering", log)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compile_graph(graph, tgt, low_rank=low_rank, vth_mant=vth_mant,
                               netx_grid="netx" in emit, timing=timing,
                               weight_sharing=None if weight_sharing is None
                               else weight_sharing == "on", attention_split=attention_split,
                               residual=residual, placement=placement, placement_seed=seed,
                               activity=activity, activity_source=source)
    show_caught(caught, lambda m: _log(m, log))  # third-party ones: counted by the CLI
    from .compile.scale import scale_line
    _log(scale_line(result.program.metadata.get("quantization", {})), log)
    summary = result.summary()
    if not pairs and low_rank != "fused":
        _log(f"note: {nir_path} has no low-rank factors; --low-rank {low_rank} changes nothing",
             log)
    extra = write_build(out_dir, result, summary, tgt, graph, nir_path,
                         copy_nir=timing is None, netx="netx" in emit)
    _log_compile_report(result, summary, attention_split, log)
    if format_layout(summary):
        _log(Result(format_layout(summary)), log)
    for name in extra:
        _log(Result(f"wrote {Path(out_dir) / name} (netx.hdf5.Network; docs/architecture.md, "
                    "netx export)"), log)
    return summary


# --------------------------------------------------------------------------- simulate

def _load_build(build_dir: Path):
    """The program of a build directory and its placement summary (both typed)."""
    from .program import load_placement_summary, load_program

    return load_program(build_dir), load_placement_summary(build_dir)


def _run_backends(program, x, y, backend: str, compare: bool, result: dict, log,
                  membranes: bool = False) -> dict:
    """Run the reference and/or Lava on ``x``; accuracies and seconds go into ``result``
    (the accuracies are printed once, in the fidelity summary)."""
    from .simulate.reference import accuracy, simulate_reference

    runs = {}
    if backend == "reference" or compare:
        t0 = time.perf_counter()
        ref = simulate_reference(program, x, membranes=membranes)
        if program.token_selects:  # the counterfactual: every token kept
            full = simulate_reference(program, x, record=False, token_selection=False)
            ref.stats["synops_without_token_selection"] = int(
                sum(e["synops"] for e in full.stats["layers"]))
        runs["reference"] = ref
        result["accuracy_fixed_reference"] = accuracy(ref, y) if y is not None else None
        result["seconds_reference"] = round(time.perf_counter() - t0, 2)
        from .simulate.overflow import overflow_lines
        for line in overflow_lines(program, ref.stats):
            _log(line, log)
    if backend == "lava" or compare:
        from .simulate.lava.supervise import simulate_lava

        n_proc = len(program.populations) * 2 + len(program.groups) + 1
        _log(f"running Lava: ~{n_proc} processes, "
             f"{len(x) * program.time_steps + program.pipeline_depth}+ steps on "
             "Loihi2SimCfg(fixed_pt) ...", log)
        t1 = time.perf_counter()
        lav = simulate_lava(program, x)
        count_hidden(lav.stats.get("warnings_silenced", 0))  # the child's, for the CLI's line
        runs["lava"] = lav
        result["accuracy_fixed_lava"] = accuracy(lav, y) if y is not None else None
        result["seconds_lava"] = round(time.perf_counter() - t1, 2)
        _log(f"fixed point (Lava): {result['seconds_lava']:.1f} s", log)
    return runs


@publishes("build_dir", update=True, paths=("record",), emit=lambda m, lg: _log(m, lg))
def run_simulation(build_dir: Path, backend: str = "reference", *, samples: int | None = None,
                   compare: bool = False, dataset: str | None = None,
                   data_path: Path | None = None, inputs: Path | None = None,
                   record: Path | None = None, labels: Path | None = None,
                   log=None) -> dict:
    """Simulate the compiled program on the test split; writes ``activity_<backend>.json``.

    ``backend`` is "reference" or "lava"; ``compare`` runs both on the same samples and counts
    spike mismatches per population. Returns accuracies and mismatch counts.
    ``inputs``: a user input file instead of the data set
    (:func:`~nmc_deploy.simulate.inputs.load_user_inputs`; no accuracies then); the per-step
    graph outputs go to ``outputs_<backend>.npz``.
    ``record``: write every population's per-step output (spikes, LI voltages) as NIRData.
    ``labels``: a ``.npy`` of integer labels for ``inputs``, or a NIRData file with a
    "labels" node (a NIRData ``inputs`` file's own "labels" node is used without it).
    Always prints the fidelity summary (:func:`~nmc_deploy.simulate.fidelity.fidelity_summary`:
    per population float-vs-fixed and reference-vs-Lava mismatches, output agreement) and
    writes it into ``simulation_<backend>.json`` (``fidelity``).
    """
    from .compile.lower import lower_graph
    from .nirio import read_nir
    from .simulate.compare import compare_runs
    from .simulate.fidelity import (fidelity_summary, format_fidelity, keep_membranes,
                                    per_neuron_membranes, snntorch_double_reset_lines)
    from .simulate.inputs import check_outputs, simulation_inputs
    from .simulate.reference import accuracy, simulate_float

    build_dir = Path(build_dir)
    program, placement = _load_build(build_dir)
    record = check_outputs(build_dir, record, (inputs, labels))  # before any work
    x, y, name = simulation_inputs(program, inputs, samples, dataset, data_path, labels,
                                   log=lambda m: _log(m, log))
    result = {"dataset": name, "samples": int(len(x)), "backend": backend}
    flt = None
    if (build_dir / "model.nir").exists():
        fp = lower_graph(read_nir(build_dir / "model.nir"),
                         low_rank=program.metadata.get("low_rank", "fused"),
                         residual=program.metadata.get("residual", "fan-in"))
        flt = simulate_float(fp, x, membranes=keep_membranes(program, x))
        if fp.metadata.get("reset") == "subtract" and "snntorch" in str(
                fp.metadata.get("timing_source", "")):
            for line in snntorch_double_reset_lines(fp, flt):
                _log(line, log)
    else:  # a netx build: the file is fixed point, there is no float graph
        _log("float: none (the build comes from a netx file, fixed point only)", log)
    result["accuracy_float"] = accuracy(flt, y) if y is not None and flt is not None else None
    runs = _run_backends(program, x, y, backend, compare, result, log,
                         membranes=flt is not None and bool(flt.membranes))
    from .report.op_counts import NEUROBENCH_FILE

    if "reference" in runs and inputs is None and flt is not None:
        write_neurobench_counts(build_dir, program, x, log, NEUROBENCH_FILE)
    else:  # counts of another run must not price this one
        (build_dir / NEUROBENCH_FILE).unlink(missing_ok=True)
    if compare:
        result.update(compare_runs(runs["reference"], runs["lava"]))
        if "token_choice_mismatches" in result:
            _log(Result(f"token choices (reference vs Lava): "
                        f"{result['token_choice_mismatches']} mismatches"), log)
    fixed_name = "reference" if "reference" in runs else "Lava"
    if flt is not None and "reference" in runs and runs["reference"].membranes:
        runs["reference"].membranes = per_neuron_membranes(runs["reference"].membranes,
                                                           program, fp)
    result["fidelity"] = fidelity_summary(flt, runs.get("reference") or runs["lava"],
                                          runs.get("lava") if compare else None, y, program)
    _log(Result(format_fidelity(result["fidelity"], fixed_name)), log)
    if inputs is not None or record is not None:
        write_outputs(build_dir, backend, runs, flt, record, program, result, log)
        _log(Result(f"per-step graph outputs -> {build_dir / result['outputs_file']}"), log)
    for name_b, run in runs.items():
        stats = dict(run.stats)
        if "layers" not in stats:  # Lava gives spikes; activity counts come from the reference
            continue
        stats["dataset"] = name
        traffic = traffic_record(program, placement, run)
        if traffic is not None:
            stats["traffic"] = traffic
        write_json_atomic(build_dir / f"activity_{name_b}.json", stats)
    summary_file = build_dir / f"simulation_{backend if not compare else 'compare'}.json"
    write_json_atomic(summary_file, result)
    _log(Result(f"summary -> {summary_file}"), log)
    return result


# ----------------------------------------------------------------------------- report

@publishes("out", kind="file", inputs=("build_dir",))
def make_report(build_dir: Path, fmt: str = "table", out: Path | None = None,
                backend: str = "reference", log=None) -> dict:
    """Price the simulated activity of a build with the target's energy tables."""
    from .program import load_activity
    from .report.energy import estimate_costs
    from .report.op_counts import NEUROBENCH_FILE
    from .report.render import render_table, write_report
    from .targets import load_target

    build_dir = Path(build_dir)

    def price() -> dict:  # read again if a compile or simulate published meanwhile
        _, placement = _load_build(build_dir)
        stage_options(out=out, inputs=tuple(build_dir.iterdir()), where="report")
        activity = load_activity(build_dir, backend)
        nb_path = build_dir / NEUROBENCH_FILE
        neurobench = read_json(nb_path, "simulate again") if nb_path.exists() else None
        report = estimate_costs(activity, placement, build_target(build_dir, placement.target),
                                neurobench=neurobench)
        report.update(_deployment(build_dir, activity))
        return report

    report = consistent(build_dir, price)
    if out is not None:
        write_report(report, fmt, out)
        _log(Result(f"report ({fmt}) -> {out}"), log)
    elif fmt == "table":
        _log(Result(render_table(report)), log)
    else:
        from .report.render import render_html, render_json

        _log(Result(render_json(report) if fmt == "json" else render_html(report)), log)
    return report


def _deployment(build_dir: Path, activity) -> dict:
    """The report's verdict, fidelity, utilization, traffic matrix and placement sections from
    the build's records (``placement.json``, ``simulation_*.json``, ``design_rules.json``)."""
    from .report.deployment import RUNS, deployment_sections

    def read(name: str) -> dict | None:
        path = build_dir / name
        if not path.exists():
            return None
        try:
            data = read_json(path, "run the stage that writes it again")
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{path}: unreadable ({type(exc).__name__}); run the stage "
                                 "that writes it again") from None
        if not isinstance(data, dict):
            raise InputFileError(f"{path}: not a JSON object; run the stage that writes it again")
        return data

    sims = {run: d for run in RUNS if (d := read(f"simulation_{run}.json")) is not None}
    pairs = activity.traffic.core_pairs if activity.traffic is not None else None
    return deployment_sections(read("placement.json") or {}, sims,
                               None if pairs is None else pairs.to_json(),
                               samples=activity.samples, time_steps=activity.time_steps,
                               design_rules=read("design_rules.json"))


# ------------------------------------------------------------------------------- demo

@publishes("out_dir", option="--out", emit=lambda m, lg: _log(m, lg))
def run_demo(out_dir: Path, *, epochs: int | None = None, seed: int = 0, lava_samples: int = 50,
             target: str = "loihi2", log=None) -> dict:
    """train -> export -> compile -> simulate (reference: all test samples; Lava: a subset,
    compared spike for spike) -> report; writes ``summary.json``."""
    from .report.render import write_report
    from .targets import load_target

    t0 = time.perf_counter()
    stage_options(epochs=epochs, lava_samples=lava_samples, out=out_dir, directory=True,
                  where="demo")
    load_target(target)  # before training: an unknown target costs nothing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, nir_path, build = out_dir / "model.pt", out_dir / "model.nir", out_dir / "build"
    log, result_log = as_diagnostics(log), log  # the stages' tables are the demo's diagnostics
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
    write_json_atomic(out_dir / "summary.json", summary)
    _log(Result(json.dumps(summary, indent=1)), result_log)
    return summary
