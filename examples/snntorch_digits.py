"""An snnTorch network trained on sklearn's 8x8 digits, exported with snnTorch's own NIR
converter, ready for ``nmc-deploy compile --convention snntorch``.

    python examples/snntorch_digits.py OUT_DIR [--epochs 8] [--steps 16] [--seed 0]

The network keeps snnTorch's defaults (``reset_mechanism="subtract"``, ``reset_delay=True``):
``Linear(64, 48) -> RLeaky(48, all-to-all recurrence) -> Linear(48, 10) -> Leaky(10)``,
trained for a few epochs on rate-coded digits (each pixel spikes with probability
intensity/16 per step; seeded) with cross-entropy on the output spike counts.

Writes into OUT_DIR:

* ``snn.nir``: ``snntorch.export_to_nir`` of the trained network;
* ``spikes.npy``: the test images as rate-coded spikes, (360, steps, 64) uint8;
* ``labels.npy``: their labels, (360,) int64;
* ``snntorch_outputs.npy``: snnTorch's own output spikes on those inputs, (360, steps, 10)
  uint8, run in float64 (so that float32 rounding decides no threshold crossing): what
  ``nmc-deploy simulate`` must reproduce (its ``outputs_*.npz`` key ``float``).

Then::

    nmc-deploy compile OUT_DIR/snn.nir --convention snntorch -o build_snn
    nmc-deploy simulate build_snn --input OUT_DIR/spikes.npy --labels OUT_DIR/labels.npy --compare

The script needs torch and snntorch (the test environment has both; ``make venv`` installs
them). It prints snnTorch's own test accuracy.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

N_IN, N_HIDDEN, N_OUT = 64, 48, 10
BETA_HIDDEN, BETA_OUT = 0.85, 0.9


def build_net(seed: int):
    """The network, with per-neuron beta and threshold tensors (snnTorch's exporter writes
    scalars as 0-d arrays, which carry no neuron count)."""
    import snntorch as snn

    torch.manual_seed(seed)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(N_IN, N_HIDDEN)
            self.lif1 = snn.RLeaky(beta=torch.full((N_HIDDEN,), BETA_HIDDEN),
                                   threshold=torch.ones(N_HIDDEN), linear_features=N_HIDDEN,
                                   all_to_all=True, init_hidden=True)
            self.fc2 = torch.nn.Linear(N_HIDDEN, N_OUT)
            self.lif2 = snn.Leaky(beta=torch.full((N_OUT,), BETA_OUT),
                                  threshold=torch.ones(N_OUT), init_hidden=True)

        def forward(self, x):
            return self.lif2(self.fc2(self.lif1(self.fc1(x))))

    return Net()


def _heaviside(v: torch.Tensor) -> torch.Tensor:
    return (v > 0).to(v.dtype)


def as_float64(net):
    """The trained network in float64 for evaluation. snnTorch's surrogate spike functions
    return float32 spikes whatever the voltage's dtype (``(v > 0).float()``), which a float64
    recurrent Linear refuses; the same step function in the voltage's dtype replaces them
    (the forward pass is unchanged: only the surrogate gradient, unused here, goes)."""
    net = net.double()
    for lif in (net.lif1, net.lif2):
        lif.spike_grad = _heaviside
    return net


def rate_code(images: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """(B, 64) intensities 0..16 -> (B, steps, 64) uint8 spikes, P(spike) = intensity/16."""
    rng = np.random.default_rng(seed)
    p = images.reshape(len(images), 1, -1) / 16.0
    return (rng.random((len(images), steps, images[0].size)) < p).astype(np.uint8)


def run(net, spikes: np.ndarray) -> torch.Tensor:
    """The network over the (B, T, 64) spikes; (B, T, 10) output spikes."""
    from snntorch import utils

    utils.reset(net)
    x = torch.as_tensor(spikes, dtype=next(net.parameters()).dtype)
    return torch.stack([net(x[:, t]) for t in range(x.shape[1])], dim=1)


def train(net, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    rng = np.random.default_rng(seed)
    target = torch.as_tensor(y)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 64)):
            counts = run(net, x[idx]).sum(dim=1)
            loss = torch.nn.functional.cross_entropy(counts, target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def export(net, path: Path) -> None:
    import nir
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0])
    nir.write(str(path), graph)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(digits.data, digits.target, test_size=360,
                                              random_state=0, stratify=digits.target)
    net = build_net(args.seed)
    train(net, rate_code(x_tr, args.steps, args.seed), y_tr, args.epochs, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    export(net, args.out / "snn.nir")
    spikes = rate_code(x_te, args.steps, args.seed + 1)
    with torch.no_grad():
        out = run(as_float64(net), spikes).numpy()
    np.save(args.out / "spikes.npy", spikes)
    np.save(args.out / "labels.npy", y_te.astype(np.int64))
    np.save(args.out / "snntorch_outputs.npy", out.astype(np.uint8))
    acc = float(np.mean(out.sum(axis=1).argmax(axis=1) == y_te))
    print(f"snnTorch: test accuracy {100 * acc:.2f} % on {len(y_te)} digits "
          f"({args.steps} steps) -> {args.out}/snn.nir, spikes.npy, labels.npy, "
          "snntorch_outputs.npy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
