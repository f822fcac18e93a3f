"""``nmc-deploy``: one command per stage. Imports of torch, nir and lava happen inside the
commands, so ``--help`` is instant. User errors print one line and exit 1; ``--debug``
shows the traceback instead. Results go to standard output, diagnostics to standard error
(``--quiet``, ``--verbose``, ``--json``: :mod:`nmc_deploy.console`, docs/console.md)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import interrupts
from .console import NORMAL, QUIET, VERBOSE, Console
from .errors import NmcDeployError
from .interrupts import Interrupted

EXISTING_FILE = click.Path(path_type=Path)  # existence is checked by the stages (one-line errors)
TARGET_HELP = ("Names a hardware target in hw_targets/ - a chip (loihi1, loihi2) or a system "
               "of chips (kapoho_point: 8 x loihi2, hala_point: 1,152 x loihi2, nahuku32: "
               "32 x loihi1, pohoiki_springs: 768 x loihi1) - or gives a .toml path.")


class _State:
    debug = False
    level = NORMAL  # the group's --quiet / --verbose


def _level(quiet: bool, verbose: bool, default: int) -> int:
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    return QUIET if quiet else VERBOSE if verbose else default


QUIET_HELP = "Prints only the result and errors (no progress, notes or warnings)."
VERBOSE_HELP = ("Also prints the third-party warnings known to be harmless (hidden and counted "
                "by default), progress bars when not on a terminal, and the run time.")


def console_options(command):
    """``--quiet``, ``--verbose`` and ``--json`` of a command (also global: before it)."""
    command = click.option("--json", "as_json", is_flag=True,
                           help="Prints the result as one JSON document on standard output "
                                "(diagnostics stay on standard error).")(command)
    command = click.option("-v", "--verbose", is_flag=True, help=VERBOSE_HELP)(command)
    return click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)(command)


def _run(options: dict, stage, record=None):
    """Run ``stage(log)`` with a :class:`~.console.Console`: results to stdout, diagnostics to
    stderr; with ``--json``, ``record(value)`` (default: the stage's dict) as JSON."""
    import time

    console = Console(_level(options["quiet"], options["verbose"], _State.level),
                      options["as_json"])
    t0 = time.perf_counter()
    with console.session():
        value = stage(console.log)
        if console.level >= VERBOSE:
            console.log(f"done in {time.perf_counter() - t0:.1f} s")
    if console.as_json:
        console.emit_json(record(value) if record is not None else value)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"],
                               "auto_envvar_prefix": "NMC_DEPLOY"})
@click.option("--debug", is_flag=True, help="Shows the full traceback on errors.")
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP + " Also per command.")
@click.option("-v", "--verbose", is_flag=True, help=VERBOSE_HELP + " Also per command.")
@click.version_option(package_name="nmc-deploy")
def cli(debug: bool, quiet: bool, verbose: bool):
    """Deploys spiking transformers onto Loihi-style cores: does it fit, does it compute the
    same in fixed point, what does it cost.

    Stages: train [-> prune] -> export -> compile -> simulate -> report (or: demo).
    """
    _State.debug = debug
    _State.level = _level(quiet, verbose, NORMAL)


@cli.command()
@click.option("--preset", default="digits", show_default=True, help="Names the model preset.")
@click.option("--dataset", default="digits", show_default=True, help="Names the data set.")
@click.option("--data-path", type=click.Path(path_type=Path), default=None,
              help="Points to the files of a data set that reads user files.")
@click.option("--epochs", type=int, default=None, help="Sets the number of epochs (default: per preset).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds all random numbers.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("model.pt"),
              show_default=True, help="Names the checkpoint file to write.")
@console_options
def train(preset, dataset, data_path, epochs, seed, out, **console):
    """Trains a Spikformer preset and writes a checkpoint."""
    from .pipeline import train_checkpoint

    _run(console, lambda log: train_checkpoint(
        out, preset=preset, dataset=dataset, data_path=data_path, epochs=epochs, seed=seed,
        log=log), lambda meta: {"out": str(out), **meta})


@cli.command()
@click.argument("checkpoint", type=EXISTING_FILE)
@click.option("--method", required=True,
              help="Chooses the method: lth, l1p, dsp, or none (token selection only).")
@click.option("--sparsity", type=float, default=None,
              help="Sets the fraction of weights to remove (lth, l1p; default 0.9).")
@click.option("--rank-budget", type=float, default=None,
              help="Sets DSP's parameter budget as a fraction of the dense block parameters.")
@click.option("--slif", is_flag=True, help="Replaces the blocks' LIF neurons by sLIF first.")
@click.option("--epochs", type=int, default=5, show_default=True,
              help="Sets fine-tuning epochs (per round for lth).")
@click.option("--rounds", type=int, default=None, help="Sets the number of LTH rounds.")
@click.option("--token-keep", type=float, default=None,
              help="Adds token selectors: the p-th keeps floor(N r**p) tokens (0 < r < 1).")
@click.option("--token-blocks", default=None,
              help="Names the blocks that get a selector, e.g. '1,2' (default: every block).")
@click.option("--token-epochs", type=int, default=10, show_default=True,
              help="Sets the token-selector training epochs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds all random numbers.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("pruned.pt"),
              show_default=True, help="Names the pruned checkpoint to write.")
@console_options
def prune(checkpoint, method, sparsity, rank_budget, slif, epochs, rounds, token_keep,
          token_blocks, token_epochs, seed, out, **console):
    """Prunes a trained checkpoint (LTH rounds resume from OUT.lth/ when interrupted)."""
    from .pipeline import prune_checkpoint

    _run(console, lambda log: prune_checkpoint(
        checkpoint, out, method=method, sparsity=sparsity, rank_budget=rank_budget, slif=slif,
        epochs=epochs, rounds=rounds, seed=seed, token_keep=token_keep,
        token_blocks=token_blocks, token_epochs=token_epochs, log=log),
        lambda summary: {"out": str(out), **summary})


@cli.command()
@click.argument("checkpoint", type=EXISTING_FILE)
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("model.nir"),
              show_default=True, help="Names the NIR file (or, with --portable, directory).")
@click.option("--portable", is_flag=True,
              help="Writes standard NIR only: OUT/graph.nir plus a manifest of the extension "
                   "ops (attention, token selection) that join its parts.")
@console_options
def export(checkpoint, out, portable, **console):
    """Exports a checkpoint to NIR (BatchNorm folded; attention as an extension node)."""
    from .pipeline import export_checkpoint

    _run(console, lambda log: export_checkpoint(checkpoint, out, log=log, portable=portable),
         lambda counts: {"out": str(out), **counts})


@cli.command(name="compile")
@click.argument("model", type=EXISTING_FILE)
@click.option("--target", default="loihi2", show_default=True, help=TARGET_HELP)
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("build"),
              show_default=True, help="Names the output directory.")
@click.option("--vth-mant", type=int, default=None,
              help="Overrides the threshold mantissa of every spiking population (default: "
                   "chosen per population, at most 1023, so that no current wraps; "
                   "docs/quantization.md).")
@click.option("--low-rank", type=click.Choice(["fused", "relay"]), default="fused",
              show_default=True,
              help="Chooses how low-rank (DSP) factor pairs deploy: re-multiplied into one "
                   "matrix, or two synaptic stages through a graded relay population "
                   "(needs graded spikes).")
@click.option("--residual", type=click.Choice(["fan-in", "relay"]), default="fan-in",
              show_default=True,
              help="Chooses how the residual stream reaches later layers: one synapse group "
                   "per stream population, or one graded relay population per stream (needs "
                   "graded spikes). Both forms' costs are reported.")
@click.option("--weight-sharing", type=click.Choice(["on", "off"]), default=None,
              help="Stores token-parallel and convolution weights once per core (on) or once "
                   "per token/position (off); default: the target's. Both answers are "
                   "reported.")
@click.option("--attention-split", type=click.Choice(["fit", "head"]), default="fit",
              show_default=True,
              help="Splits spiking self-attention into core-sized units: whole heads packed "
                   "as they fit, or one unit per head (query/key blocks when a head exceeds "
                   "a core).")
@click.option("--dt", type=float, default=None,
              help="Sets the time step in seconds (graphs from other tools often carry none).")
@click.option("--convention", default=None,
              help="Reads the graph in another tool's conventions (dt, integrator, reset): "
                   "snntorch, sinabs, norse, norse-1.1 (files of norse 1.1.0), rockpool, "
                   "spikingjelly or nmc-deploy.")
@click.option("--reset", default=None,
              type=click.Choice(["zero", "subtract", "zero-delayed", "subtract-delayed"]),
              help="Overrides the reset rule of the convention or the file ('-delayed': "
                   "the reset of a spike applies in the next step, snnTorch's reset_delay).")
@click.option("--spikes", default=None, type=click.Choice(["single", "multi"]),
              help="Overrides the spike rule of the convention or the file: one spike per "
                   "step, or floor(v/theta) per step as a graded payload (sinabs' MultiSpike, "
                   "rockpool's LIFTorch; Loihi 2).")
@click.option("--v-min", "v_min", default=None, metavar="none|-theta|VALUE",
              help="Overrides the clamp of v from below after the reset (sinabs' min_v_mem): "
                   "none, -theta (minus each neuron's threshold) or a number <= 0.")
@click.option("--emit", type=click.Choice(["netx"]), multiple=True,
              help="Also writes the program in another format: netx (lava-dl HDF5, "
                   "OUT/model.net.h5; fails for programs netx cannot express).")
@click.option("--time-steps", type=click.IntRange(min=1), default=None,
              help="Sets the time steps per sample of a lava-dl netx file that does not "
                   "say them.")
@click.option("--placement", type=click.Choice(["greedy", "traffic"]), default="greedy",
              show_default=True,
              help="Lays the cores out on the chips' meshes: in program order (greedy), or "
                   "to reduce messages x hops (traffic; slower; uses the firing rates of "
                   "--rates or of OUT's previous simulation, else a prior).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds the traffic-aware layout (same seed, same layout).")
@click.option("--rates", type=click.Path(path_type=Path), default=None,
              help="Reads the firing rates that weigh messages for --placement traffic from "
                   "this activity file (activity_reference.json of a simulation); 'prior' "
                   "uses the prior rate even when OUT holds a simulation.")
@console_options
def compile_(model, target, out, vth_mant, low_rank, residual, weight_sharing,
             attention_split, dt, convention, reset, spikes, v_min, emit, time_steps, placement,
             seed, rates, **console):
    """Compiles a NIR file (or a lava-dl netx .net file) to a Loihi-style core program and
    prints per-core utilization (with low-rank factors or a residual stream: the costs of
    both deployment forms)."""
    from .pipeline import compile_model

    _run(console, lambda log: compile_model(
        model, target, out, vth_mant=vth_mant, low_rank=low_rank, emit=tuple(emit), dt=dt,
        convention=convention, reset=reset, spikes=spikes, v_min=v_min,
        weight_sharing=weight_sharing, attention_split=attention_split, residual=residual,
        time_steps=time_steps, placement=placement, seed=seed, rates=rates, log=log))


@cli.command()
@click.argument("build", type=EXISTING_FILE)
@click.option("--backend", type=click.Choice(["reference", "lava"]), default="reference",
              show_default=True, help="Chooses the simulator.")
@click.option("--compare", is_flag=True, help="Runs reference and Lava and counts spike mismatches.")
@click.option("--samples", type=int, default=None, help="Limits the run to the first N test samples.")
@click.option("--dataset", default=None, help="Overrides the data set recorded in the program.")
@click.option("--data-path", type=click.Path(path_type=Path), default=None,
              help="Points to the files of a data set that reads user files.")
@click.option("--input", "inputs", type=click.Path(path_type=Path), default=None,
              help="Feeds your own input instead of the data set: a .npy array (B, T, ...) "
                   "of spikes or integer currents, or a NIRData file.")
@click.option("--record", type=click.Path(path_type=Path), default=None,
              help="Writes every population's per-step activity as NIRData to this file.")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Gives integer labels for --input (.npy, one per sample, or a NIRData "
                   "file with a 'labels' node; a NIRData --input's own 'labels' node is "
                   "used without it), so float, fixed-point and Lava accuracies are printed.")
@console_options
def simulate(build, backend, compare, samples, dataset, data_path, inputs, record, labels,
             **console):
    """Simulates a compiled program (test split or --input) and prints accuracies and the
    fidelity per population (float vs fixed point, reference vs Lava)."""
    from .pipeline import run_simulation

    if samples is not None and samples < 1:
        raise click.BadParameter("must be at least 1", param_hint="--samples")
    _run(console, lambda log: run_simulation(
        build, backend, samples=samples, compare=compare, dataset=dataset,
        data_path=data_path, inputs=inputs, record=record, labels=labels, log=log))


@cli.command()
@click.argument("build", type=EXISTING_FILE)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table",
              show_default=True, help="Chooses the output format.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Names the file to write (default: standard output).")
@click.option("--backend", type=click.Choice(["reference"]), default="reference",
              show_default=True, help="Chooses whose simulated activity to price.")
@console_options
def report(build, fmt, out, backend, **console):
    """Reports whether a simulated build fits, how faithful it is and what it costs.

    One page: the fit verdict, fidelity (float, fixed point, Lava), energy per sample,
    latency, per-core utilization, core-to-core traffic, placement and sources.
    """
    from .pipeline import make_report
    from .report.render import render_json

    _run(console, lambda log: make_report(build, fmt, out, backend, log=log), render_json)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"),
              show_default=True, help="Names the output directory.")
@click.option("--epochs", type=int, default=None, help="Sets the training epochs (default: per preset).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds training.")
@click.option("--lava-samples", type=int, default=50, show_default=True,
              help="Sets how many test samples run on Lava.")
@click.option("--target", default="loihi2", show_default=True, help=TARGET_HELP)
@console_options
def demo(out, epochs, seed, lava_samples, target, **console):
    """Runs the whole pipeline on the embedded digits data set and writes summary.json (the
    stages' tables are diagnostics here: the result is the summary)."""
    from .pipeline import run_demo

    _run(console, lambda log: run_demo(out, epochs=epochs, seed=seed,
                                       lava_samples=lava_samples, target=target, log=log))


def _stopped_work() -> tuple:
    """What a signal stops: the command and where its outputs go (for the one line)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.parent is None:
        return ()
    return ctx.info_name, ctx.params.get("out") or ctx.params.get("build")


def _interrupted(exc: Interrupted | None) -> int:
    """One line for a run stopped by a signal; the exit status 128 + signal number."""
    if exc is None:
        exc = Interrupted(interrupts.received())
    text = str(exc)
    from .publish import PUBLISHED  # (standard library only)

    if exc.outputs and os.path.realpath(str(exc.outputs)) in PUBLISHED:  # after the swap
        text = text.replace(f"previous outputs in {exc.outputs} are unchanged",
                            f"its new outputs in {exc.outputs} are complete")
    click.echo(f"interrupted: {text}", err=True)
    return exc.exit_code


def main(argv=None) -> int:
    # SIGINT/SIGTERM raise Interrupted in the running stage; its cleanup runs on the way up
    with interrupts.raise_on_signals(_stopped_work, exiting=True):
        try:
            cli.main(args=argv, prog_name="nmc-deploy", standalone_mode=False)
        except Interrupted as exc:
            if _State.debug:
                raise
            return _interrupted(exc)
        except NmcDeployError as exc:
            if _State.debug:
                raise
            if interrupts.received():  # a signal turned into another error on its way up
                return _interrupted(None)
            click.echo(f"error: {exc}", err=True)
            return 1
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            return 130
        except click.UsageError as exc:  # one line, as every error (exit 2, click's)
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            click.echo(f"error: {where}{exc.format_message()} (see --help)", err=True)
            return exc.exit_code
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            return 130
        except Exception:
            if interrupts.received() and not _State.debug:
                return _interrupted(None)
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry_point():
    sys.exit(main())
