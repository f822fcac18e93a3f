"""Fixed-point overflow of a netx-style CUBA network: --vth-mant 1023 vs the automatic scale.

A two-layer network with Lava-netx units (weights W/64, integer W in [-128, 255] (mostly
excitatory) into the first layer and [-255, 255] into the second,
threshold vThMant/64 = 96/64, current decay iDecay 1024/4096, voltage decay 128/4096, as
lava-dl's netx -> NIR conversion gives them; 128 binary inputs at 30 % rate, 16 steps):
wraps and saturations per population, spike mismatches against the float model.

Usage: .venv/bin/python benchmarks/quant_overflow.py
"""
import warnings

import numpy as np

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.ir import Affine, CubaLIF, Graph, Input, Output
from nmc_deploy.simulate.fidelity import fidelity_summary
from nmc_deploy.simulate.reference import simulate_float, simulate_reference

DT = 1e-3


def cuba(n: int) -> CubaLIF:
    ones = np.ones(n)
    # Euler: I = (1 - dt/tau_syn) I + (w_in dt/tau_syn) x, v = (1 - dt/tau_mem) v + (r dt/tau_mem) I
    tau_syn, tau_mem = DT * 4096 / 1024, DT * 4096 / 128
    return CubaLIF(tau_syn=tau_syn * ones, tau_mem=tau_mem * ones, r=tau_mem / DT * ones,
                   v_leak=0 * ones, v_threshold=96 / 64 * ones, v_reset=0 * ones,
                   w_in=tau_syn / DT * ones)


def graph(rng) -> Graph:
    w1 = rng.integers(-128, 256, size=(64, 128)) / 64  # mostly excitatory
    w2 = rng.integers(-255, 256, size=(10, 64)) / 64
    nodes = {"input": Input(shape=(128,)), "fc1": Affine(weight=w1, bias=np.zeros(64)),
             "lif1": cuba(64), "fc2": Affine(weight=w2, bias=np.zeros(10)),
             "lif2": cuba(10), "output": Output(shape=(10,))}
    edges = (("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output"))
    return Graph(nodes, edges, {"dt": DT, "time_steps": 16, "input_levels": 1})


def main():
    rng = np.random.default_rng(0)
    fp = lower_graph(graph(rng))
    x = (rng.random((200, 16, 128)) < 0.3).astype(np.int64)
    flt = simulate_float(fp, x)
    print("| scale | population | vth_mant | headroom | current wraps | voltage saturations "
          "| spikes (fixed) | spikes (float) | float-vs-fixed mismatches |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, vth in (("--vth-mant 1023", 1023), ("automatic", None), ("--vth-mant 96", 96)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog = quantize_program(fp, vth_mant=vth)
        ref = simulate_reference(prog, x)
        for row in fidelity_summary(flt, ref, program=prog)["populations"]:
            name = row["population"]
            print(f"| {label} | {name} | {row['vth_mant']} | {row['headroom']:.2f} | "
                  f"{row['u_wraps']} | {row['v_saturations']} | "
                  f"{int(ref.spikes[name].sum())} | {int(flt.spikes[name].sum())} | "
                  f"{row['float_vs_fixed']} |")


if __name__ == "__main__":
    main()
