"""Shared-weight groups in the reference simulator: the batched products give exactly what the
expanded CSR matrices give (spikes, voltages, logits and every count), on random programs of
token-parallel layers, convolutions (stride, padding, dilation, groups) and pools, with
merged residual inputs, negative exponents, lags, recurrence and sparse kernels.

Stages of one kernel with a negative exponent (``drive._floor_sum``): the sum of the groups'
own floors, from one merged product and packed residual products, equals the plain
per-group integer sum ``sum_g (W @ s_g) >> k`` value for value, on adversarial kernels (odd
weights everywhere, magnitudes up to the float32 bound and past it) and dense spikes."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.loihi.synapses import synaptic_input
from nmc_deploy.program import INPUT, LI, Population, Program, Readout, SynapseGroup
from nmc_deploy.program.shared_weights import ConvShared, TokenShared, as_csr, is_shared
from nmc_deploy.simulate import drive
from nmc_deploy.simulate.precision import FIXED
from nmc_deploy.simulate.reference import simulate_reference
from nmc_deploy.simulate.sources import SourceStreams


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


def test_stages_merge_only_equal_kernels_lags_and_exponents():
    program = random_shared_program(3)
    plan = drive.plan_program(program)
    sources = {p: [tuple(st.sources) for st in plan[p].stages] for p in ("Q", "R", "W")}
    assert sources["Q"] == [("P", "A2"), ("A2",), ("P",)]  # lag and other kernel apart
    # a negative exponent merges too (each group still floors on its own: drive._floor_sum)
    assert sources["R"] == [("Q", "P"), ("A2",)]
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


def _spike_pop(name, shape, depth):
    return Population(name=name, shape=shape, kind="lif", du=4095, dv=0, vth=10,
                      bias_mant=0, bias_exp=0, depth=depth, scale=64.0, layer=name)


def _streams(rng, weights, in_shape, n_groups, exp, density, lag=0, T=3, B=4):
    """A program whose population R reads ``n_groups`` spike sources through ``weights``
    (one kernel, exponent ``exp``), and its source streams with random spikes set."""
    n_in = int(np.prod(in_shape))
    srcs = [_spike_pop(f"S{j}", in_shape, 1) for j in range(n_groups)]
    out_shape = (weights.kernel.shape[0], weights.shape[0] // weights.kernel.shape[0])
    pops = tuple(srcs) + (_spike_pop("R", out_shape, 2),)
    groups = tuple(_group(f"S{j}_R", f"S{j}", "R", weights, exp, lag) for j in range(n_groups))
    readout = Readout(weights={"R": sp.csr_matrix((1, weights.shape[0]))}, bias=np.zeros(1),
                      scale=1.0, num_outputs=1)
    program = Program(pops, groups, (), readout, (1,), 15, T)
    src = SourceStreams(program, np.zeros((B, T, 1), np.int64), FIXED)
    for p in srcs:
        src.spikes[p.name] = rng.random((T, B, n_in)) < density
    return program, src


def _plain(program, src, stage):
    """sum_g (W_g @ s_g) >> k with the expanded CSR matrices in int64 (the plain path)."""
    total = 0
    for g in stage.groups:
        s = src.rows(g.source, g.lag).T.astype(np.int64)
        total = total + synaptic_input(as_csr(g.weights), s, g.weight_exp)
    return total.T  # (T*B, n)


def _odd_kernel(rng, shape, scale, dense=True):
    k = 2 * rng.integers(-scale, scale, shape) + 1  # every weight odd: widest residual fields
    if not dense:
        k[rng.random(shape) >= 0.03] = 0
    return k.astype(np.int32)


@pytest.mark.parametrize("n_groups", [3, 5, 9, 13])
@pytest.mark.parametrize("exp", [-1, -2, -3, -5])
def test_floor_sum_equals_per_group_floors_token(n_groups, exp):
    rng = np.random.default_rng(n_groups * 10 - exp)
    c_in, c_out, N = 24, 40, 6
    # |W| up to 2**18: the merged product's bound passes 2**24 for the larger n_groups, so
    # it runs in float64 while the residual products stay packed in float32/float64
    scale = int(rng.choice([3, 2 ** 10, 2 ** 17]))
    w = TokenShared(sp.csr_matrix(_odd_kernel(rng, (c_out, c_in), scale)), N)
    program, src = _streams(rng, w, (c_in, N), n_groups, exp, density=0.9)
    (stage,) = drive.plan_program(program)["R"].stages
    assert len(stage.groups) == n_groups
    dtype = drive.exact_dtype(drive._stage_bounds(stage, src)[0])
    got = drive._floor_sum(stage, src, dtype)
    want = _plain(program, src, stage)
    assert got.dtype == dtype
    assert np.array_equal(got.reshape(want.shape), want)
    as_int = drive._floor_sum(stage, src, np.dtype(np.int64))  # one product per group
    assert as_int.dtype == np.int64 and np.array_equal(as_int.reshape(want.shape), want)


def test_floor_sum_packs_when_cheaper_and_not_otherwise():
    rng = np.random.default_rng(0)
    w = TokenShared(sp.csr_matrix(_odd_kernel(rng, (8, 16), 50)), 4)
    program, src = _streams(rng, w, (16, 4), 9, -1, density=0.5)
    (stage,) = drive.plan_program(program)["R"].stages
    bits, per, dtype, _ = drive._packing(stage, 9, 1)
    # row sums of W mod 2 are 16 (every weight odd): 5-bit fields, 4 in a float32 product
    # (1 + 3 products) or 10 in a float64 one at twice the cost (1 + 2 x 1): float64
    assert (bits, per, dtype) == (5, 9, np.float64)
    assert drive._packing(stage, 4, 1)[1:3] == (4, np.float32)  # 1 + 1 against 1 + 2
    assert drive._packing(stage, 2, 1) is None  # 1 + 1 products: no saving
    # a shift so wide that a field holds more than half a float64 mantissa: no packing
    assert drive._packing(stage, 9, 30) is None


@pytest.mark.parametrize("seed", range(4))
def test_floor_sum_equals_per_group_floors_conv_sparse_and_lagged(seed):
    rng = np.random.default_rng(seed)
    if seed % 2:
        w = ConvShared(_odd_kernel(rng, (6, 3, 3, 3), 2 ** 12), (3, 7, 7), (2, 2), (1, 1),
                       (1, 1), 1)
        in_shape = (3, 7, 7)
    else:
        w = TokenShared(sp.csr_matrix(_odd_kernel(rng, (30, 60), 2 ** 9, dense=False)), 5)
        in_shape = (60, 5)
    program, src = _streams(rng, w, in_shape, 6, -int(rng.integers(1, 4)), density=0.7,
                            lag=seed % 3)
    (stage,) = drive.plan_program(program)["R"].stages
    dtype = drive.exact_dtype(drive._stage_bounds(stage, src)[0])
    got = drive._floor_sum(stage, src, dtype)
    want = _plain(program, src, stage)
    assert np.array_equal(got.reshape(want.shape), want)


@pytest.mark.parametrize("seed", range(6))
def test_merged_negative_stage_runs_equal_expanded_csr(seed):
    # random_shared_program's R gets two more groups of its -1 kernel (three sources, one
    # lagged twice: 4 groups, packed), the whole run against the expanded CSR program
    program = random_shared_program(seed)
    q_r = next(g for g in program.groups if g.name == "Q_R")
    extra = (dataclasses.replace(q_r, name="A2_R", source="A2", layer="A2_R"),
             dataclasses.replace(q_r, name="P_R2", source="P", layer="P_R2"))
    program = dataclasses.replace(program, groups=program.groups + extra)
    stage = drive.plan_program(program)["R"].stages[0]
    assert stage.sources == ["Q", "P", "A2", "P"]
    x = np.random.default_rng(200 + seed).integers(0, 16, (7, *program.input_shape))
    assert_same(simulate_reference(program, x, batch_size=3),
                simulate_reference(expanded(program), x))


def test_counts_are_step_sums_computed_on_access():
    program = random_shared_program(1)
    x = np.random.default_rng(1).integers(0, 16, (5, *program.input_shape))
    run = simulate_reference(program, x)
    assert set(run.counts) == set(run.spikes) and len(run.counts) == len(run.spikes)
    for name, s in run.spikes.items():
        c = run.counts[name]
        assert c.dtype == np.int64 and np.array_equal(c, s.sum(axis=0))
        assert run.counts[name] is c  # kept after the first access
    both = simulate_reference(program, x, batch_size=2)  # merged batches: plain arrays
    assert all(np.array_equal(both.counts[k], run.counts[k]) for k in run.counts)
