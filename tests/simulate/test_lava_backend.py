"""Reference simulator and real Lava give identical spikes on a compiled Spikformer."""
import numpy as np
import pytest

from nmc_deploy.simulate.reference import simulate_reference

pytestmark = pytest.mark.lava


def _mismatches(a, b):
    return {k: int(np.count_nonzero(a.spikes[k] != b.spikes[k])) for k in a.spikes}


def test_reference_equals_lava_on_compiled_spikformer(tiny_program, digits):
    from nmc_deploy.simulate.lava.backend import simulate_lava

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
    from nmc_deploy.simulate.lava.backend import simulate_lava

    x = digits.x_test[:2]
    cached = simulate_lava(tiny_program, x, cache_delay_weights=True)
    original = simulate_lava(tiny_program, x, cache_delay_weights=False)
    assert sum(_mismatches(cached, original).values()) == 0


@pytest.mark.slow
def test_reference_equals_lava_on_the_digits_preset(digits):
    """The full preset as `make demo` compiles it (random weights that make every layer fire)."""
    import warnings

    from conftest import make_active_spikformer
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.models.spikformer import preset_config
    from nmc_deploy.simulate.lava.backend import simulate_lava

    model = make_active_spikformer(preset_config("digits"), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = quantize_program(lower_graph(export_spikformer(model, {"input_levels": 16})))
    x = digits.x_test[:4]
    ref, lav = simulate_reference(program, x), simulate_lava(program, x)
    assert all(s.sum() > 0 for s in ref.spikes.values())
    assert sum(_mismatches(ref, lav).values()) == 0
