"""netx in, convolutional layers: conv, pool and flatten read into shared kernels; the read
program's reference simulation equals netx.hdf5.Network on Lava spike for spike (files
written by lava-dl's SLAYER and by hand); what cannot be read is refused in one line."""
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from nmc_deploy.compile.netx import read_netx
from nmc_deploy.compile.netx_conv import kernel_on_grid, netx_order
from nmc_deploy.errors import InputFileError
from nmc_deploy.loihi.synapses import lava_effective_weights
from nmc_deploy.program.shared_weights import ConvShared
from nmc_deploy.simulate.reference import simulate_reference

from factories import netx_conv_file as hand_written_file

T = 6  # steps per sample of every file here (netx_conv_file: its time_steps)


def slayer_conv_file(path, seed=0):
    """A file lava-dl wrote itself: SLAYER CUBA Conv(1->4, 3, padding 1) -> Pool(2) ->
    Conv(4->4, (3, 2), dilation (1, 2), groups 2) -> Flatten -> Dense(24->5), exported
    with the blocks' own ``export_hdf5`` (no input layer: the first conv's input (1, 8, 10)
    follows from its stride 1)."""
    from nmc_deploy.simulate.lava import lava311

    lava311.import_lava_runtime()
    import torch

    import lava.lib.dl.slayer as slayer

    params = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
              "requires_grad": False}
    torch.manual_seed(seed)
    cuba = slayer.block.cuba
    blocks = [cuba.Conv(params, 1, 4, 3, padding=1, weight_norm=False, delay=False),
              cuba.Pool(params, 2, weight_norm=False, delay=False),
              cuba.Conv(params, 4, 4, (3, 2), dilation=(1, 2), groups=2, weight_norm=False,
                        delay=False),
              cuba.Flatten(),
              cuba.Dense(params, 24, 5, weight_norm=False, delay=False)]
    with torch.no_grad():  # weights large enough that every layer fires
        for b, gain in zip((blocks[0], blocks[2], blocks[4]), (1.0, 3.0, 6.0)):
            b.synapse.weight.mul_(gain)
        x = (torch.rand(1, 1, 8, 10, T) < 0.4).float()
        for b in blocks:  # one forward pass sets the neurons' shapes export_hdf5 writes
            x = b(x)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(str(i)))
    return path


# ----------------------------------------------------------------------------- no Lava

def _lava_conv(x_chw, weight, stride, padding, dilation, groups):
    """netx's Conv block on one input: netx's weight transform (flip both kernel axes,
    transpose to (C_out, kW, kH, C_in), reverse the (H, W) pairs) and Lava's own fixed-point
    convolution (lava.proc.conv.utils.conv); the result back in (C, H, W)."""
    from nmc_deploy.simulate.lava import lava311

    lava311.install()
    from lava.proc.conv import utils

    w = np.asarray(weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
    out = utils.conv(x_chw.transpose(2, 1, 0), w.astype(np.int32), w.shape[1:3],
                     stride[::-1], padding[::-1], dilation[::-1], groups)
    return out.transpose(2, 1, 0)


@pytest.mark.parametrize("case", range(6))
def test_conv_kernel_computes_netx_conv(case):
    """Our ConvShared @ x (on the (C, H, W) flat order) == Lava's Conv after netx's
    transform, for non-square inputs and kernels, strides, padding, dilation, groups."""
    rng = np.random.default_rng(case)
    groups = (1, 2, 1, 3, 1, 2)[case]
    cig, cpo = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    padding = tuple(int(v) for v in rng.integers(0, 2, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    c_in, H, W = cig * groups, int(rng.integers(6, 9)), int(rng.integers(7, 11))
    kernel = rng.integers(-9, 10, (cpo * groups, cig, kh, kw))
    x = rng.integers(0, 3, (c_in, H, W))
    ours = ConvShared(kernel.astype(np.int32), (c_in, H, W), stride, padding, dilation, groups)
    want = _lava_conv(x, kernel, stride, padding, dilation, groups)
    assert want.shape[1:] == ours.out_hw
    assert np.array_equal(ours @ x.ravel(), want.ravel())


def test_kernel_on_grid_is_exact_on_lavas_8bit_synapse():
    cases = {(-256, 254, 2): 0, (-127, 127, 1): -1, (0, 255, 1): 0, (-512, 508, 4): 1,
             (-30, 30, 1): -1, (-255, 0, 1): 0}
    rng = np.random.default_rng(0)
    for (lo, hi, step), exp in cases.items():
        e = rng.integers(lo // step, hi // step + 1, (3, 2, 2, 2)) * step
        e.flat[0], e.flat[1] = lo, hi  # both ends present (sign mode)
        w, got = kernel_on_grid(e, "here")
        assert got == exp, (lo, hi, step)
        assert np.array_equal(lava_effective_weights(w), w)
        assert np.array_equal(w.astype(np.int64) << got if got >= 0 else
                              w.astype(np.int64) >> -got, e)
    with pytest.raises(InputFileError, match="here: weights .* do not fit an 8-bit"):
        kernel_on_grid(np.array([[-301, 255]]), "here")


def test_netx_order_maps_whc_onto_chw():
    shape = (2, 3, 4)
    order = netx_order(shape)
    for j, (x, y, c) in enumerate(np.ndindex(4, 3, 2)):  # netx's (W, H, C) port, C order
        assert order[j] == np.ravel_multi_index((c, y, x), shape)
    assert np.array_equal(netx_order((5,)), np.arange(5))


def test_read_hand_written_conv_file(rng, tmp_path):
    path = hand_written_file(tmp_path / "conv.net", rng, last="dense")
    with h5py.File(path) as f:
        w1 = f["layer/1/weight"][()].astype(np.int64)
        b1 = f["layer/1/bias"][()].astype(np.int64)
    prog = read_netx(path)
    assert prog.input_shape == (2, 7, 10) and prog.time_steps == T
    assert [p.shape for p in prog.populations] == [(4, 4, 8), (4, 2, 4), (6, 1, 3), (5,)]
    assert [p.depth for p in prog.populations] == [1, 2, 3, 4]
    g1, g2, g3, _ = prog.groups
    assert isinstance(g1.weights, ConvShared) and g1.num_message_bits == 8
    assert (g1.weights.stride, g1.weights.padding, g1.weights.groups) == ((2, 1), (1, 0), 1)
    assert g1.weight_exp == -1  # odd weights: W = 2 E, Lava floors (W @ s) >> 1 exactly
    assert np.array_equal(g1.weights.kernel.astype(np.int64) >> 1, w1)
    assert g2.weights.groups == 4 and g2.weights.stride == (2, 2) and g2.weight_exp == 0
    assert np.all(g2.weights.kernel == 64)
    assert g3.weights.groups == 2 and g3.weights.in_shape == (4, 2, 4)
    assert np.array_equal(prog.populations[0].bias_mant, np.repeat(b1, 32))
    assert all(p.bias_exp == 6 for p in prog.populations)


def _rewrite(path, index, kind=None, **changes):
    with h5py.File(path, "a") as f:
        g = f[f"layer/{index}"]
        if kind is not None:
            del g["type"]
            g.create_dataset("type", (1,), "S10", [kind.encode()])
        for k, v in changes.items():
            if k in g:
                del g[k]
            if v is not None:
                g.create_dataset(k, data=np.asarray(v))


@pytest.mark.parametrize("change, needle", [
    ((2, "flatten"), "layer 3: a conv layer after a flatten layer"),
    ((4, "average"), "layer 4: type 'average' is not supported (netx 0.6.0 has no average"),
    ((1, None, {"shape": [4, 4, 9]}), "layer 1: 'shape' [4, 4, 9] is not the output [4, 4, 8]"),
    ((1, None, {"delay": np.ones(4)}), "layer 1: has synaptic delays, which netx ignores"),
    ((1, None, {"weight": np.full((4, 2, 3, 3), 301.0)}), "layer 1: weights (range [301, 301])"),
    ((1, None, {"groups": 3}), "layer 1: kernel [4, 2, 3, 3] with groups 3"),
    ((2, None, {"weight": np.ones((2, 1, 2, 2))}), "layer 2: pool 'weight' has shape"),
    ((3, "dense"), "layer 3: 'weight' must be a finite integer matrix"),
    ((5, None, {"delay": np.ones(5)}), "layer 5: has synaptic delays (netx: DelayDense)"),
    ((1, None, {"bias": np.ones(3)}), "layer 1: 'bias' of shape [3] fits neither"),
])
def test_what_cannot_be_read_is_refused_in_one_line(change, needle, rng, tmp_path):
    path = hand_written_file(tmp_path / "conv.net", rng, last="dense")
    index, kind, *data = change
    _rewrite(path, index, kind, **(data[0] if data else {}))
    with pytest.raises(InputFileError) as info:
        read_netx(path)
    msg = str(info.value)
    assert "\n" not in msg and needle in msg, msg


def test_chain_rules_are_refused_in_one_line(rng, tmp_path):
    path = hand_written_file(tmp_path / "a.net", rng, last="dense")
    _rewrite(path, 4, "input")  # a second input layer (shape only)
    with pytest.raises(InputFileError, match="layer 4: an input layer after the first"):
        read_netx(path)
    path = hand_written_file(tmp_path / "b.net", rng, last="dense")
    with h5py.File(path, "a") as f:  # dense right after a conv: netx flattens only there
        del f["layer/4"]
        f["layer"].move("5", "4")
    with pytest.raises(InputFileError, match="layer 4: a dense layer after the \\[6, 1, 3\\] "
                                             "layer 'layer3' needs a flatten layer"):
        read_netx(path)
    path = hand_written_file(tmp_path / "c.net", rng)
    with h5py.File(path, "a") as f:  # the first conv has stride 2 and no input layer
        del f["layer/0"]
    with pytest.raises(InputFileError, match="layer 1: the first layer is a conv and the "
                                             "file has no input layer"):
        read_netx(path)
    path = hand_written_file(tmp_path / "d.net", rng)
    with h5py.File(path, "a") as f:
        del f["layer/2/neuron/type"]
        f["layer/2/neuron"].create_dataset("type", (1,), "S10", [b"SDNN"])
    with pytest.raises(InputFileError, match=r"layer 2: neuron type 'SDNN' is not supported"):
        read_netx(path)
    path = hand_written_file(tmp_path / "e.net", rng)
    with h5py.File(path, "a") as f:  # netx would never feed the network input to it
        f["layer/0"].create_dataset("neuron/type", (1,), "S10", [b"CUBA"])
    with pytest.raises(InputFileError, match=r"layer 0: an input layer with a neuron"):
        read_netx(path)


def test_first_layer_input_shape_follows_from_stride_one(tmp_path):
    """No input layer (as SLAYER exports): a first conv or pool with stride 1 gives its
    input (C, H, W) uniquely."""
    from factories import _netx_layer

    with h5py.File(tmp_path / "conv.net", "w") as f:
        _netx_layer(f.create_group("layer"), 0, "conv", (4, 6, 5),
                    np.ones((4, 1, 3, 2)) * 2, stride=1, padding=(1, 0), dilation=(2, 1),
                    groups=2)
    assert read_netx(tmp_path / "conv.net", time_steps=2).input_shape == (2, 8, 6)
    with h5py.File(tmp_path / "pool.net", "w") as f:
        _netx_layer(f.create_group("layer"), 0, "pool", (3, 4, 5), np.full((1, 1, 2, 2), 64),
                    stride=1, padding=0, dilation=1)
    prog = read_netx(tmp_path / "pool.net", time_steps=2)
    assert prog.input_shape == (3, 5, 6) and prog.groups[0].weights.groups == 3


def test_slayer_pool_of_an_odd_size_is_refused(rng, tmp_path):
    """SLAYER pads the end of an input not divisible by the pool kernel; the (larger) output
    it writes is not the convolution's, and is refused."""
    path = hand_written_file(tmp_path / "conv.net", rng)
    _rewrite(path, 2, None, shape=[4, 2, 3], stride=[3, 3], weight=np.full((1, 1, 3, 3), 64))
    with pytest.raises(InputFileError, match=r"layer 2: 'shape' \[4, 2, 3\] is not the output "
                                             r"\[4, 1, 2\]"):
        read_netx(path)


# ------------------------------------------------------------------------------ Lava

def pool_as_conv(src, dst):
    """``src`` with every pool layer written as the depthwise conv layer netx's Conv block
    runs for it (netx 0.6.0 refuses the type 'pool'); everything else unchanged."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        for key in f["layer"]:
            g = f["layer"][key]
            if g["type"][0] != b"pool":
                continue
            c, w = int(g["shape"][0]), g["weight"][()]
            del g["type"], g["weight"]
            g.create_dataset("type", (1,), "S10", [b"conv"])
            g.create_dataset("weight", data=np.broadcast_to(w, (c, 1, *w.shape[2:])).copy())
            g.create_dataset("groups", data=c)
    return dst


def run_netx(path, program, x, **kwargs):
    """``netx.hdf5.Network(path)`` on Lava (fixed point) with the samples ``x`` (B, C, H, W)
    back to back (reset_interval T): per netx block its (steps, size) spikes in our (C, H,
    W) order (its (W, H, C) port transposed and flattened as netx's flatten does), and the
    network output port's raster in netx's own flat order."""
    from nmc_deploy.simulate.lava import lava311

    lava311.import_lava_runtime()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer

    from nmc_deploy.simulate.lava.processes import SpikeRecorder

    net = netx.hdf5.Network(net_config=str(path), reset_interval=T, reset_offset=1, **kwargs)
    n, shape = x.shape[0], tuple(program.input_shape)
    steps = n * T + len(net.layers)
    data = np.repeat(x.reshape(n, *shape), T, axis=0)  # (n T, C, H, W)
    data = data.transpose(*range(len(shape), 0, -1), 0) if len(shape) == 3 else data.T
    source = RingBuffer(data=data.astype(np.int32))  # netx's (W, H, C, steps)
    source.s_out.connect(net.inp)
    with tempfile.TemporaryDirectory(prefix="nmc-netx-") as tmp:
        files, sizes = [], []
        ports = [(b.out.transpose([2, 1, 0]).flatten() if len(b.out.shape) == 3 else b.out)
                 for b in net.layers] + [net.out.flatten() if len(net.out.shape) == 3
                                         else net.out]
        for i, port in enumerate(ports):
            files.append(Path(tmp) / f"port{i}.npy")
            sizes.append(int(np.prod(port.shape)))
            rec = SpikeRecorder(shape=(sizes[-1],), num_steps=steps, path=str(files[-1]))
            port.connect(rec.a_in)
        try:
            source.run(condition=RunSteps(num_steps=steps),
                       run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        finally:
            source.stop()
        rasters = [np.unpackbits(np.load(f), axis=1, count=s).astype(bool)
                   for f, s in zip(files, sizes)]
    return rasters[:-1], rasters[-1]


def _compare(program, x, rasters):
    """Spike mismatches per population (netx block k = our depth k) and reference spikes."""
    ref = simulate_reference(program, x)
    n = x.shape[0]
    mismatches, spikes = {}, {}
    for p, raster in zip(program.populations, rasters):
        window = raster[p.depth:p.depth + n * T].reshape(n, T, p.size).transpose(1, 0, 2)
        mismatches[p.name] = int(np.count_nonzero(window != ref.spikes[p.name]))
        spikes[p.name] = int(ref.spikes[p.name].sum())
    return ref, mismatches, spikes


@pytest.mark.lava
def test_slayer_conv_network_matches_netx_on_lava(tmp_path):
    """A SLAYER-written Conv -> Pool -> Conv -> Flatten -> Dense CUBA network: the program
    read from the file, simulated on the reference, equals netx.hdf5.Network on Lava (the
    pool layer written as netx's depthwise conv, which netx can load) spike for spike."""
    path = slayer_conv_file(tmp_path / "slayer.net")
    program = read_netx(path, time_steps=T)
    assert [p.shape for p in program.populations] == [(4, 8, 10), (4, 4, 5), (4, 2, 3), (5,)]
    assert program.input_shape == (1, 8, 10)
    rng = np.random.default_rng(5)
    x = (rng.random((4, 1, 8, 10)) < 0.4).astype(np.int64)
    rasters, _ = run_netx(pool_as_conv(path, tmp_path / "as_conv.net"), program, x,
                          input_shape=(10, 8, 1))
    assert len(rasters) == len(program.populations)
    ref, mismatches, spikes = _compare(program, x, rasters)
    assert all(0 < s < 0.9 * ref.spikes[k].size for k, s in spikes.items()), spikes
    assert sum(mismatches.values()) == 0, mismatches


@pytest.mark.lava
def test_hand_written_conv_file_matches_netx_and_its_output_order(tmp_path):
    """Graded input, stride, padding, a bias per channel, odd weights (weight_exp -1) and a
    conv last layer: reference == netx per block, and the readout's outputs are netx's
    output port in its own (W, H, C) flat order."""
    rng = np.random.default_rng(2)
    path = hand_written_file(tmp_path / "conv.net", rng)
    program = read_netx(path)
    x = rng.integers(0, 4, (3, 2, 7, 10))
    rasters, out = run_netx(pool_as_conv(path, tmp_path / "as_conv.net"), program, x,
                            input_message_bits=8)
    ref, mismatches, spikes = _compare(program, x, rasters)
    assert all(0 < s < 0.9 * ref.spikes[k].size for k, s in spikes.items()), spikes
    assert sum(mismatches.values()) == 0, mismatches
    last, n = program.populations[-1], x.shape[0]
    counts = out[last.depth:last.depth + n * T].reshape(n, T, last.size).sum(axis=1)
    assert np.array_equal(ref.logits, counts)
    assert not np.array_equal(netx_order(last.shape), np.arange(last.size))
