"""Reference simulator and real Lava give identical spikes on a compiled Spikformer."""
import numpy as np
import pytest

from nmc_deploy.simulate.reference import simulate_reference

pytestmark = pytest.mark.lava


def _mismatches(a, b):
    return {k: int(np.count_nonzero(a.spikes[k] != b.spikes[k])) for k in a.spikes}


def test_reference_equals_lava_on_compiled_spikformer(tiny_program, digits):
    from nmc_deploy.simulate.lava_backend import simulate_lava

    x = digits.x_test[:6]
    ref = simulate_reference(tiny_program, x)
    lav = simulate_lava(tiny_program, x)
    per_pop = _mismatches(ref, lav)
    n_spikes = sum(int(s.sum()) for s in ref.spikes.values())
    silent = [k for k, s in ref.spikes.items() if s.sum() == 0]
    assert n_spikes > 1000 and not silent, f"too little activity to test: silent {silent}"
    assert sum(per_pop.values()) == 0, per_pop
    assert np.array_equal(ref.logits, lav.logits)
    assert any(g.delay > 0 for g in tiny_program.groups)  # residual delays were exercised
    assert tiny_program.attention  # and the attention process


def test_cached_delaysparse_model_equals_lavas_own(tiny_program, digits):
    from nmc_deploy.simulate.lava_backend import simulate_lava

    x = digits.x_test[:2]
    cached = simulate_lava(tiny_program, x, cache_delay_weights=True)
    original = simulate_lava(tiny_program, x, cache_delay_weights=False)
    assert sum(_mismatches(cached, original).values()) == 0
