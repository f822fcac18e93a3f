"""The bad-input corpus: cases built from a few valid artefacts, each a CLI call that must fail.

:func:`build_artefacts` writes the valid files once (a tiny Spikformer checkpoint, a chain
NIR graph, a netx file, a compiled and simulated build, inputs, labels, NIRData, a target);
every :class:`Case` copies them into a fresh directory (:func:`stage`), breaks one thing
(``setup``) and names the CLI arguments (run in that directory). The suite
(``test_bad_inputs.py``) asserts: nonzero exit, one line on stderr, no traceback, nothing
written or changed in the directory. Kinds x generic faults (:data:`KINDS`,
:data:`FAULTS`) plus content cases (non-finite values, impossible shapes, out-of-range
indices, future versions, bad options, targets, output paths).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

# ------------------------------------------------------------------------------ artefacts

ARTEFACTS = ("ck.pt", "model.nir", "net.net", "x.npy", "y.npy", "xy.h5", "labels.h5",
             "target.toml", "rates.json", "build")
DT = 1e-4  # chain_graph's


def build_artefacts(root: Path) -> Path:
    """The valid files every case starts from (written once per session)."""
    import nir

    from conftest import make_tiny_spikformer
    from factories import chain_graph, netx_conv_file
    from nmc_deploy.models.checkpoint import save_checkpoint
    from nmc_deploy.nirio import write_nir
    from nmc_deploy.pipeline import compile_model, run_simulation
    from nmc_deploy.targets import load_target

    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "ck.pt", make_tiny_spikformer(),
                    {"dataset": "digits", "input_levels": 16})
    write_nir(chain_graph(np.random.default_rng(0)), root / "model.nir")
    netx_conv_file(root / "net.net", np.random.default_rng(1), last="dense")
    x = (np.random.default_rng(2).random((3, 5, 32)) < 0.3).astype(np.int64)
    y = np.array([1, 2, 3])
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)

    def node(a):
        return nir.NIRNodeData(observables={"data": nir.TimeGriddedData(data=a, dt=DT)})

    nir.write_data(str(root / "xy.h5"), nir.NIRGraphData(
        nodes={"input": node(x), "labels": node(y.reshape(3, 1, 1))}))
    shutil.copyfile(root / "xy.h5", root / "labels.h5")
    shutil.copyfile(load_target("loihi2").path, root / "target.toml")
    quiet = lambda m: None  # noqa: E731
    compile_model(root / "model.nir", "loihi2", root / "build", log=quiet)
    run_simulation(root / "build", inputs=root / "x.npy", labels=root / "y.npy", log=quiet)
    shutil.copyfile(root / "build" / "activity_reference.json", root / "rates.json")
    return root


def stage(artefacts: Path, work: Path) -> None:
    """Copy the artefacts into ``work`` and add earlier outputs a failing run must keep:
    ``out.nir`` (an export), ``r.txt`` (a report), ``adir/`` (a directory), ``afile``."""
    for name in ARTEFACTS:
        src = artefacts / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, work / name)
    shutil.copyfile(artefacts / "model.nir", work / "out.nir")
    (work / "r.txt").write_text("an earlier report\n")
    (work / "adir").mkdir()
    (work / "adir" / "keep.txt").write_text("keep\n")
    (work / "afile").write_text("a regular file\n")


# ---------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    needle: str = ""  # text the error line must hold (a file or field name)
    subprocess: bool = False  # run in a child process (reads of devices, crashes)
    slow: bool = False
    marks: tuple = field(default_factory=tuple)


def _h5_set(rel: str, key: str, value) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        import h5py

        with h5py.File(w / rel, "r+") as f:
            del f[key]
            f.create_dataset(key, data=value)
    return setup


def _h5_map(rel: str, key: str, fn) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        import h5py

        with h5py.File(w / rel, "r+") as f:
            value = fn(np.asarray(f[key][()]))
            del f[key]
            f.create_dataset(key, data=value)
    return setup


def _json_edit(rel: str, fn) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        data = json.loads((w / rel).read_text())
        result = fn(data)  # a list replaces the whole file; anything else edited in place
        data = result if isinstance(result, list) else data
        (w / rel).write_text(json.dumps(data))
    return setup


def _npz_edit(rel: str, fn) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        with np.load(w / rel) as z:
            arrs = {k: z[k] for k in z.files}
        fn(arrs)
        with open(w / rel, "wb") as f:
            np.savez(f, **arrs)
    return setup


def _ckpt_edit(fn) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        import torch

        ck = torch.load(w / "ck.pt", weights_only=True)
        ck = fn(ck) or ck
        torch.save(ck, w / "ck.pt")
    return setup


def _write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        path = w / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def _save_npy(rel: str, make) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        np.save(w / rel, make(), allow_pickle=True)
    return setup


def _nirdata(rel: str, make_obs) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        import nir

        nir.write_data(str(w / rel), nir.NIRGraphData(nodes={
            "input": nir.NIRNodeData(observables={"data": make_obs(nir)})}))
    return setup


def _toml_sub(key: str, value: str) -> Callable[[Path], None]:
    """Replace the value of the first ``key = { value = ... ,`` in target.toml."""
    import re

    def setup(w: Path) -> None:
        text = (w / "target.toml").read_text()
        new, n = re.subn(rf"(\n{key}\s*=\s*\{{\s*value\s*=\s*)[^,]+", rf"\g<1>{value}", text,
                         count=1)
        assert n == 1, key
        (w / "target.toml").write_text(new)
    return setup


def _chain(*setups) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        for s in setups:
            s(w)
    return setup


# --- generic faults of a file -----------------------------------------------------------

def _fault(rel: str, fault: str, other: str) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        path = w / rel
        if fault == "truncated":
            data = path.read_bytes()
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        if fault == "missing":
            return
        if fault == "empty":
            path.write_bytes(b"")
        elif fault == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif fault == "garbage":
            path.write_bytes(np.random.default_rng(7).bytes(4096))
        elif fault == "text":
            path.write_text("this is not the file you are looking for\n")
        elif fault == "wrongkind":
            shutil.copyfile(w / other, path)
        elif fault == "dir":
            path.mkdir()
        elif fault == "fifo":
            os.mkfifo(path)
        elif fault == "devzero":
            path.symlink_to("/dev/zero")
        elif fault == "sparse":  # 3 GiB of zeros, not on disk: must not be read whole
            with open(path, "wb") as f:
                f.truncate(3 << 30)
        else:
            raise ValueError(fault)
    return setup


FAULTS = ("missing", "empty", "truncated", "garbage", "text", "wrongkind", "dir", "fifo",
          "devzero")

# kind: (file, argv, other file for "wrongkind", faults that are not an error, sparse case)
SIM = ("simulate", "build", "--input", "x.npy")
KINDS: dict[str, tuple] = {
    "checkpoint": ("ck.pt", ("export", "ck.pt", "-o", "out.nir"), "model.nir", ()),
    "checkpoint-prune": ("ck.pt", ("prune", "ck.pt", "--method", "lth", "-o", "p.pt"),
                         "x.npy", ()),
    "nir": ("model.nir", ("compile", "model.nir", "-o", "build"), "ck.pt", ()),
    "netx": ("net.net", ("compile", "net.net", "-o", "build"), "x.npy", ()),
    "program.json": ("build/program.json", SIM, "x.npy", ()),
    "program.npz": ("build/program.npz", SIM, "build/placement.json", ()),
    "build-model.nir": ("build/model.nir", SIM, "ck.pt", ("missing",)),
    "placement.json": ("build/placement.json", ("report", "build"), "x.npy", ()),
    "activity.json": ("build/activity_reference.json", ("report", "build"), "x.npy", ()),
    "target.json": ("build/target.json", ("report", "build"), "x.npy", ("missing",)),
    "design_rules.json": ("build/design_rules.json", ("report", "build"), "x.npy",
                          ("missing",)),
    "simulation.json": ("build/simulation_reference.json", ("report", "build"), "x.npy",
                        ("missing",)),
    "input.npy": ("x.npy", SIM, "model.nir", ()),
    "input-nirdata": ("xy.h5", ("simulate", "build", "--input", "xy.h5"), "ck.pt", ()),
    "labels.npy": ("y.npy", SIM + ("--labels", "y.npy"), "model.nir", ()),
    "labels-nirdata": ("labels.h5", SIM + ("--labels", "labels.h5"), "ck.pt", ()),
    "target.toml": ("target.toml", ("compile", "model.nir", "--target", "target.toml", "-o",
                                    "build"), "x.npy", ()),
    "rates.json": ("rates.json", ("compile", "model.nir", "--placement", "traffic",
                                  "--rates", "rates.json", "-o", "build"), "x.npy", ()),
}
_TEXT_KINDS = ("program.json", "placement.json", "activity.json", "target.toml", "rates.json")


def file_cases() -> list[Case]:
    cases = []
    for kind, (rel, argv, other, ok) in KINDS.items():
        for fault in FAULTS:
            if fault in ok:
                continue
            sub = fault == "devzero"
            cases.append(Case(f"{kind}-{fault}", argv, _fault(rel, fault, other),
                              needle=Path(rel).name, subprocess=sub))
        if kind in _TEXT_KINDS:
            cases.append(Case(f"{kind}-sparse-3GiB", argv, _fault(rel, "sparse", other),
                              needle=Path(rel).name, subprocess=True))
    return cases


# --- checkpoints ------------------------------------------------------------------------

class _Boom:
    """Unpickling this object would run code (create PWNED)."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _code_checkpoint(w: Path) -> None:
    import pickle

    import torch

    ck = torch.load(w / "ck.pt", weights_only=True)
    ck["meta"]["x"] = _Boom()
    torch.save(ck, w / "ck.pt", pickle_module=pickle)


def _plain_pickle(w: Path) -> None:
    import pickle

    (w / "ck.pt").write_bytes(pickle.dumps(_Boom()))


def _state(key_part: str, fn):
    def edit(ck):
        key = next(k for k in ck["state_dict"] if key_part in k)
        ck["state_dict"][key] = fn(ck["state_dict"][key])
    return edit


def _fill(value):
    def fn(t):
        t = t.clone()
        t.view(-1)[0] = value
        return t
    return fn


def checkpoint_cases() -> list[Case]:
    import math

    exp = ("export", "ck.pt", "-o", "out.nir")
    c = [
        Case("checkpoint-pickled-code", exp, _code_checkpoint, "contains code"),
        Case("checkpoint-plain-pickle-code", exp, _plain_pickle, "ck.pt"),
        Case("checkpoint-version-99", exp, _ckpt_edit(lambda ck: ck.update(version=99)),
             "newer nmc-deploy"),
        Case("checkpoint-version-string", exp, _ckpt_edit(lambda ck: ck.update(version="1")),
             "version"),
        Case("checkpoint-format-other", exp, _ckpt_edit(lambda ck: ck.update(format="x")),
             "format"),
        Case("checkpoint-not-a-dict", exp, _ckpt_edit(lambda ck: [1, 2, 3]), "ck.pt"),
        Case("checkpoint-state-list", exp, _ckpt_edit(lambda ck: ck.update(state_dict=[1])),
             "state_dict"),
        Case("checkpoint-meta-list", exp, _ckpt_edit(lambda ck: ck.update(meta=[1])), "meta"),
        Case("checkpoint-config-negative-dim", exp, _ckpt_edit(
            lambda ck: ck["config"].update(embed_dim=-16)), "ck.pt"),
        Case("checkpoint-config-zero-depth", exp, _ckpt_edit(
            lambda ck: ck["config"].update(depth=0)), "ck.pt"),
        Case("checkpoint-config-zero-steps", exp, _ckpt_edit(
            lambda ck: ck["config"].update(time_steps=0)), "ck.pt"),
        Case("checkpoint-config-string-dim", exp, _ckpt_edit(
            lambda ck: ck["config"].update(embed_dim="16")), "ck.pt"),
        Case("checkpoint-config-huge-steps", exp, _ckpt_edit(
            lambda ck: ck["config"].update(time_steps=10 ** 12)), "ck.pt"),
        Case("checkpoint-config-huge-dim", exp, _ckpt_edit(  # 2**40 weights if allocated
            lambda ck: ck["config"].update(embed_dim=2 ** 20, sps_channels=[4, 8, 2 ** 20])),
             "ck.pt", subprocess=True),
        Case("checkpoint-meta-levels-negative", exp, _ckpt_edit(
            lambda ck: ck["meta"].update(input_levels=-3)), "input_levels"),
        Case("checkpoint-meta-levels-string", exp, _ckpt_edit(
            lambda ck: ck["meta"].update(input_levels="x")), "input_levels"),
    ]
    for name, part, value in (("nan-weight", "weight", math.nan), ("inf-weight", "weight", math.inf),
                              ("neginf-bias", "bias", -math.inf),
                              ("nan-running-var", "running_var", math.nan),
                              ("negative-running-var", "running_var", -1.0)):
        c.append(Case(f"checkpoint-{name}", exp, _ckpt_edit(_state(part, _fill(value))),
                      "state_dict"))

    def complex_weight(t):
        return t.to(__import__("torch").complex64)
    c.append(Case("checkpoint-complex-weight", exp,
                  _ckpt_edit(_state("weight", complex_weight)), "state_dict"))
    c.append(Case("checkpoint-int-weight", exp,
                  _ckpt_edit(_state("weight", lambda t: t.to(__import__("torch").int64))),
                  "state_dict"))
    c.append(Case("checkpoint-nan-weight-prune", ("prune", "ck.pt", "--method", "lth", "-o",
                                                  "p.pt"),
                  _ckpt_edit(_state("weight", _fill(math.nan))), "state_dict"))
    return c


# --- NIR graphs -------------------------------------------------------------------------

def nir_cases() -> list[Case]:
    nan, inf = float("nan"), float("inf")
    comp = ("compile", "model.nir", "-o", "build")
    n = "node/nodes/"
    sets = {
        "weight-nan": (n + "fc0/weight", lambda a: _put(a, nan)),
        "weight-inf": (n + "fc0/weight", lambda a: _put(a, inf)),
        "weight-neginf": (n + "fc1/weight", lambda a: _put(a, -inf)),
        "weight-complex": (n + "fc0/weight", lambda a: a.astype(np.complex128)),
        "weight-strings": (n + "fc0/weight", lambda a: a.astype("S8")),
        "weight-huge": (n + "fc0/weight", lambda a: a * 1e300),
        "weight-all-nan": (n + "fc2/weight", lambda a: np.full_like(a, nan)),
        "bias-nan": (n + "fc0/bias", lambda a: _put(a, nan)),
        "bias-inf": (n + "fc1/bias", lambda a: _put(a, inf)),
        "threshold-nan": (n + "lif0/v_threshold", lambda a: _put(a, nan)),
        "threshold-inf": (n + "lif0/v_threshold", lambda a: _put(a, inf)),
        "threshold-zero": (n + "lif1/v_threshold", lambda a: np.zeros_like(a)),
        "threshold-negative": (n + "lif1/v_threshold", lambda a: -a),
        "tau-nan": (n + "lif0/tau", lambda a: _put(a, nan)),
        "tau-zero": (n + "lif0/tau", lambda a: np.zeros_like(a)),
        "tau-negative": (n + "lif0/tau", lambda a: -a),
        "tau-inf": (n + "lif2/tau", lambda a: _put(a, inf)),
        "r-nan": (n + "lif0/r", lambda a: _put(a, nan)),
        "leak-inf": (n + "lif0/v_leak", lambda a: _put(a, inf)),
        "reset-nan": (n + "lif2/v_reset", lambda a: _put(a, nan)),
        "dt-zero": ("node/metadata/dt", lambda a: np.float64(0.0)),
        "dt-negative": ("node/metadata/dt", lambda a: np.float64(-1e-4)),
        "dt-nan": ("node/metadata/dt", lambda a: np.float64(nan)),
        "dt-inf": ("node/metadata/dt", lambda a: np.float64(inf)),
        "dt-string": ("node/metadata/dt", lambda a: b"fast"),
        "time-steps-zero": ("node/metadata/time_steps", lambda a: np.int64(0)),
        "time-steps-negative": ("node/metadata/time_steps", lambda a: np.int64(-5)),
        "time-steps-huge": ("node/metadata/time_steps", lambda a: np.int64(10 ** 15)),
        "input-levels-zero": ("node/metadata/input_levels", lambda a: np.int64(0)),
        "input-shape-negative": (n + "input/shape", lambda a: -a),
        "input-shape-zero": (n + "input/shape", lambda a: np.zeros_like(a)),
        "input-shape-huge": (n + "input/shape", lambda a: np.array([2 ** 62])),
        "weight-shape-mismatch": (n + "fc1/weight", lambda a: a[:, :-1]),
        "weight-1d": (n + "fc0/weight", lambda a: a.ravel()),
        "edges-dangling": ("node/edges", lambda a: np.array(
            [[b"input", b"fc0"], [b"fc0", b"nowhere"]], dtype=object)),
    }
    cases = [Case(f"nir-{k}", comp, _h5_map("model.nir", key, fn), "model.nir")
             for k, (key, fn) in sets.items()]

    def zero_layer(w: Path) -> None:  # fc1 -> lif1 with 0 neurons
        import h5py

        with h5py.File(w / "model.nir", "r+") as f:
            for key, shape in (("fc1/weight", (0, 24)), ("fc1/bias", (0,)),
                               ("fc2/weight", (10, 0))):
                del f[n + key]
                f.create_dataset(n + key, data=np.zeros(shape))
            for key in ("r", "tau", "v_leak", "v_reset", "v_threshold"):
                del f[n + "lif1/" + key]
                f.create_dataset(n + "lif1/" + key, data=np.zeros(0))
    cases.append(Case("nir-zero-size-layer", comp, zero_layer, "model.nir"))
    cases.append(Case("nir-no-type", comp, _h5_set("model.nir", n + "fc0/type", 5),
                      "model.nir"))
    for opt, val in (("--dt", "0"), ("--dt", "-1e-3"), ("--dt", "nan"), ("--dt", "inf"),
                     ("--vth-mant", "0"), ("--vth-mant", "-5"), ("--vth-mant", str(2 ** 40)),
                     ("--convention", "bogus"), ("--time-steps", "0"), ("--seed", "-1"),
                     ("--target", "nosuch"), ("--target", "../etc/passwd"),
                     ("--emit", "onnx"), ("--placement", "random")):
        cases.append(Case(f"compile-option{opt}={val}", comp + (opt, val), None,
                          opt.lstrip("-").split("-")[0]))
    return cases


def _put(a: np.ndarray, value) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.reshape(-1)[0] = value
    return a


# --- builds -----------------------------------------------------------------------------

def _pop0(**kw):
    return lambda d: d["populations"][0].update(**kw)


def _group0(**kw):
    return lambda d: d["groups"][0].update(**kw)


def build_cases() -> list[Case]:
    pj = "build/program.json"
    c = []
    json_edits = {
        "version-99": (lambda d: d.update(version=99), "newer nmc-deploy"),
        "version-string": (lambda d: d.update(version="one"), "version"),
        "version-missing": (lambda d: d.pop("version"), "version"),
        "format-other": (lambda d: d.update(format="x"), "program.json"),
        "top-list": (lambda d: [d], "program.json"),
        "input-shape-negative": (lambda d: d.update(input_shape=[-32]), "input_shape"),
        "input-shape-zero": (lambda d: d.update(input_shape=[0]), "input_shape"),
        "time-steps-zero": (lambda d: d.update(time_steps=0), "time_steps"),
        "time-steps-negative": (lambda d: d.update(time_steps=-1), "time_steps"),
        "time-steps-huge": (lambda d: d.update(time_steps=10 ** 12), "time_steps"),
        "time-steps-float": (lambda d: d.update(time_steps=4.5), "time_steps"),
        "input-levels-zero": (lambda d: d.update(input_levels=0), "input_levels"),
        "pop-shape-negative": (_pop0(shape=[-24]), "shape"),
        "pop-shape-mismatch": (_pop0(shape=[25]), "lif0"),
        "pop-vth-negative": (_pop0(vth=-5), "vth"),
        "pop-vth-huge": (_pop0(vth=2 ** 40), "vth"),
        "pop-du-huge": (_pop0(du=99999), "du"),
        "pop-dv-negative": (_pop0(dv=-1), "dv"),
        "pop-bias-exp-99": (_pop0(bias_exp=99), "bias_exp"),
        "pop-depth-negative": (_pop0(depth=-1), "depth"),
        "pop-scale-nan": (_pop0(scale=float("nan")), "scale"),
        "pop-kind-unknown": (_pop0(kind="quantum"), "kind"),
        "pop-unknown-field": (_pop0(colour="red"), "colour"),
        "group-weight-exp-99": (_group0(weight_exp=99), "weight_exp"),
        "group-weight-exp-neg-99": (_group0(weight_exp=-99), "weight_exp"),
        "group-delay-negative": (_group0(delay=-1), "delay"),
        "group-source-unknown": (_group0(source="ghost"), "ghost"),
        "group-target-unknown": (_group0(target="ghost"), "ghost"),
        "group-shape-mismatch": (_group0(shape=[24, 33]), "shape"),
        "group-shape-negative": (_group0(shape=[-24, 32]), "shape"),
        "readout-outputs-zero": (lambda d: d["readout"].update(num_outputs=0), "num_outputs"),
        "readout-scale-nan": (lambda d: d["readout"].update(scale=float("nan")), "scale"),
        "metadata-dt-nan": (lambda d: d["metadata"].update(dt=float("nan")), "dt"),
        "metadata-dt-string": (lambda d: d["metadata"].update(dt="x"), "dt"),
        "populations-empty": (lambda d: d.update(populations=[], groups=[]), "program.json"),
    }
    for name, (fn, needle) in json_edits.items():
        c.append(Case(f"program.json-{name}", SIM, _json_edit(pj, fn), needle))
    npz = "build/program.npz"

    def setitem(key, fn):
        return lambda a: a.__setitem__(key, fn(a[key]))
    npz_edits = {
        "csr-indices-huge": (setitem("group0/indices", lambda v: v + 10 ** 6), True),
        "csr-indices-negative": (setitem("group0/indices", lambda v: v - 10 ** 6), True),
        "csr-indptr-beyond": (setitem("group0/indptr", lambda v: v * 3), True),
        "csr-indptr-decreasing": (setitem("group0/indptr", lambda v: v[::-1].copy()), False),
        "csr-indptr-short": (setitem("group0/indptr", lambda v: v[:-3]), False),
        "csr-data-short": (setitem("group0/data", lambda v: v[:-5]), False),
        "weights-off-grid": (setitem("group0/data", lambda v: v * 0 + 10 ** 6), False),
        "weights-float-nan": (setitem("group0/data", lambda v: _put(v, np.nan)), False),
        "weights-fraction": (setitem("group0/data", lambda v: v + 0.5), False),
        "weights-complex": (setitem("group0/data", lambda v: v.astype(np.complex128)), False),
        "bias-huge": (setitem("pop0/bias_mant", lambda v: v.astype(np.int64) + 2 ** 40), False),
        "bias-wrong-length": (setitem("pop0/bias_mant", lambda v: v[:-1]), False),
        "bias-float-nan": (setitem("pop0/bias_mant", lambda v: _put(v, np.nan)), False),
        "readout-bias-nan": (setitem("readout/bias", lambda v: _put(v, np.nan)), False),
        "readout-weight-inf": (setitem("readout0/data", lambda v: _put(v, np.inf)), False),
        "readout-indices-huge": (setitem("readout0/indices", lambda v: v + 10 ** 6), True),
        "missing-array": (lambda a: a.pop("group1/indptr"), False),
        "object-array": (setitem("pop1/bias_mant", lambda v: np.array([{"x": 1}], object)),
                         False),
    }
    for name, (fn, sub) in npz_edits.items():
        c.append(Case(f"program.npz-{name}", SIM, _npz_edit(npz, fn), "program.npz",
                      subprocess=sub))
    rep = ("report", "build")
    pl, act = "build/placement.json", "build/activity_reference.json"
    for name, rel, fn, needle in (
            ("placement-list", pl, lambda d: [1, 2], "placement.json"),
            ("placement-cores-string", pl, lambda d: d.update(cores="many"), "placement.json"),
            ("placement-cores-used-negative", pl, lambda d: d.update(cores_used=-1),
             "placement.json"),
            ("placement-missing-target", pl, lambda d: d.pop("target"), "placement.json"),
            ("activity-list", act, lambda d: [], "activity_reference.json"),
            ("activity-samples-zero", act, lambda d: d.update(samples=0), "samples"),
            ("activity-samples-negative", act, lambda d: d.update(samples=-3), "samples"),
            ("activity-layers-string", act, lambda d: d.update(layers="x"),
             "activity_reference.json"),
            ("activity-synops-nan", act, lambda d: d["layers"][0].update(synops=float("nan")),
             "synops"),
            ("activity-synops-negative", act, lambda d: d["layers"][0].update(synops=-10),
             "synops"),
            ("activity-spikes-inf", act,
             lambda d: d["populations"][0].update(spikes=float("inf")), "spikes"),
            ("activity-time-steps-zero", act, lambda d: d.update(time_steps=0), "time_steps"),
            ("target-json-file-number", "build/target.json", lambda d: d.update(file=5),
             "target.json"),
            ("target-json-list", "build/target.json", lambda d: [], "target.json"),
    ):
        c.append(Case(f"build-{name}", rep, _json_edit(rel, fn), needle))

    def target_fifo(w: Path) -> None:
        os.mkfifo(w / "t.toml")
        (w / "build" / "target.json").write_text(json.dumps(
            {"name": "nosuch", "file": str(w / "t.toml")}))
    c.append(Case("build-target-json-names-a-fifo", rep, target_fifo, "t.toml"))

    def stale_nir(w: Path) -> None:  # the build's graph does not match its program
        shutil.copyfile(w / "out.nir", w / "build" / "model.nir")
        _h5_map("build/model.nir", "node/nodes/fc0/weight",
                lambda a: _put(a, np.nan))(w)
    c.append(Case("build-model.nir-nan-weight", SIM, stale_nir, "model.nir"))
    return c


# --- inputs, labels, NIRData ------------------------------------------------------------

def input_cases() -> list[Case]:
    u64 = np.iinfo(np.uint64).max
    arrays = {
        "zero-samples": lambda: np.zeros((0, 5, 32), np.int64),
        "zero-steps": lambda: np.zeros((3, 0, 32), np.int64),
        "strings": lambda: np.full((3, 5, 32), "a"),
        "bytes": lambda: np.full((3, 5, 32), b"a"),
        "complex": lambda: np.ones((3, 5, 32), np.complex128),
        "uint64-max": lambda: np.full((3, 5, 32), u64, np.uint64),
        "int64-min": lambda: np.full((3, 5, 32), np.iinfo(np.int64).min, np.int64),
        "nan": lambda: np.full((3, 5, 32), np.nan),
        "inf": lambda: np.full((3, 5, 32), np.inf),
        "fraction": lambda: np.full((3, 5, 32), 0.5),
        "wrong-shape": lambda: np.zeros((3, 5, 31), np.int64),
        "scalar": lambda: np.array(3),
        "one-dim": lambda: np.zeros(32, np.int64),
        "object": lambda: np.array([{"a": 1}], object),
        "float16-inf": lambda: np.full((3, 32), np.inf, np.float16),
        "structured": lambda: np.zeros((3, 32), dtype=[("a", "i4"), ("b", "f4")]),
    }
    c = [Case(f"input.npy-{k}", SIM, _save_npy("x.npy", f), "x.npy")
         for k, f in arrays.items()]
    lab = SIM + ("--labels", "y.npy")
    labels = {
        "strings": lambda: np.array(["a", "b", "c"]),
        "nan": lambda: np.array([1.0, np.nan, 2.0]),
        "negative": lambda: np.array([1, -2, 3]),
        "too-many": lambda: np.arange(5),
        "too-few": lambda: np.array([1]),
        "two-dim": lambda: np.ones((3, 2), np.int64),
        "complex": lambda: np.ones(3, np.complex64),
        "uint64-max": lambda: np.full(3, u64, np.uint64),
        "out-of-range": lambda: np.array([1, 2, 10]),
        "fraction": lambda: np.array([1.5, 2.0, 3.0]),
    }
    c += [Case(f"labels.npy-{k}", lab, _save_npy("y.npy", f), "y.npy")
          for k, f in labels.items()]
    nd = ("simulate", "build", "--input", "xy.h5")
    xs = (np.random.default_rng(2).random((3, 5, 32)) < 0.3).astype(np.int64)
    obs = {
        "dt-mismatch": lambda nir: nir.TimeGriddedData(data=xs, dt=1e-3),
        "data-nan": lambda nir: nir.TimeGriddedData(data=_put(xs, np.nan), dt=DT),
        "data-zero-samples": lambda nir: nir.TimeGriddedData(data=xs[:0], dt=DT),
        "data-strings": lambda nir: nir.TimeGriddedData(data=np.full((3, 5, 32), b"a"), dt=DT),
        "data-wrong-shape": lambda nir: nir.TimeGriddedData(data=xs[..., :7], dt=DT),
        "events-tmax-inf": lambda nir: nir.EventData(
            idx=np.array([[0, 1]]), time=np.array([[0.0, 1e-4]]), n_neurons=32,
            t_max=float("inf")),
        "events-tmax-zero": lambda nir: nir.EventData(
            idx=np.array([[0, 1]]), time=np.array([[0.0, 1e-4]]), n_neurons=32, t_max=0.0),
        "events-time-nan": lambda nir: nir.EventData(
            idx=np.array([[0, 1]]), time=np.array([[np.nan, 1e-4]]), n_neurons=32,
            t_max=5e-4),
        "events-index-huge": lambda nir: nir.EventData(
            idx=np.array([[0, 10 ** 9]]), time=np.array([[0.0, 1e-4]]), n_neurons=32,
            t_max=5e-4),
        "events-neurons-negative": lambda nir: nir.EventData(
            idx=np.array([[0, 1]]), time=np.array([[0.0, 1e-4]]), n_neurons=-32, t_max=5e-4),
        "events-tmax-huge": lambda nir: nir.EventData(
            idx=np.array([[0, 1]]), time=np.array([[0.0, 1e-4]]), n_neurons=32, t_max=1e9),
    }
    c += [Case(f"input-nirdata-{k}", nd, _nirdata("xy.h5", f), "xy.h5") for k, f in obs.items()]
    for opt, val in (("--samples", "0"), ("--samples", "-5"), ("--backend", "gpu"),
                     ("--dataset", "nosuch")):
        argv = ("simulate", "build") + ((opt, val) if opt == "--dataset" else
                                        ("--input", "x.npy", opt, val))
        c.append(Case(f"simulate-option{opt}={val}", argv, None, opt.lstrip("-")))
    return c


# --- targets ----------------------------------------------------------------------------

def target_cases() -> list[Case]:
    comp = ("compile", "model.nir", "--target", "target.toml", "-o", "build")
    subs = {
        "weight-bits-1": ("weight_bits", "1"),
        "weight-bits-64": ("weight_bits", "64"),
        "state-bits-200": ("state_bits", "200"),
        "decay-bits-40": ("decay_bits", "40"),
        "threshold-bits-1": ("threshold_mant_bits", "1"),
        "bias-exp-99": ("bias_exp_max", "99"),
        "graded-bits-99": ("graded_spike_bits", "99"),
        "cores-negative": ("cores", "-4"),
        "cores-huge": ("cores", str(2 ** 62)),
        "max-chips-huge": ("max_chips", str(10 ** 18)),
        "max-neurons-huge": ("max_neurons", str(2 ** 63 - 1)),
        "neurons-zero": ("max_neurons", "0"),
        "synop-nan": ("time_per_synop_ns", "nan"),
        "synop-inf": ("time_per_synop_ns", "inf"),
        "synop-negative": ("time_per_synop_ns", "-1.0"),
        "synop-string": ("time_per_synop_ns", '"fast"'),
        "word-bits-huge": ("word_bits", str(2 ** 40)),
        "index-bits-max-99": ("index_bits_max", "99"),
        "delay-huge": ("max_synaptic_delay", str(2 ** 40)),
        "weight-sharing-int": ("weight_sharing", "1"),
    }
    c = [Case(f"target.toml-{k}", comp, _toml_sub(key, val), "target.toml")
         for k, (key, val) in subs.items()]

    def add(text: str):
        def setup(w: Path) -> None:
            with open(w / "target.toml", "a") as f:
                f.write(text)
        return setup
    c.append(Case("target.toml-unknown-section", comp, add("\n[turbo]\nboost = 1\n"), "turbo"))
    c.append(Case("target.toml-unknown-field", comp, add(
        '\n[core.colour]\nvalue = 1\nsource = "x"\nbasis = "assumption"\n'), "colour"))

    def self_system(w: Path) -> None:
        (w / "target.toml").write_text(
            'name = "loop"\ndescription = "a system of itself"\nchip_target = "target.toml"\n'
            '[system]\nchips = { value = 2, basis = "assumption", source = "t" }\n'
            'chip_grid = { value = [2], basis = "assumption", source = "t" }\n')
    c.append(Case("target.toml-system-of-itself", comp, self_system, "target.toml"))

    def system_fifo(w: Path) -> None:
        os.mkfifo(w / "chip.toml")
        (w / "target.toml").write_text(
            'name = "s"\ndescription = "d"\nchip_target = "chip.toml"\n'
            '[system]\nchips = { value = 2, basis = "assumption", source = "t" }\n'
            'chip_grid = { value = [2], basis = "assumption", source = "t" }\n')
    c.append(Case("target.toml-system-chip-is-fifo", comp, system_fifo, "chip.toml"))
    c.append(Case("target.toml-bad-utf8", comp, _write("target.toml", b"name = \"\xff\xfe\"\n"),
                  "target.toml"))
    return c


# --- output paths and other options -----------------------------------------------------

def output_cases() -> list[Case]:
    def fifo(rel):
        return lambda w: os.mkfifo(w / rel)
    c = [
        Case("export-out-is-dir", ("export", "ck.pt", "-o", "adir"), None, "adir"),
        Case("export-out-under-file", ("export", "ck.pt", "-o", "afile/m.nir"), None, "afile"),
        Case("export-out-is-input", ("export", "ck.pt", "-o", "ck.pt"), None, "ck.pt"),
        Case("export-out-is-fifo", ("export", "ck.pt", "-o", "f.nir"), fifo("f.nir"), "f.nir"),
        Case("export-portable-out-is-file", ("export", "ck.pt", "--portable", "-o", "afile"),
             None, "afile"),
        Case("export-portable-out-is-input", ("export", "ck.pt", "--portable", "-o", "ck.pt"),
             None, "ck.pt"),
        Case("compile-out-is-file", ("compile", "model.nir", "-o", "afile"), None, "afile"),
        Case("compile-out-under-file", ("compile", "model.nir", "-o", "afile/b"), None, "afile"),
        Case("compile-out-is-input", ("compile", "model.nir", "-o", "model.nir"), None,
             "model.nir"),
        Case("report-out-is-dir", ("report", "build", "-o", "adir"), None, "adir"),
        Case("report-out-under-file", ("report", "build", "-o", "afile/r.txt"), None, "afile"),
        Case("report-out-is-input", ("report", "build", "-o", "build/program.json"), None,
             "program.json"),
        Case("report-out-is-placement", ("report", "build", "--format", "json", "-o",
                                         "build/placement.json"), None, "placement.json"),
        Case("report-out-is-fifo", ("report", "build", "-o", "f.txt"), fifo("f.txt"), "f.txt"),
        Case("simulate-record-is-input", SIM + ("--record", "x.npy"), None, "x.npy"),
        Case("simulate-record-is-program", SIM + ("--record", "build/program.npz"), None,
             "program.npz"),
        Case("simulate-record-is-dir", SIM + ("--record", "adir"), None, "adir"),
        Case("simulate-record-under-file", SIM + ("--record", "afile/r.h5"), None, "afile"),
        Case("simulate-record-is-fifo", SIM + ("--record", "f.h5"), fifo("f.h5"), "f.h5"),
        Case("prune-out-is-input", ("prune", "ck.pt", "--method", "lth", "-o", "ck.pt"), None,
             "ck.pt"),
        Case("prune-out-under-file", ("prune", "ck.pt", "--method", "lth", "-o", "afile/p.pt"),
             None, "afile"),
        Case("train-out-is-dir", ("train", "-o", "adir"), None, "adir"),
        Case("train-out-under-file", ("train", "-o", "afile/m.pt"), None, "afile"),
        Case("train-out-is-fifo", ("train", "-o", "f.pt"), fifo("f.pt"), "f.pt"),
        Case("demo-out-is-file", ("demo", "--out", "afile"), None, "afile"),
    ]
    for cmd, opt, val in (("train", "--epochs", "-1"), ("train", "--epochs", "0"),
                          ("train", "--preset", "nosuch"), ("train", "--dataset", "nosuch"),
                          ("prune", "--sparsity", "1.5"), ("prune", "--sparsity", "nan"),
                          ("prune", "--sparsity", "-0.1"), ("prune", "--rounds", "0"),
                          ("prune", "--epochs", "-1"), ("prune", "--token-keep", "1.5"),
                          ("prune", "--method", "bogus"),
                          ("demo", "--lava-samples", "0"), ("demo", "--lava-samples", "-1"),
                          ("demo", "--epochs", "-1"), ("demo", "--target", "nosuch")):
        if cmd == "prune":
            argv = ("prune", "ck.pt") + (() if opt == "--method" else ("--method", "lth")) + \
                (opt, val, "-o", "p.pt")
        elif cmd == "train":
            argv = ("train", opt, val, "-o", "m.pt")
        else:
            argv = ("demo", opt, val, "--out", "demo_out")
        c.append(Case(f"{cmd}-option{opt}={val}", argv, None, opt.lstrip("-").split("-")[0]))
    return c


# --- netx files, portable exports, paths ------------------------------------------------

def _h5_attr(rel: str, key: str, value) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        import h5py

        with h5py.File(w / rel, "r+") as f:
            f.attrs[key] = value
    return setup


def _portable(w: Path) -> None:
    """A portable export of the chain graph in ``w/port`` (standard NIR + manifest)."""
    from factories import chain_graph
    from nmc_deploy.nirio import write_portable

    write_portable(chain_graph(np.random.default_rng(0)), w / "port")


def more_cases() -> list[Case]:
    comp = ("compile", "net.net", "-o", "build")
    lay = "layer/1/"
    netx = {
        "weight-nan": (lay + "weight", lambda a: _put(a, np.nan).astype(np.float32)),
        "weight-inf": (lay + "weight", lambda a: _put(a, np.inf).astype(np.float32)),
        "weight-huge": (lay + "weight", lambda a: (a * 1e6).astype(np.float32)),
        "weight-strings": (lay + "weight", lambda a: np.full(a.shape, b"w")),
        "shape-negative": (lay + "shape", lambda a: -a),
        "shape-zero": (lay + "shape", lambda a: a * 0),
        "vth-negative": (lay + "neuron/vThMant", lambda a: np.int64(-80)),
        "vth-nan": (lay + "neuron/vThMant", lambda a: np.float64(np.nan)),
        "idecay-huge": (lay + "neuron/iDecay", lambda a: np.int64(99999)),
        "vdecay-negative": (lay + "neuron/vDecay", lambda a: np.int64(-1)),
        "bias-nan": (lay + "bias", lambda a: _put(a, np.nan)),
        "stride-zero": (lay + "stride", lambda a: a * 0),
    }
    c = [Case(f"netx-{k}", comp, _h5_map("net.net", key, fn), "net.net")
         for k, (key, fn) in netx.items()]
    c.append(Case("netx-option--time-steps=huge", comp + ("--time-steps", str(10 ** 12)), None,
                  "time_steps"))
    for k, v in (("time-steps-zero", 0), ("time-steps-negative", -6),
                 ("time-steps-huge", 10 ** 12), ("levels-zero", 0)):
        key = "time_steps" if "steps" in k else "input_levels"
        c.append(Case(f"netx-attr-{k}", comp, _h5_attr("net.net", key, v), "net.net"))
    pc = ("compile", "port", "-o", "build")
    for k, fn in (("manifest-garbage", _write("port/manifest.json", b"{not json")),
                  ("manifest-list", _write("port/manifest.json", "[]")),
                  ("manifest-fifo", lambda w: ((w / "port/manifest.json").unlink(),
                                               os.mkfifo(w / "port/manifest.json"))),
                  ("graph-missing", lambda w: (w / "port/graph.nir").unlink()),
                  ("manifest-version-99", _json_edit("port/manifest.json",
                                                     lambda d: d.update(version=99))),
                  ("graph-garbage", _write("port/graph.nir", b"garbage")),
                  ("graph-nan-weight", _h5_map("port/graph.nir", "node/nodes/fc0/weight",
                                               lambda a: _put(a, np.nan)))):
        c.append(Case(f"portable-{k}", pc, _chain(_portable, fn), "port"))
    exp = ("export", "ck.pt", "-o", "out.nir")
    long = "n" * 300
    c += [
        Case("path-symlink-loop", ("export", "loop.pt", "-o", "out.nir"),
             lambda w: (w / "loop.pt").symlink_to(w / "loop.pt"), "loop.pt"),
        Case("path-under-a-file", ("export", "afile/ck.pt", "-o", "out.nir"), None, "afile"),
        Case("path-name-too-long", ("export", long + ".pt", "-o", "out.nir"), None, "nnnn"),
        Case("out-name-too-long", ("export", "ck.pt", "-o", long + ".nir"), None, "nnnn"),
        Case("path-dangling-symlink", exp, lambda w: ((w / "ck.pt").unlink(),
                                                      (w / "ck.pt").symlink_to(w / "gone")),
             "ck.pt"),
        Case("data-path-fifo", ("train", "--dataset", "mnist", "--data-path", "d", "-o", "m.pt"),
             lambda w: os.mkfifo(w / "d"), "d"),
        Case("data-path-npz-garbage", ("train", "--dataset", "mnist", "--data-path",
                                       "mnist.npz", "-o", "m.pt"),
             _write("mnist.npz", b"PK garbage"), "mnist.npz"),
        Case("data-path-idx-fifo", ("train", "--dataset", "mnist", "--data-path", "adir",
                                    "-o", "m.pt"),
             lambda w: [os.mkfifo(w / "adir" / n) for n in (
                 "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")], "adir"),
        Case("program.json-not-utf8", SIM, _write("build/program.json", b'{"a": "\xff\xfe"}'),
             "program.json"),
        Case("placement.json-deeply-nested", ("report", "build"),
             _write("build/placement.json", "[" * 100_000 + "]" * 100_000), "placement.json"),
        Case("program.json-huge-integer", SIM, _json_edit(
            "build/program.json", lambda d: d.update(time_steps=10 ** 400)), "time_steps"),
        Case("activity.json-float-overflow", ("report", "build"),
             _write("build/activity_reference.json", '{"samples": 1e400}'), "samples"),
    ]
    return c


def _readonly(rel: str) -> Callable[[Path], None]:
    """Make ``rel`` (created as a directory if missing) immutable (``chattr +i``): not
    writable even by root, which the suite runs as. The test undoes it (:func:`writable`)."""
    import subprocess

    import pytest

    def setup(w: Path) -> None:
        (w / rel).mkdir(exist_ok=True)
        r = subprocess.run(["chattr", "+i", str(w / rel)], capture_output=True)
        if r.returncode:
            pytest.skip("chattr +i is not available here")
    return setup


def writable(work: Path) -> None:
    """Undo every :func:`_readonly` under ``work``."""
    import subprocess

    subprocess.run(["chattr", "-R", "-i", str(work)], capture_output=True)


def readonly_cases() -> list[Case]:
    ro = _readonly("ro")
    return [
        Case("readonly-export", ("export", "ck.pt", "-o", "ro/m.nir"), ro, "ro"),
        Case("readonly-export-portable", ("export", "ck.pt", "--portable", "-o", "ro/p"), ro,
             "ro"),
        Case("readonly-compile", ("compile", "model.nir", "-o", "ro/b"), ro, "ro"),
        Case("readonly-report", ("report", "build", "-o", "ro/r.txt"), ro, "ro"),
        Case("readonly-record", SIM + ("--record", "ro/r.h5"), ro, "ro"),
        Case("readonly-train", ("train", "-o", "ro/m.pt"), ro, "ro"),
        Case("readonly-prune", ("prune", "ck.pt", "--method", "lth", "-o", "ro/p.pt"), ro,
             "ro"),
        Case("readonly-demo", ("demo", "--out", "ro/d"), ro, "ro"),
        Case("readonly-build-compile", ("compile", "model.nir", "-o", "build"),
             _readonly("build"), "build"),
        Case("readonly-build-simulate", SIM, _readonly("build"), "build"),
        Case("readonly-build-netx", ("compile", "net.net", "-o", "build"), _readonly("build"),
             "build"),
    ]


def all_cases() -> list[Case]:
    cases = (file_cases() + checkpoint_cases() + nir_cases() + build_cases() + input_cases()
             + target_cases() + output_cases() + more_cases() + readonly_cases())
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases
