"""FixedNeurons.run: the in-place float64 steps (FAST_STEPS) and the range checks skipped on
the drive's observed range give what the int64 ``lif_fixed_step`` gives - spikes, state and
every count - including drives that wrap currents and saturate voltages."""
import numpy as np
import pytest

from nmc_deploy.program import Population
from nmc_deploy.simulate import precision
from nmc_deploy.simulate.precision import FixedNeurons


def _population(rng, shape, reset_subtract: int) -> Population:
    n = int(np.prod(shape))
    return Population(name="p", shape=shape, kind="lif", du=4095,
                      dv=rng.integers(0, 4096, n) if rng.random() < 0.5 else 2048,
                      vth=int(rng.integers(1, 20)), bias_mant=rng.integers(-300, 300, n),
                      bias_exp=int(rng.integers(0, 5)), depth=1, scale=64.0, layer="p",
                      reset_subtract=reset_subtract)


def _run(pop, drive, dtype, bound):
    neurons = FixedNeurons(pop, None, drive.shape[1], dtype, bound)
    volts = np.zeros((drive.shape[0], drive.shape[1], pop.size),
                     np.float64 if np.dtype(dtype).kind == "f" else np.int64)
    out = neurons.run(drive, volts)
    return out, volts, neurons


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("scale", [10, 3000, 2 ** 17])  # in range; near; wrapping/saturating
@pytest.mark.parametrize("seed", range(4))
def test_float_run_equals_int64_steps(seed, scale, fast, monkeypatch):
    monkeypatch.setattr(precision, "FAST_STEPS", fast)
    monkeypatch.setattr(precision, "BLOCK_ELEMENTS", 64)  # several blocks, threads
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 7)), int(rng.integers(3, 9)))
    pop = _population(rng, shape, int(rng.choice([0, 0, 7 * 64])))
    T, B = int(rng.integers(2, 9)), int(rng.integers(1, 5))
    drive = rng.integers(-scale, 2 * scale, (T, B, *shape))
    # the static bound is loose (as the drive's), the observed range decides the checks
    f_out, f_volts, f = _run(pop, drive.astype(np.float64), np.float64, 4.0 * scale)
    i_out, i_volts, i = _run(pop, drive, np.int64, np.inf)
    assert np.array_equal(f_out, i_out)
    assert np.array_equal(f_volts, i_volts)
    assert np.array_equal(f.v, i.v)
    assert (f.active, f.u_wraps, f.v_saturations) == (i.active, i.u_wraps, i.v_saturations)
    if scale == 2 ** 17:
        assert i.u_wraps > 0 or i.v_saturations > 0  # the checks were needed and ran
    assert 0 < f_out.mean() < 1
