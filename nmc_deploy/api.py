"""The Python API: every stage as a function on objects as well as files, returning frozen
results and printing nothing.

    import nmc_deploy as nd

    build = nd.compile("model.nir", target="loihi2")          # or a Graph, or nir.NIRGraph
    sim = nd.simulate(build, inputs=x, labels=y)               # arrays or files
    rep = nd.report(build, sim)
    print(rep.cores_used, rep.energy_per_sample_uj, sim.accuracy)

The functions are the CLI's stages (:mod:`nmc_deploy.pipeline`) and give the same numbers: an
object without a directory (an in-memory graph, a build compiled with ``out=None``, input
arrays) is staged through a private temporary directory that is removed before the function
returns. With ``out=`` (compile) or a build directory, the files are the CLI's and stay.
Messages the CLI prints go to ``progress`` (a callable taking one line) when given, else
nowhere. Errors are :class:`~nmc_deploy.errors.NmcDeployError` subclasses with the CLI's
one-line messages.
"""
from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .checks import input_file, read_json
from .errors import NmcDeployError
from .frozen import ReadOnlyMapping

__all__ = ["Build", "SimulationResult", "Report", "train", "prune", "export", "compile",
           "load_build", "simulate", "report"]

Progress = Callable[[str], None] | None
_RESULT_FILES = ("activity_*.json", "simulation_*.json", "op_counts_*.json")


def _sink(progress: Progress, lines: list[str] | None = None) -> Callable[[str], None]:
    """The pipeline's ``log``: collect each message (``lines``) and pass it to ``progress``."""
    def log(msg: str) -> None:
        for line in str(msg).splitlines():
            if lines is not None:
                lines.append(line)
            if progress is not None:
                progress(line)
    return log


def _frozen(data) -> ReadOnlyMapping:
    return ReadOnlyMapping(data or {})


# ------------------------------------------------------------------------------ results

@dataclass(frozen=True)
class Build:
    """A compiled build: the fixed-point program, where its neurons sit, what it was compiled
    for, and what compile said. ``directory`` is the build directory (None: in memory only)."""

    program: Any  # nmc_deploy.program.Program
    placement: Mapping  # placement.json: cores_used, chips_used, neurons, synapses, cores, ...
    target: Any  # nmc_deploy.targets.HardwareTarget
    graph: Any = None  # the float graph (nmc_deploy.ir.Graph); None for a netx build
    design_rules: Mapping | None = None  # design_rules.json (None for a netx build)
    warnings: tuple[str, ...] = ()  # compile's "warning:" and "assumed:" lines
    log: tuple[str, ...] = ()  # every line compile printed
    directory: Path | None = None

    @property
    def cores_used(self) -> int:
        return int(self.placement["cores_used"])

    @property
    def neurons(self) -> int:
        return int(self.placement["neurons"])

    @property
    def synapses(self) -> int:
        return int(self.placement["synapses"])

    @property
    def utilization(self) -> tuple[Mapping, ...]:
        """Per core: its populations, neurons, synapses, synapse memory bits, axons."""
        return tuple(self.placement.get("cores", ()))


@dataclass(frozen=True)
class SimulationResult:
    """One simulation: accuracies (``float``, ``fixed``: the reference simulator, ``lava``;
    None where not run or without labels), reference-vs-Lava mismatches (``compare``), the
    fidelity table, per-step graph outputs (with ``inputs``) and the records a report reads."""

    backend: str
    samples: int
    dataset: str
    accuracy: Mapping[str, float | None]
    spike_mismatches: int | None  # reference vs Lava, all populations and steps (compare)
    spikes_compared: int | None
    prediction_mismatches: int | None  # reference vs Lava
    fidelity: Mapping  # per population float-vs-fixed mismatches, agreement, ...
    outputs: Mapping = field(default_factory=ReadOnlyMapping)  # "float"/"reference"/"lava"
    summary: Mapping = field(default_factory=ReadOnlyMapping)  # simulation_<run>.json
    records: Mapping = field(default_factory=ReadOnlyMapping)  # file name -> JSON written
    log: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """The deployment report's numbers (``data``: everything ``report --format json``
    gives); :meth:`render` formats it as the CLI does."""

    target: str
    fits: bool
    cores_used: int
    chips_used: int
    energy_per_sample_uj: Mapping[str, float]  # per energy model of the target (estimated)
    latency_per_sample_us: float  # estimated
    synops_per_sample: float  # measured (hardware events)
    data: Mapping

    def render(self, fmt: str = "table") -> str:
        """The report as ``"table"``, ``"json"`` or ``"html"`` text."""
        from .report.render import render_html, render_json, render_table

        renderers = {"table": render_table, "json": render_json, "html": render_html}
        if fmt not in renderers:
            raise NmcDeployError(f"report: format '{fmt}' is not one of table, json, html")
        return renderers[fmt](dict(self.data))


# ------------------------------------------------------------------------ train, export

def train(out: str | Path, *, preset: str = "digits", dataset: str = "digits",
          epochs: int | None = None, seed: int = 0, data_path=None,
          progress: Progress = None) -> Mapping:
    """Train ``preset`` on ``dataset`` and write the checkpoint ``out``; returns its metadata
    (``accuracy_float``, ``epochs``, ``train_seconds``, ...)."""
    from .pipeline import train_checkpoint

    return _frozen(train_checkpoint(Path(out), preset=preset, dataset=dataset,
                                    data_path=data_path, epochs=epochs, seed=seed,
                                    progress=False, log=_sink(progress)))


def prune(checkpoint: str | Path, out: str | Path, *, method: str, progress: Progress = None,
          **options) -> Mapping:
    """Prune a checkpoint (``method``: lth, l1p, dsp or none) and write ``out``; returns the
    summary (``before``/``after``: params, nonzeros, float accuracy). ``options``: the
    keywords of :func:`~nmc_deploy.pipeline.prune_checkpoint` (``sparsity``, ``epochs``,
    ``rank_budget``, ``slif``, ``token_keep``, ``seed``, ...)."""
    from .pipeline import prune_checkpoint

    return _frozen(prune_checkpoint(Path(checkpoint), Path(out), method=method,
                                    progress=False, log=_sink(progress), **options))


def export(checkpoint, out: str | Path | None = None, *, portable: bool = False,
           metadata: Mapping | None = None, progress: Progress = None):
    """A checkpoint file (or a Spikformer module) -> the graph (:class:`~nmc_deploy.ir.Graph`),
    also written to ``out`` when given (a NIR file; ``portable``: a directory). ``metadata``
    (a module only; default digits with 16 input levels) goes into the graph's metadata."""
    if not isinstance(checkpoint, (str, Path)):  # a model in memory
        from .export.spikformer import export_spikformer
        from .nirio import write_nir, write_portable

        graph = export_spikformer(checkpoint, dict(metadata or {"dataset": "digits",
                                                                 "input_levels": 16}))
        if out is not None:
            (write_portable if portable else write_nir)(graph, Path(out))
        return graph
    from .nirio import read_nir, read_portable
    from .pipeline import export_checkpoint

    with _scratch() as tmp:
        path = Path(out) if out is not None else tmp / "model.nir"
        export_checkpoint(Path(checkpoint), path, log=_sink(progress), portable=portable)
        return read_portable(path) if portable else read_nir(path)


# ------------------------------------------------------------------------------ compile

def compile(model, target="loihi2", out: str | Path | None = None, *,
            progress: Progress = None, **options) -> Build:
    """Compile a model for ``target`` (a name, a ``.toml`` path or a HardwareTarget).

    ``model``: a NIR file or portable directory, a lava-dl netx file, a
    :class:`~nmc_deploy.ir.Graph` or a ``nir.NIRGraph``. ``out``: the build directory to
    write (None: the build lives in memory only). ``options``: the keywords of
    :func:`~nmc_deploy.pipeline.compile_model` (``dt``, ``convention``, ``reset``,
    ``low_rank``, ``residual``, ``weight_sharing``, ``attention_split``, ``placement``,
    ``seed``, ``vth_mant``, ``time_steps``, ``emit``, ``rates``).
    """
    from .pipeline import compile_model

    lines: list[str] = []
    with _scratch() as tmp:
        path = _model_path(model, tmp)
        build_dir = Path(out) if out is not None else tmp / "build"
        compile_model(path, target, build_dir, log=_sink(progress, lines), **options)
        result = load_build(build_dir)
    warned = tuple(x for x in lines if x.startswith(("warning:", "assumed:")))
    return Build(result.program, result.placement, result.target, result.graph,
                         result.design_rules, warned, tuple(lines),
                         Path(out) if out is not None else None)


def _model_path(model, tmp: Path) -> Path:
    """A file (or portable directory) the compile stage reads for ``model``."""
    if isinstance(model, (str, Path)):
        return Path(model)
    from .ir.graph import Graph
    from .nirio import from_nir, write_nir

    if type(model).__module__.split(".")[0] == "nir":  # a nir.NIRGraph
        model = from_nir(model)
    if not isinstance(model, Graph):
        raise NmcDeployError(f"compile: model of type '{type(model).__name__}' is not a NIR "
                             "file, a Graph or a nir.NIRGraph")
    write_nir(model, tmp / "model.nir")
    return tmp / "model.nir"


def load_build(directory: str | Path) -> Build:
    """The build in ``directory`` (what ``compile -o`` wrote) as a :class:`Build` (one
    build: read again when a compile published a new one meanwhile)."""
    from .publish import consistent

    return consistent(directory, lambda: _load_build(Path(directory)))


def _load_build(directory: Path) -> Build:
    from .builds import build_target
    from .program import load_program

    program = load_program(directory)
    placement = _read_json(directory / "placement.json")
    graph = None
    if (directory / "model.nir").exists():
        from .nirio import read_nir

        graph = read_nir(directory / "model.nir")
    rules = directory / "design_rules.json"
    return Build(program, _frozen(placement),
                         build_target(directory, str(placement.get("target", ""))), graph,
                         _frozen(_read_json(rules)) if rules.exists() else None,
                         directory=directory)


# ----------------------------------------------------------------------------- simulate

def simulate(build, inputs=None, labels=None, *, backend: str = "reference",
             compare: bool = False, samples: int | None = None, dataset: str | None = None,
             data_path=None, record: str | Path | None = None,
             progress: Progress = None) -> SimulationResult:
    """Simulate a build (a :class:`Build` or a build directory).

    ``inputs``: an array ``(B, T, *input_shape)`` of spikes or integer currents, or a file
    (``.npy``, NIRData); None: the test split of the program's data set (``dataset``,
    ``samples``). ``labels``: integers per sample (array or file). ``backend``: "reference"
    or "lava"; ``compare`` runs both and counts spike mismatches. A build with a directory
    gets the CLI's files there (activity, simulation summary, outputs).
    """
    from .pipeline import run_simulation

    lines: list[str] = []
    with _scratch() as tmp, _build_dir(build, tmp) as build_dir:
        result = run_simulation(build_dir, backend, samples=samples, compare=compare,
                                dataset=dataset, data_path=data_path,
                                inputs=_array_file(inputs, tmp / "inputs.npy"),
                                labels=_array_file(labels, tmp / "labels.npy"),
                                record=record, log=_sink(progress, lines))
        records = {p.name: _read_json(p) for pattern in _RESULT_FILES
                   for p in sorted(build_dir.glob(pattern))}
        outputs = _read_outputs(build_dir / str(result.get("outputs_file", "")))
    return SimulationResult(
        backend=backend, samples=int(result["samples"]), dataset=str(result["dataset"]),
        accuracy=_frozen({"float": result.get("accuracy_float"),
                          "fixed": result.get("accuracy_fixed_reference"),
                          "lava": result.get("accuracy_fixed_lava")}),
        spike_mismatches=result.get("spike_mismatches_reference_vs_lava"),
        spikes_compared=result.get("spikes_compared"),
        prediction_mismatches=result.get("prediction_mismatches"),
        fidelity=_frozen(result.get("fidelity")), outputs=_frozen(outputs),
        summary=_frozen(result), records=_frozen(records), log=tuple(lines))


def _array_file(value, path: Path):
    """A file for ``value``: a path as is, an array saved as ``path`` (None stays None)."""
    if value is None or isinstance(value, (str, Path)):
        return value
    import numpy as np

    np.save(path, np.asarray(value))
    return path


def _read_outputs(path: Path) -> dict:
    if not path.is_file():
        return {}
    import numpy as np

    with np.load(input_file(path, "simulate again"), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ------------------------------------------------------------------------------- report

def report(build, simulation: SimulationResult | None = None, *,
           backend: str = "reference", progress: Progress = None) -> Report:
    """Price a build's simulated activity (the records of ``simulation``, else those in the
    build directory) with its target's energy and latency models."""
    from .pipeline import make_report

    if isinstance(build, Build) and build.directory is None and simulation is None:
        raise NmcDeployError("report: a build in memory has no simulated activity; pass its "
                             "simulation: nd.report(build, nd.simulate(build))")
    with _scratch() as tmp, _build_dir(build, tmp, simulation) as build_dir:
        data = make_report(build_dir, "json", tmp / "report.json", backend=backend,
                           log=_sink(progress))
    verdict = data.get("verdict") or {}
    return Report(target=str(data.get("target", "")), fits=bool(verdict.get("fits", True)),
                  cores_used=int(data["cores_used"]), chips_used=int(data.get("chips_used", 1)),
                  energy_per_sample_uj=_frozen(data.get("energy_per_sample_uj")),
                  latency_per_sample_us=float(data.get("latency_per_sample_us", 0.0)),
                  synops_per_sample=float(data.get("per_sample", {}).get("synops", 0.0)),
                  data=_frozen(data))


# ------------------------------------------------------------------------------ staging

@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nmc-deploy-api-") as tmp:
        yield Path(tmp)


@contextmanager
def _build_dir(build, tmp: Path, simulation: SimulationResult | None = None) -> Iterator[Path]:
    """A directory holding ``build`` (and ``simulation``'s records): its own directory when
    it has one and no records are to be added, else a copy staged in ``tmp``."""
    if isinstance(build, (str, Path)):
        build = load_build(build) if simulation is not None else Path(build)
        if isinstance(build, Path):
            yield build
            return
    if not isinstance(build, Build):
        raise NmcDeployError(f"expected a Build or a build directory, got "
                             f"'{type(build).__name__}'")
    if build.directory is not None and simulation is None:
        yield build.directory
        return
    staged = tmp / "build"
    _stage(build, staged)
    for name, data in (simulation.records if simulation is not None else {}).items():
        (staged / name).write_text(json.dumps(dict(data)))
    yield staged


def _stage(build: Build, directory: Path) -> None:
    """Write an in-memory build as the files ``compile`` writes."""
    from .fileio import write_json_atomic
    from .program import save_program
    from .targets import target_record

    directory.mkdir(parents=True)
    save_program(build.program, directory)
    write_json_atomic(directory / "placement.json", dict(build.placement))
    write_json_atomic(directory / "target.json", target_record(build.target))
    if build.design_rules is not None:
        write_json_atomic(directory / "design_rules.json", dict(build.design_rules))
    if build.graph is not None:
        from .nirio import write_nir

        write_nir(build.graph, directory / "model.nir")


def _read_json(path: Path) -> dict:
    try:
        data = read_json(path, "run the stage that writes it again")
    except (OSError, ValueError) as exc:
        raise NmcDeployError(f"{path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise NmcDeployError(f"{path}: not a JSON object")
    return data
