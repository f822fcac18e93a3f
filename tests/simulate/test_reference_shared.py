"""Shared-weight groups in the reference simulator: the batched products give exactly what the
expanded CSR matrices give (spikes, voltages, logits and every count), on random programs of
token-parallel layers, convolutions (stride, padding, dilation, groups) and pools, with
merged residual inputs, negative exponents, lags, recurrence and sparse kernels."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.program import INPUT, LI, Population, Program, Readout, SynapseGroup
from nmc_deploy.program.shared_weights import ConvShared, TokenShared, as_csr, is_shared
from nmc_deploy.simulate import drive
from nmc_deploy.simulate.reference import simulate_reference


def _pop(rng, name, shape, depth, kind="lif", current=False):
    n = int(np.prod(shape))
    return Population(name=name, shape=shape, kind=kind,
                      du=int(rng.integers(200, 3000)) if current else 4095,
                      dv=rng.integers(0, 4096, n) if rng.random() < 0.5 else 2048,
                      vth=0 if kind == LI else int(rng.integers(20, 60)),
                      bias_mant=rng.integers(-200, 400, n), bias_exp=int(rng.integers(0, 4)),
                      depth=depth, scale=64.0, layer=name)


def _group(name, source, target, w, exp, lag=0, kind="synapses"):
    return SynapseGroup(name=name, source=source, target=target, weights=w, weight_exp=exp,
                        num_message_bits=0, delay=lag, layer=name, kind=kind, lag=lag)


def _kernel(rng, shape, density=1.0, scale=60):
    k = rng.integers(-scale, scale + 20, shape)
    k[rng.random(shape) >= density] = 0
    return k.astype(np.int32)


def random_shared_program(seed: int) -> Program:
    """input (C, H, W) -> conv A -> depthwise pool P -> token layers on P's (C, N) layout:
    Q (from P and A with one kernel: a merged stage), R (the same kernel twice with a
    negative exponent: not merged; a lagged group; a sparse kernel; a CSR group), a
    recurrent population and an LI readout population."""
    rng = np.random.default_rng(seed)
    ci, H = int(rng.integers(1, 4)), int(rng.integers(6, 10))
    groups = int(rng.choice([1, 2]))
    c = groups * int(rng.integers(2, 5))
    stride, pad, dil = ((int(rng.integers(1, 3)),) * 2, (int(rng.integers(0, 2)),) * 2,
                        (int(rng.integers(1, 3)),) * 2)
    conv = ConvShared(_kernel(rng, (c, ci * groups // groups if groups == 1 else ci, 3, 3)),
                      (ci * groups if groups > 1 else ci, H, H), stride, pad, dil, groups)
    ho, wo = conv.out_hw
    pool = ConvShared(np.ones((c, 1, 2, 2), np.int32) * 16, (c, ho, wo), (1, 1), (1, 1),
                      (1, 1), c)  # depthwise, as the compiler's pools
    hp, wp = pool.out_hw
    N = hp * wp
    pops = [_pop(rng, "A", (c, ho, wo), 1), _pop(rng, "P", (c, hp, wp), 2),
            _pop(rng, "A2", (c, hp, wp), 3)]
    tok = TokenShared(sp.csr_matrix(_kernel(rng, (c, c))), N)
    sparse_tok = TokenShared(sp.csr_matrix(_kernel(rng, (c, c), density=0.03, scale=200)), N)
    big = int(rng.integers(0, 2)) == 1
    d2 = 130 if big else c  # a kernel >= 128 x 128 runs as one product
    wide = TokenShared(sp.csr_matrix(_kernel(rng, (d2, c), scale=30)), N)
    gs = [_group("in_A", INPUT, "A", conv, int(rng.integers(-1, 2)), kind="encoding"),
          _group("A_P", "A", "P", pool, 0),
          _group("P_A2", "P", "A2", TokenShared(sp.csr_matrix(_kernel(rng, (c, c))), N), 1)]
    pops.append(_pop(rng, "Q", (c, N), 4))
    gs += [_group("P_Q", "P", "Q", tok, 1), _group("A2_Q", "A2", "Q", tok, 1),
           _group("A2_Q_lag", "A2", "Q", tok, 1, lag=1),
           _group("P_Q_sparse", "P", "Q", sparse_tok, 0)]
    pops.append(_pop(rng, "R", (c, N), 5, current=True))
    gs += [_group("Q_R", "Q", "R", tok, -1), _group("P_R", "P", "R", tok, -1),
           _group("A2_R_csr", "A2", "R", as_csr(tok), 0)]
    pops.append(_pop(rng, "W", (d2, N), 6))
    gs += [_group("R_W", "R", "W", wide, 0), _group("Q_W", "Q", "W", wide, 0),
           _group("W_W", "W", "W", TokenShared(sp.csr_matrix(_kernel(rng, (d2, d2), 0.2)), N),
                  0, lag=1)]
    pops.append(_pop(rng, "L", (4, N), 7, kind=LI))
    gs.append(_group("W_L", "W", "L", TokenShared(sp.csr_matrix(_kernel(rng, (4, d2))), N), 0))
    readout = Readout(weights={"Q": sp.csr_matrix(rng.normal(0, 1, (3, c * N))),
                               "L": sp.csr_matrix(rng.normal(0, 1, (3, 4 * N)))},
                      bias=np.zeros(3), scale=1.0, num_outputs=3)
    in_shape = conv.in_shape
    return Program(tuple(pops), tuple(gs), (), readout, in_shape, 15, 4)


def expanded(program: Program) -> Program:
    """The same program with every shared matrix expanded to its CSR copy."""
    groups = tuple(dataclasses.replace(g, weights=as_csr(g.weights).astype(np.int32))
                   if is_shared(g.weights) else g for g in program.groups)
    return dataclasses.replace(program, groups=groups)


def assert_same(a, b):
    assert set(a.spikes) == set(b.spikes) and set(a.voltages) == set(b.voltages)
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b.spikes[k]), k
    for k in a.voltages:
        assert np.array_equal(a.voltages[k], b.voltages[k]), k
    assert np.array_equal(a.logits, b.logits)
    assert a.stats == b.stats


@pytest.mark.parametrize("seed", range(12))
def test_shared_products_equal_expanded_csr(seed):
    program = random_shared_program(seed)
    x = np.random.default_rng(100 + seed).integers(0, 16, (9, *program.input_shape))
    shared = simulate_reference(program, x, batch_size=4)
    csr = simulate_reference(expanded(program), x, batch_size=9)
    assert_same(shared, csr)
    rates = [s.mean() for s in shared.spikes.values()]
    assert max(rates) > 0.02  # the comparison sees spikes
    assert shared.stats["layers"][0]["synops"] > 0


def test_stages_merge_only_equal_kernels_with_nonnegative_exponents():
    program = random_shared_program(3)
    plan = drive.plan_program(program)
    sources = {p: [tuple(st.sources) for st in plan[p].stages] for p in ("Q", "R", "W")}
    assert sources["Q"] == [("P", "A2"), ("A2",), ("P",)]  # lag and other kernel apart
    assert sources["R"] == [("Q",), ("P",), ("A2",)]  # negative exponent: not merged
    assert sources["W"] == [("R", "Q")]
    assert [g.name for g in plan["W"].own] == ["W_W"]


@pytest.mark.parametrize("seed", [0, 5])
def test_integer_drive_equals_float_drive(seed, monkeypatch):
    # the int64 fallback (drive bound beyond the float limit) computes the same run
    program = random_shared_program(seed)
    x = np.random.default_rng(seed).integers(0, 16, (6, *program.input_shape))
    as_float = simulate_reference(program, x)
    monkeypatch.setattr(drive, "F64_INPUT_LIMIT", 0.0)
    monkeypatch.setattr(drive, "FLOAT32_EXACT", 0.0)
    as_int = simulate_reference(program, x)
    assert_same(as_float, as_int)
