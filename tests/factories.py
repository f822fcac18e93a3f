"""Tiny graph IR factories for tests: numpy only (no torch, nir or lava).

Torch model factories (random active Spikformers) are in ``conftest.py``; these build
graphs directly from IR nodes with a seeded ``rng``, so compile/simulate tests need nothing
heavier than numpy.
"""
import numpy as np

from nmc_deploy.ir import LIF, Affine, Conv2d, CubaLIF, Graph, Input, Output, Threshold


def chain_graph(rng, sizes=(32, 24, 20, 10), levels=1, time_steps=5, threshold_layer=None,
                weight_mean=0.5, cuba=False):
    """Input -> (Affine -> LIF)* -> Output with random weights that make every layer fire.

    Weights are scaled so that each group quantizes with weight_exp 0 (largest |R| in
    (127, 254] at the default vth_mant): R = 1023 * w * gain / theta with gain 0.5 (LIF,
    tau = 2 dt; r = levels undoes the input's 1/levels), 0.25 (``cuba``: CubaLIF with
    tau_syn = tau_mem = 2 dt, weights doubled) or theta 2 (Threshold layer).
    """
    dt = 1e-4
    nodes = {"input": Input(shape=(sizes[0],))}
    edges, prev = [], "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(np.broadcast_to(weight_mean, (len(sizes) - 1,))[i], 0.5, (n_out, n_in))
        nodes[f"fc{i}"] = Affine(weight=w * (0.96 if cuba else 0.48) / np.abs(w).max(),
                                 bias=np.zeros(n_out))
        r = np.full(n_out, float(levels) if i == 0 else 1.0)
        zero, one, tau = np.zeros(n_out), np.ones(n_out), np.full(n_out, 2 * dt)
        if i == threshold_layer:
            nodes[f"lif{i}"] = Threshold(threshold=2.0 / r)
        elif cuba:
            nodes[f"lif{i}"] = CubaLIF(tau_syn=tau, tau_mem=tau, r=r, v_leak=zero,
                                       v_threshold=one, v_reset=zero, w_in=one)
        else:
            nodes[f"lif{i}"] = LIF(tau=tau, r=r, v_leak=zero, v_threshold=one, v_reset=zero)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = Output(shape=(sizes[-1],))
    edges.append((prev, "output"))
    return Graph(nodes, tuple(edges),
                 {"dt": dt, "time_steps": time_steps, "input_levels": levels})


def wide_conv_graph(hw=(256, 256), channels=8):
    """Input (1, H, W) -> 1 x 1 convolution -> LIF: 8 x 256 x 256 = 524,288 neurons by
    default, 129 Loihi 2 cores (neuron bound, 4095 per core); cheap to lower and place
    because the kernel is shared."""
    dt = 1e-4
    n = channels * hw[0] * hw[1]
    nodes = {"input": Input(shape=(1, *hw)),
             "conv": Conv2d(weight=np.linspace(0.2, 0.5, channels).reshape(channels, 1, 1, 1),
                            bias=np.zeros(channels), input_hw=hw),
             "lif": LIF(tau=np.full(n, 2 * dt), r=np.ones(n), v_leak=np.zeros(n),
                        v_threshold=np.ones(n), v_reset=np.zeros(n)),
             "output": Output(shape=(n,))}
    return Graph(nodes, (("input", "conv"), ("conv", "lif"), ("lif", "output")),
                 {"dt": dt, "time_steps": 2, "input_levels": 1})


def mesh_target(tmp_path, *, tiles, cores_per_chip, chips, grid, max_neurons=2):
    """Loihi 2 with ``max_neurons`` (2) neurons per core, ``cores_per_chip`` cores on a ``tiles`` mesh, in a
    system of ``chips`` chips on ``grid`` (files in tmp_path)."""
    import re

    from nmc_deploy.targets import load_target, targets_dir

    text = (targets_dir() / "loihi2.toml").read_text()
    for key, value in (("max_neurons", max_neurons), ("cores", cores_per_chip), ("tiles_x", tiles[0]),
                       ("tiles_y", tiles[1])):
        text = re.sub(rf"(\n{key}\s*=\s*\{{\s*value\s*=\s*)\d+", rf"\g<1>{value}", text)
    (tmp_path / "chip.toml").write_text(text.replace('name = "loihi2"', 'name = "chip"'))
    (tmp_path / "sys.toml").write_text(
        'name = "sys"\ndescription = "test system"\nchip_target = "chip.toml"\n[system]\n'
        f'chips = {{ value = {chips}, basis = "assumption", source = "test" }}\n'
        f'chip_grid = {{ value = {list(grid)}, basis = "assumption", source = "test" }}\n')
    return load_target(tmp_path / "sys.toml")


# ------------------------------------------------------------------ netx files

def _netx_neuron(g, i_decay=1024, v_decay=128, vth=80):
    g.create_dataset("neuron/type", (1,), "S10", [b"CUBA"])
    g.create_dataset("neuron/iDecay", data=i_decay)
    g.create_dataset("neuron/vDecay", data=v_decay)
    g.create_dataset("neuron/vThMant", data=vth)
    g.create_dataset("neuron/refDelay", data=1)
    g.create_dataset("neuron/gradedSpike", data=False)


def _netx_layer(root, i, kind, shape, weight=None, neuron=True, **data):
    g = root.create_group(str(i))
    g.create_dataset("type", (1,), "S10", [kind.encode()])
    g.create_dataset("shape", data=np.asarray(shape, np.int64))
    if weight is not None:
        g.create_dataset("weight", data=np.asarray(weight, np.float32))
    for k, v in data.items():
        g.create_dataset(k, data=np.asarray(v))
    if neuron:
        _netx_neuron(g, **({} if neuron is True else neuron))
    return g


def netx_conv_file(path, rng, last="conv"):
    """A lava-dl netx file written by hand (h5py; 6 steps per sample): input (2, 7, 10)
    graded (3 levels), conv 2->4 (kernel 3, stride (2, 1), padding (1, 0), odd weights, a
    bias per channel), pool 2, conv 4->6 (kernel 2, groups 2) and, with ``last="dense"``,
    flatten + dense 5."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs.update({"input_message_bits": 8, "input_levels": 3, "time_steps": 6})
        root = f.create_group("layer")
        _netx_layer(root, 0, "input", (2, 7, 10), neuron=False)
        _netx_layer(root, 1, "conv", (4, 4, 8), rng.integers(-45, 46, (4, 2, 3, 3)) | 1,
                    stride=(2, 1), padding=(1, 0), dilation=(1, 1), groups=1,
                    bias=rng.integers(-3, 6, 4), neuron={"vth": 150})
        _netx_layer(root, 2, "pool", (4, 2, 4), np.full((1, 1, 2, 2), 64), stride=(2, 2),
                    padding=(0, 0), dilation=(1, 1), neuron={"vth": 500})
        _netx_layer(root, 3, "conv", (6, 1, 3), rng.integers(-40, 80, (6, 2, 2, 2)) * 2,
                    stride=1, padding=0, dilation=1, groups=2, neuron={"vth": 200})
        if last == "dense":
            _netx_layer(root, 4, "flatten", (18, 1, 1), neuron=False)
            _netx_layer(root, 5, "dense", (5,), rng.integers(-60, 100, (5, 18)) * 2,
                    neuron={"vth": 40})
    return path
