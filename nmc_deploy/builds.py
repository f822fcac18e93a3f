"""Build directories: every file of a compiled program written in a temporary directory
next to the build and moved in only when all are written (no half-written builds; older
results and build files that do not belong to the new program are removed)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from .console import Result
from .errors import InputFileError
from .interrupts import deferred_signals

__all__ = ["BUILD_FILES", "build_target", "write_build", "compile_netx", "placement_rates", "format_layout",
           "traffic_record", "write_outputs", "write_neurobench_counts"]

BUILD_FILES = ("program.json", "program.npz", "placement.json", "design_rules.json",
               "target.json", "model.nir")


def _log(msg: str, log) -> None:  # as pipeline's: stderr (a Result: stdout) unless a logger is given
    (log or (lambda m: print(m, file=sys.stdout if isinstance(m, Result) else sys.stderr)))(msg)


def write_build(out_dir, result, summary, tgt, graph, nir_path, *, copy_nir: bool,
                 netx: bool) -> tuple:
    """Write a compiled build to ``out_dir`` (all files or none: written in a temporary
    directory next to it, then moved in); returns the extra files written (netx)."""
    from .compile.netx import NETX_FILE, write_netx
    from .fileio import write_json_atomic
    from .nirio import write_nir

    out_dir, tmp = _temp_build_dir(out_dir)
    try:
        extra = ()
        if netx:  # before anything moves: an inexpressible program writes nothing
            write_netx(result.program, tmp / NETX_FILE)
            extra = (NETX_FILE,)
        _write_program(tmp, result.program, summary, tgt)
        write_json_atomic(tmp / "design_rules.json", result.design_rules.to_json())
        if copy_nir and Path(nir_path).is_file():  # the graph as read: copy its file
            shutil.copyfile(nir_path, tmp / "model.nir")  # (re-writing Spikformer-8-512's
        else:  # graph held 3.4 GB more than compiling it); else as compiled: resolved timing,
            write_nir(graph, tmp / "model.nir")  # portable parts joined
        with deferred_signals():  # a signal waits until every file is in place
            _install_build(tmp, out_dir, BUILD_FILES + extra)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return extra


def _write_program(tmp: Path, program, summary: dict, tgt) -> None:
    """program.json/.npz, placement.json and target.json (the target compiled for, its TOML
    text included: report prices with it, a user's own .toml too, even once it is gone)."""
    from .fileio import write_json_atomic
    from .program import save_program
    from .targets import target_record

    save_program(program, tmp)
    write_json_atomic(tmp / "placement.json", summary)
    write_json_atomic(tmp / "target.json", target_record(tgt))


def build_target(build_dir, name: str):
    """The target a build was compiled for: the TOML text recorded in ``target.json``
    (:func:`~nmc_deploy.targets.load_target_record`); builds from before that record: the
    file it names, else the shipped target ``name``."""
    from .checks import read_json
    from .errors import NmcDeployError
    from .targets import load_target, load_target_record

    info = Path(build_dir) / "target.json"
    if not info.exists():
        return load_target(name)
    try:
        data = read_json(info, "compile the build again")
        path = Path(data["file"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{info}: unreadable target record ({type(exc).__name__}); "
                             "compile the build again") from None
    if "toml" in data:
        return load_target_record(data, str(info))
    if path.is_file():
        return load_target(path)
    try:
        return load_target(str(data.get("name", name)))
    except NmcDeployError:
        raise InputFileError(f"{build_dir}: target file '{path}' the build was compiled for is "
                             "gone; restore it or compile again with an existing --target") \
            from None


def _temp_build_dir(out_dir) -> tuple[Path, Path]:
    """``out_dir`` (checked) and a fresh temporary directory next to it."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"{out_dir}: exists and is not a directory; choose another -o")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir, Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))


def _install_build(tmp: Path, out_dir: Path, names: tuple) -> None:
    """Move the files ``names`` of ``tmp`` into ``out_dir``; every other build file and
    result there goes (they belong to an older program)."""
    from .compile.netx import NETX_FILE

    out_dir.mkdir(exist_ok=True)
    for pattern in ("activity_*.json", "simulation_*.json", "outputs_*.npz",
                    "op_counts_*.json", NETX_FILE, *BUILD_FILES):
        for stale in out_dir.glob(pattern):
            if stale.name not in names:
                stale.unlink()
    for name in names:
        os.replace(tmp / name, out_dir / name)


def compile_netx(path, target, out_dir, *, time_steps: int | None = None, log=None,
                 **layout) -> dict:
    """netx HDF5 -> core program directory (program.json/.npz, placement.json, target.json
    and the file itself as ``model.net.h5``): the file's fixed-point chain
    (:func:`~nmc_deploy.compile.netx.read_netx`) validated and placed on ``target``. The
    build has no float graph (``model.nir``): ``simulate`` runs the fixed-point program
    only. ``layout``: keywords of :func:`~nmc_deploy.compile.mesh.layout_cores`."""
    from .compile.netx import NETX_FILE, place_netx
    from .compile.partition import format_utilization
    from .targets import load_target

    tgt = load_target(target) if isinstance(target, str) else target
    program, summary = place_netx(path, tgt, time_steps=time_steps, **layout)
    out_dir, tmp = _temp_build_dir(out_dir)
    names = ("program.json", "program.npz", "placement.json", "target.json", NETX_FILE)
    try:
        _write_program(tmp, program, summary, tgt)
        shutil.copyfile(path, tmp / NETX_FILE)
        with deferred_signals():
            _install_build(tmp, out_dir, names)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kinds = list(program.metadata.get("netx_layers", ["dense"] * len(program.populations)))
    kinds = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds))
    _log(f"read {path} (netx): {len(program.populations)} CUBA layers ({kinds}), "
         f"{sum(p.size for p in program.populations)} neurons, {program.time_steps} steps "
         "per sample; fixed point as written (no float graph)", log)
    _log(Result(format_utilization(summary)), log)
    if format_layout(summary):
        _log(Result(format_layout(summary)), log)
    return summary


def placement_rates(method: str, rates, out_dir, log=None):
    """``(activity, source)`` whose firing rates weigh a traffic-aware layout: the file
    ``rates`` (an ``activity_<backend>.json``; ``"prior"``: none), else the reference
    activity a previous simulation left in ``out_dir``, else ``(None, None)`` (the prior
    rate is used)."""
    from .checks import read_json
    from .program.activity import Activity

    if method != "traffic":
        if rates is not None:
            _log(f"note: --rates is used by --placement traffic only; {rates} is not read",
                 log)
        return None, None
    if rates is not None and str(rates) == "prior":
        _log("placement: traffic-aware, messages weighed by the prior rate (--rates prior)", log)
        return None, None
    path = Path(rates) if rates is not None else Path(out_dir) / "activity_reference.json"
    if not path.exists():
        if rates is not None:
            raise InputFileError(f"{path}: no such activity file; give the "
                                 "activity_reference.json that `nmc-deploy simulate` wrote")
        _log("placement: traffic-aware, no simulation of this build yet: messages weighed by "
             "the prior rate (simulate, then compile again into the same directory to use "
             "measured rates)", log)
        return None, None
    try:
        data = read_json(path, "give the activity_reference.json that `nmc-deploy "
                         "simulate` wrote", what="activity file")
        activity = Activity.from_json(data if isinstance(data, dict) else {}, str(path))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not an activity file ({type(exc).__name__}); give the "
                             "activity_reference.json that `nmc-deploy simulate` wrote") from None
    from .publish import final_path

    _log(f"placement: traffic-aware, messages weighed by the measured rates of {path}", log)
    return activity, str(final_path(path))


def format_layout(summary: dict) -> str | None:
    """One line on the traffic-aware layout of ``placement.json`` (None for greedy)."""
    record = summary.get("placement") or {}
    est = record.get("estimates") or {}
    if record.get("method") != "traffic" or not {"greedy", "traffic"} <= set(est):
        return None
    g, t = est["greedy"], est["traffic"]
    change = (t["message_hops_per_step"] / g["message_hops_per_step"] - 1
              if g["message_hops_per_step"] else 0.0)
    return (f"placement traffic (seed {record['seed']}): expected message hops per step "
            f"{g['message_hops_per_step']:,.0f} (greedy) -> {t['message_hops_per_step']:,.0f} "
            f"({100 * change:+.1f} %), messages between chips {g['messages_between_chips_per_step']:,.0f}"
            f" -> {t['messages_between_chips_per_step']:,.0f}, longest route "
            f"{g['longest_route_hops']} -> {t['longest_route_hops']} hops, chips "
            f"{g['chips_used']} -> {t['chips_used']}{_balance_text(record)}; rates: "
            f"{record['rates']}")


def _balance_text(record: dict) -> str:
    b = record.get("balance") or {}
    if b.get("work_cap") is None:
        return ""
    (c0, c1), (w0, w1) = b["cores"], b["busiest_core_work_ns"]
    return (f"; per-core work balanced (cap {b['work_cap']:g} of the busiest core): cores "
            f"{c0} -> {c1}, busiest core {w0:,.0f} -> {w1:,.0f} ns per step (estimated)")


# ------------------------------------------------------------------ simulation results

def traffic_record(program, placement, run) -> dict | None:
    """The run's spike messages routed on the build's chips and tiles (None: a placement
    without chip assignment)."""
    from .compile.traffic import count_traffic, sender_events

    events, missing = sender_events(program, run)
    traffic = count_traffic(program, placement, events, missing)
    return None if traffic is None else traffic.to_json()


def write_outputs(build_dir, backend, runs, flt, record, program, result, log) -> None:
    """``--record`` NIRData and the per-step graph outputs ``outputs_<backend>.npz``."""
    import numpy as np

    from .fileio import atomic_path
    from .simulate.record import write_record

    main_run = runs.get(backend) or next(iter(runs.values()))
    if record is not None:
        n = write_record(record, main_run, float(program.metadata.get("dt", 1.0)))
        result["record"] = str(record)
        _log(Result(f"recorded {n} populations as NIRData -> {record}"), log)
    arrays = {"float": flt.output_steps} if flt is not None and flt.output_steps is not None \
        else {}
    for name_b, run in runs.items():
        if run.output_steps is not None:
            arrays[name_b] = run.output_steps
    with atomic_path(build_dir / f"outputs_{backend}.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    result["outputs_file"] = f"outputs_{backend}.npz"


def write_neurobench_counts(build_dir: Path, program, x, log, file_name: str) -> None:
    """NeuroBench-compatible counts of the build's checkpoint on the simulated samples ->
    ``file_name`` (``report.op_counts.NEUROBENCH_FILE``, which the report reads; removed
    without the checkpoint; docs/op-counts.md)."""
    from .fileio import write_json_atomic
    from .models.op_counts import count_checkpoint_ops

    from .publish import staged_path

    ckpt = program.metadata.get("checkpoint")  # (the demo's: still in its staging directory)
    counts = count_checkpoint_ops(ckpt and str(staged_path(ckpt)), x, program.input_levels)
    if counts is None:
        (build_dir / file_name).unlink(missing_ok=True)  # no counts of another run
        return
    counts["checkpoint"] = str(ckpt)  # by its published name
    write_json_atomic(build_dir / file_name, counts)
    _log(f"NeuroBench-compatible counts (float model): {counts['Effective_ACs']:,.0f} ACs + "
         f"{counts['Effective_MACs']:,.0f} MACs per sample -> {file_name}", log)
