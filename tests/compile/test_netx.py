"""netx export: lava-dl's netx.hdf5.Network built from our file spikes exactly like the
reference; what netx cannot express fails in one line naming the first population."""
import contextlib
import dataclasses
import io
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.netx import (NETX_FILE, NETX_GRID, netx_layers, netx_synapse_weights,
                                     read_netx, read_netx_kwargs, write_netx)
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.errors import ExportError, InputFileError, LoweringError
from nmc_deploy.simulate.reference import simulate_reference

from factories import chain_graph
from nmc_deploy.ir import Affine, Graph, Input, Output


def chain_program(rng, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(lower_graph(chain_graph(rng, **kwargs)))


def with_current_decay_and_bias(program, rng, du=3000):
    """The program with a current decay (CubaLIF-like du) and biases on netx's grid
    (multiples of 64 v units, also through bias_exp > 0)."""
    pops = []
    for i, p in enumerate(program.populations):
        exp = i % 2
        mant = rng.integers(-3, 4, p.size) * (64 >> exp)
        pops.append(dataclasses.replace(p, du=du, bias_mant=mant, bias_exp=exp))
    return dataclasses.replace(program, populations=tuple(pops))


# --------------------------------------------------------------------------- the file

def test_file_holds_the_program_fields(rng, tmp_path):
    prog = with_current_decay_and_bias(chain_program(rng, threshold_layer=1), rng)
    path = write_netx(prog, tmp_path / NETX_FILE)
    with h5py.File(path, "r") as f:
        assert f["layer/0/type"][0] == b"input" and "neuron" not in f["layer/0"]
        assert list(f["layer/0/shape"][()]) == [32]
        assert len(f["layer"]) == len(prog.populations) + 1
        for i, p in enumerate(prog.populations, 1):
            g = f[f"layer/{i}"]
            grp = next(x for x in prog.groups if x.target == p.name)
            assert g.attrs["name"] == p.name and g["type"][0] == b"dense"
            assert np.array_equal(g["weight"][()].astype(np.int64),
                                  grp.weights.toarray().astype(np.int64) << grp.weight_exp)
            assert np.array_equal(g["bias"][()].astype(np.int64) << 6,
                                  np.asarray(p.bias_mant, np.int64) << p.bias_exp)
            assert g["neuron/iDecay"][()] == p.du + 1 and g["neuron/vDecay"][()] == p.dv
            assert g["neuron/vThMant"][()] == p.vth and g["neuron/type"][0] == b"CUBA"
    assert prog.populations[1].dv == 4096  # the threshold layer: no voltage memory
    assert read_netx_kwargs(path) == {"input_message_bits": 1, "reset_interval": 5,
                                      "reset_offset": 1}


def _break(program, index, **changes):
    pops = list(program.populations)
    pops[index] = dataclasses.replace(pops[index], **changes)
    return dataclasses.replace(program, populations=tuple(pops))


def _break_group(program, index, **changes):
    groups = list(program.groups)
    groups[index] = dataclasses.replace(groups[index], **changes)
    return dataclasses.replace(program, groups=tuple(groups))


def test_what_netx_cannot_express_names_the_first_population(rng, tmp_path):
    prog = chain_program(rng)
    odd = prog.groups[1].weights.copy()
    odd.data = odd.data + 1  # odd mixed weights: not divisible by 2**1
    cases = [
        (_break(prog, 1, bias_mant=np.full(20, 37)), "'lif1' has a bias (37 v units"),
        (_break(prog, 1, dv=np.arange(20)), "'lif1' has per-neuron voltage decays"),
        (_break_group(prog, 1, weight_exp=-1, weights=odd), "'lif1' is fed by group "
         "'lif0->lif1' with weight_exp (-1)"),
        (_break_group(prog, 1, weight_exp=2), "'lif1' is fed by group 'lif0->lif1' whose "
         "weights W << weight_exp"),
        (_break_group(prog, 2, source="lif0"), "'lif2' reads 'lif0', not the previous layer "
         "'lif1'"),
        (_break_group(prog, 2, delay=3), "'lif2' is fed by group 'lif1->lif2' with a synaptic "
         "delay (3 steps)"),
        (_break(prog, 0, kind="relay"), "'lif0' is a low-rank relay"),
        (_break(prog, 2, gate="sel"), "'lif2' is gated by token selector 'sel'"),
        (_break(prog, 1, kind="li"), "'lif1' is a non-spiking leaky integrator"),
        (_break(prog, 1, du=np.arange(20)), "'lif1' has per-neuron current decays"),
        (_break_group(prog, 1, source="lif1"), "'lif1' reads its own output"),
        (_break_group(prog, 1, source="const"), "'lif1' is fed by 'const'"),
    ]
    if "reset_subtract" in {f.name for f in dataclasses.fields(prog.populations[0])}:
        cases.append((_break(prog, 1, reset_subtract=65473), "'lif1' resets by subtraction"))
    for program, needle in cases:
        with pytest.raises(ExportError) as info:
            write_netx(program, tmp_path / NETX_FILE)
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith("netx: population "), msg
        assert needle in msg, msg
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file
    # an all-zero layer (fully pruned): netx's loader would overflow
    empty = prog.groups[1].weights.copy()
    empty.data[:] = 0
    empty.eliminate_zeros()
    with pytest.raises(ExportError, match="'lif1' is fed by group 'lif0->lif1' with no nonzero"):
        netx_layers(_break_group(prog, 1, weights=empty))


def test_spikformer_is_refused_in_one_line(tiny_program, tmp_path):
    with pytest.raises(ExportError) as info:
        write_netx(tiny_program, tmp_path / NETX_FILE)
    msg = str(info.value)
    first = tiny_program.populations[0].name
    assert msg.startswith(f"netx: population '{first}' has a bias") and "\n" not in msg
    # with biases and weight exponents on netx's grid, the first structural obstacle is the
    # residual fan-in into q (then attention, ...)
    flat = dataclasses.replace(tiny_program, populations=tuple(
        dataclasses.replace(p, bias_mant=np.zeros(p.size, np.int64))
        for p in tiny_program.populations), groups=tuple(
        dataclasses.replace(g, weight_exp=0) for g in tiny_program.groups))
    with pytest.raises(ExportError, match="population 'blocks.0.attn.q_lif' is fed by 2 "
                                          "synapse groups"):
        netx_layers(flat)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- CLI

def _run(*args):
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, args)],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_cli_emits_netx_and_refuses_a_spikformer_in_one_line(rng, tmp_path, tiny_graph):
    from nmc_deploy.program import load_program
    from nmc_deploy.nirio import write_nir

    write_nir(chain_graph(rng), tmp_path / "chain.nir")
    rc, out, err = _run("compile", tmp_path / "chain.nir", "--emit", "netx", "-o", tmp_path / "b")
    assert rc == 0, err
    assert (tmp_path / "b" / NETX_FILE).exists() and "model.net.h5" in out
    again = write_netx(load_program(tmp_path / "b"), tmp_path / "again.h5")
    with h5py.File(again) as a, h5py.File(tmp_path / "b" / NETX_FILE) as b:
        for i in range(1, 4):
            assert np.array_equal(a[f"layer/{i}/weight"][()], b[f"layer/{i}/weight"][()])
    rc, out, err = _run("compile", tmp_path / "chain.nir", "-o", tmp_path / "b")
    assert rc == 0 and not (tmp_path / "b" / NETX_FILE).exists()  # stale file removed

    write_nir(tiny_graph, tmp_path / "spikformer.nir")
    rc, out, err = _run("compile", tmp_path / "spikformer.nir", "--emit", "netx",
                        "-o", tmp_path / "s")
    lines = [line for line in err.strip().splitlines() if line]
    assert rc == 1 and "Traceback" not in out + err
    # on the netx grid the SPS layers are expressible; the residual fan-in is the first stop
    assert lines[-1].startswith("error: netx: population 'blocks.0.attn.q_lif'"), err
    assert len([line for line in lines if line.startswith("error")]) == 1
    assert not (tmp_path / "s").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.tmp")]


# --------------------------------------------------------------------------- Lava

def _lava():
    from nmc_deploy.simulate.lava import lava311

    lava311.import_lava_runtime()


@pytest.mark.lava
def test_weight_mirror_equals_netx_and_lava(rng):
    """netx_synapse_weights == netx's optimize_weight_bits + Lava Dense's clip/truncate."""
    _lava()
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    checked = exact = 0
    for trial in range(400):
        lo, hi = [(-300, 300), (-256, 254), (0, 255), (-255, 0), (-8, 8), (-3, 60),
                  (-256, 0), (0, 300)][trial % 8]
        density = 1.0 if trial % 5 == 4 else 0.7  # with and without zeros (sign modes)
        w = rng.integers(lo, hi + 1, (5, 7)) * (rng.random((5, 7)) < density)
        w = w << int(rng.integers(0, 4)) if trial % 3 == 0 else w
        if not w.any():
            continue
        with np.errstate(divide="ignore"), contextlib.redirect_stdout(io.StringIO()):
            opt, nwb, exp, _ = optimize_weight_bits(w.astype(np.int64))  # prints clip notes
        mode = determine_sign_mode(opt)
        lava_w = truncate_weights(clip_weights(opt, mode, num_bits=8), mode, nwb)
        mine, mine_exp = netx_synapse_weights(w)
        assert mine_exp == exp
        assert np.array_equal(mine, lava_w), (w, mine, lava_w)
        checked += 1
        exact += bool(exp <= 0 and np.array_equal(mine, w << -exp))
    assert checked > 350 and 0 < exact < checked  # both outcomes were exercised


def run_netx(path, images, time_steps, sparse=False, kwargs=None):
    """Run ``netx.hdf5.Network(path)`` on ``images`` (n, n_in) back to back, as our
    RingBuffer input; returns per netx block the (steps, size) bool raster and the LIF
    parameters netx built (du, dv, vth, bias in v units)."""
    import tempfile
    from pathlib import Path

    _lava()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer

    from nmc_deploy.simulate.lava.processes import SpikeRecorder

    net = netx.hdf5.Network(net_config=str(path), sparse_fc_layer=sparse,
                            **(read_netx_kwargs(path) if kwargs is None else kwargs))
    params = [{"du": int(np.asarray(b.neuron.du.init).ravel()[0]),
               "dv": int(np.asarray(b.neuron.dv.init).ravel()[0]),
               "vth": int(np.asarray(b.neuron.vth.init).ravel()[0]),
               "bias": np.broadcast_to(np.asarray(b.neuron.bias_mant.init, np.int64)
                                       << np.asarray(b.neuron.bias_exp.init, np.int64),
                                       b.out.shape)} for b in net.layers]
    n = images.shape[0]
    num_steps = n * time_steps + len(net.layers)
    source = RingBuffer(data=np.repeat(images, time_steps, axis=0).T.astype(np.int32))
    source.s_out.connect(net.inp)
    with tempfile.TemporaryDirectory(prefix="nmc-netx-") as tmp:
        files = []
        for i, block in enumerate(net.layers):
            files.append(Path(tmp) / f"block{i}.npy")
            rec = SpikeRecorder(shape=block.out.shape, num_steps=num_steps, path=str(files[-1]))
            block.out.connect(rec.a_in)
        try:
            source.run(condition=RunSteps(num_steps=num_steps),
                       run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        finally:
            source.stop()
        return [np.unpackbits(np.load(f), axis=1, count=int(np.prod(b.out.shape))).astype(bool)
                for f, b in zip(files, net.layers)], params


@pytest.mark.lava
@pytest.mark.parametrize("variant", ["binary", "graded_bias_du_threshold", "cubalif"])
def test_netx_network_reproduces_reference_spikes(variant, tmp_path):
    rng = np.random.default_rng(7)
    if variant == "binary":
        prog = chain_program(rng)
        x = (rng.random((3, 32)) < 0.5).astype(np.int64)
    elif variant == "cubalif":  # the compiler's own current decay (du = 2047); Sparse synapses
        try:
            prog = chain_program(rng, cuba=True, weight_mean=0.3)
        except LoweringError as exc:
            pytest.skip(f"the compiler does not lower CubaLIF here ({exc})")
        assert all(p.du == 2047 for p in prog.populations)
        x = (rng.random((3, 32)) < 0.5).astype(np.int64)
    else:
        prog = with_current_decay_and_bias(
            chain_program(rng, levels=3, threshold_layer=1, time_steps=4,
                          weight_mean=(0.15, 0.4, 0.5)), rng)
        x = rng.integers(0, 4, (3, 32))
    assert all(g.weight_exp == 0 for g in prog.groups)
    path = write_netx(prog, tmp_path / NETX_FILE)
    ref = simulate_reference(prog, x)
    rasters, params = run_netx(path, x, prog.time_steps, sparse=variant == "cubalif")
    for p, built in zip(prog.populations, params):  # the fields netx built from the file
        assert (built["du"], built["dv"], built["vth"]) == (p.du, p.dv, p.vth)
        assert np.array_equal(built["bias"], np.asarray(p.bias_mant, np.int64) << p.bias_exp)
    n, T = x.shape[0], prog.time_steps
    mismatches, spikes = {}, {}
    for p, raster in zip(prog.populations, rasters):
        # netx block k (1-based) = our depth k: sample s, step t at Lava step 1 + k + sT + t
        window = raster[p.depth:p.depth + n * T].reshape(n, T, p.size).transpose(1, 0, 2)
        mismatches[p.name] = int(np.count_nonzero(window != ref.spikes[p.name]))
        spikes[p.name] = int(ref.spikes[p.name].sum())
    assert len(rasters) == len(prog.populations)
    assert all(0 < s < 0.9 * ref.spikes[k].size for k, s in spikes.items()), spikes
    assert sum(mismatches.values()) == 0, mismatches
    # the file read back (netx in): its reference simulation equals netx on Lava too
    read = read_netx(path)
    ref_read = simulate_reference(read, x)
    back = {p.name: int(np.count_nonzero(
        raster[p.depth:p.depth + n * T].reshape(n, T, p.size).transpose(1, 0, 2)
        != ref_read.spikes[p.name])) for p, raster in zip(read.populations, rasters)}
    assert [p.name for p in read.populations] == [p.name for p in prog.populations]
    assert sum(back.values()) == 0, back


@pytest.mark.lava
def test_netx_grid_makes_an_unscaled_network_expressible(tmp_path):
    """Random weights and biases (not pre-scaled): the default grid is refused by netx, the
    netx grid (what `compile --emit netx` uses) is written, and netx reproduces the reference."""
    from nmc_deploy.ir import LIF
    rng = np.random.default_rng(3)
    sizes, dt, T = (16, 12, 6), 1e-4, 6
    nodes = {"input": Input(shape=(sizes[0],))}
    edges, prev = [], "input"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        nodes[f"fc{i}"] = Affine(weight=rng.normal(0.05, 0.5, (b, a)),
                                 bias=rng.normal(0.0, 0.2, b))
        z, o = np.zeros(b), np.ones(b)
        nodes[f"lif{i}"] = LIF(tau=np.full(b, 2 * dt), r=o, v_leak=z, v_threshold=o, v_reset=z)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = Output(shape=(sizes[-1],))
    edges.append((prev, "output"))
    fp = lower_graph(Graph(nodes, tuple(edges), {"dt": dt, "time_steps": T, "input_levels": 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = quantize_program(fp)
        prog = quantize_program(fp, grid=NETX_GRID)
    with pytest.raises(ExportError):
        write_netx(default, tmp_path / "refused.h5")
    assert not (tmp_path / "refused.h5").exists()
    assert all(g.weight_exp == 0 for g in prog.groups)
    assert all(p.bias_exp >= 6 for p in prog.populations)
    path = write_netx(prog, tmp_path / NETX_FILE)
    x = (rng.random((3, sizes[0])) < 0.5).astype(np.int64)
    ref = simulate_reference(prog, x)
    rasters, _ = run_netx(path, x, T)
    n = x.shape[0]
    total = 0
    for p, raster in zip(prog.populations, rasters):
        window = raster[p.depth:p.depth + n * T].reshape(n, T, p.size).transpose(1, 0, 2)
        total += int(np.count_nonzero(window != ref.spikes[p.name]))
        assert 0 < ref.spikes[p.name].sum() < 0.9 * ref.spikes[p.name].size
    assert total == 0


# ------------------------------------------------------------------------------ netx in

@pytest.mark.parametrize("variant", ["binary", "graded_bias_du_threshold"])
def test_read_netx_gives_back_the_written_program(variant, rng, tmp_path):
    """write_netx then read_netx: the same populations (du, dv, vth, bias in v units,
    depths), Lava-effective weights and the same reference spikes and counts."""
    if variant == "binary":
        prog = chain_program(rng)
        x = (rng.random((4, 32)) < 0.5).astype(np.int64)
    else:
        prog = with_current_decay_and_bias(
            chain_program(rng, levels=3, threshold_layer=1, time_steps=4,
                          weight_mean=(0.15, 0.4, 0.5)), rng)
        x = rng.integers(0, 4, (4, 32))
    path = write_netx(prog, tmp_path / NETX_FILE)
    read = read_netx(path)
    assert read.time_steps == prog.time_steps and read.input_shape == prog.input_shape
    for a, b in zip(prog.populations, read.populations):
        assert (a.name, a.shape, a.du, a.dv, a.vth, a.depth) == \
            (b.name, b.shape, b.du, b.dv, b.vth, b.depth)
        assert np.array_equal(np.asarray(a.bias_mant, np.int64) << a.bias_exp,
                              np.asarray(b.bias_mant, np.int64) << b.bias_exp)
    for a, b in zip(prog.groups, read.groups):
        wa = a.weights.toarray().astype(np.int64)
        wb = b.weights.toarray().astype(np.int64)
        ea, eb = a.weight_exp, b.weight_exp
        assert np.array_equal(wa << max(ea - min(ea, eb), 0), wb << max(eb - min(ea, eb), 0))
        assert a.num_message_bits == b.num_message_bits
    want, got = simulate_reference(prog, x), simulate_reference(read, x)
    for p in prog.populations:
        assert np.array_equal(want.spikes[p.name], got.spikes[p.name]), p.name
    assert got.spikes[prog.populations[-1].name].any()


def test_read_netx_refuses_what_it_cannot_read_by_name(rng, tmp_path):
    path = write_netx(chain_program(rng), tmp_path / NETX_FILE)
    with h5py.File(path, "a") as f:
        del f["layer/2/type"]
        f["layer/2"].create_dataset("type", (1,), "S10", [b"average"])
    with pytest.raises(InputFileError, match=r"layer 2: type 'average' is not supported "
                                             r"\(netx 0.6.0 has no average layer"):
        read_netx(path)
    path = write_netx(chain_program(rng), tmp_path / "b.net")
    with h5py.File(path, "a") as f:
        del f["layer/1/neuron/type"]
        f["layer/1/neuron"].create_dataset("type", (1,), "S10", [b"SDNN"])
        del f.attrs["time_steps"]
    with pytest.raises(InputFileError, match="time steps"):
        read_netx(path)
    with pytest.raises(InputFileError, match=r"layer 1: neuron type 'SDNN'"):
        read_netx(path, time_steps=4)
    bad = tmp_path / "x.net"
    bad.write_text("not hdf5")
    with pytest.raises(InputFileError, match="not an HDF5 file"):
        read_netx(bad)


def _slayer_file(path, rng):
    """A lava-dl file written by lava-dl itself: two SLAYER CUBA Dense blocks (20 -> 16 -> 5)
    exported with their own ``export_hdf5`` (no input layer, no nmc-deploy attributes)."""
    _lava()
    import torch

    import lava.lib.dl.slayer as slayer

    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
              "requires_grad": False}
    torch.manual_seed(int(rng.integers(1 << 30)))
    blocks = [slayer.block.cuba.Dense(params, 20, 16, weight_norm=False, delay=False),
              slayer.block.cuba.Dense(params, 16, 5, weight_norm=False, delay=False)]
    with torch.no_grad():  # weights large enough that both layers fire
        for b, gain in zip(blocks, (3.0, 6.0)):
            b.synapse.weight.mul_(gain)
        x = torch.rand(1, 20, 4)
        for b in blocks:  # one forward pass sets the neurons' shapes export_hdf5 writes
            x = b(x)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(str(i)))
    return path


@pytest.mark.lava
def test_lava_dl_written_file_reads_and_matches_netx(tmp_path):
    """netx in, a file lava-dl wrote: read_netx's program simulated on the reference equals
    netx.hdf5.Network on Lava spike for spike, over several samples back to back."""
    rng = np.random.default_rng(11)
    path = _slayer_file(tmp_path / "slayer.net", rng)
    T = 8
    program = read_netx(path, time_steps=T)
    assert [p.size for p in program.populations] == [16, 5] and program.input_shape == (20,)
    x = (rng.random((3, 20)) < 0.4).astype(np.int64)
    ref = simulate_reference(program, x)
    rasters, params = run_netx(path, x, T, kwargs={"reset_interval": T, "reset_offset": 1,
                                                   "input_message_bits": 0})
    for p, built in zip(program.populations, params):
        assert (built["du"], built["dv"], built["vth"]) == (p.du, p.dv, p.vth)
    n = x.shape[0]
    mismatches = {p.name: int(np.count_nonzero(
        raster[p.depth:p.depth + n * T].reshape(n, T, p.size).transpose(1, 0, 2)
        != ref.spikes[p.name])) for p, raster in zip(program.populations, rasters)}
    assert all(ref.spikes[p.name].any() for p in program.populations), "every layer fires"
    assert sum(mismatches.values()) == 0, mismatches
