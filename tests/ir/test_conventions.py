"""Discretisation presets and how dt/integrator/reset/comparison are resolved for a graph."""
import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from nmc_deploy.errors import GraphError
from nmc_deploy.ir import nodes as ir
from nmc_deploy.ir.conventions import (CONVENTIONS, INTEGRATORS, RESETS, Timing, apply_timing,
                                       resolve_timing, rockpool_dt)
from nmc_deploy.ir.graph import Graph


def tiny_graph(metadata=None, lif=None):
    lif = lif or ir.LIF(tau=np.full(2, 2e-4), r=np.ones(2), v_leak=np.zeros(2),
                        v_threshold=np.ones(2), v_reset=np.zeros(2))
    return Graph(nodes={"input": ir.Input(shape=(2,)), "lif": lif,
                        "output": ir.Output(shape=(2,))},
                 edges=(("input", "lif"), ("lif", "output")), metadata=metadata or {})


def test_presets_of_nir_md_5_2():
    expected = {  # name: (dt, integrator, reset, comparison)
        "snntorch": (1e-4, "forward-euler", "subtract-delayed", ">"),
        "sinabs": (1.0, "exact", "subtract", ">="),
        "norse": (1e-3, "forward-euler", "zero", ">"),
        "norse-1.1": (1e-3, "forward-euler", "zero", ">"),
        "rockpool": (None, "rockpool", "subtract", ">="),
        "spikingjelly": (1e-4, "forward-euler", "zero", ">="),
        "nmc-deploy": (1e-4, "forward-euler", "zero", ">="),
    }
    got = {n: (c.dt, c.integrator, c.reset, c.threshold_comparison)
           for n, c in CONVENTIONS.items()}
    assert got == expected
    assert all(c.integrator in INTEGRATORS and c.reset in RESETS and c.mapping
               for c in CONVENTIONS.values())


def test_explicit_beats_preset_beats_metadata_beats_nir_default():
    md = {"dt": 5e-4, "integrator": "exact", "reset": "subtract", "threshold_comparison": ">="}
    t = resolve_timing(md)
    assert (t.dt, t.integrator, t.reset, t.threshold_comparison) == (5e-4, "exact", "subtract",
                                                                      ">=")
    assert t.source == "dt, integrator, reset, threshold_comparison: graph metadata"
    t = resolve_timing(md, convention="norse")
    assert (t.dt, t.integrator, t.reset, t.threshold_comparison) == (1e-3, "forward-euler",
                                                                      "zero", ">")
    t = resolve_timing(md, convention="norse", dt=2e-3, reset="subtract")
    assert (t.dt, t.reset, t.integrator) == (2e-3, "subtract", "forward-euler")
    assert t.source == ("dt, reset: argument; integrator, threshold_comparison: "
                        "convention 'norse'")
    t = resolve_timing({}, dt=1e-4)
    assert (t.integrator, t.reset, t.threshold_comparison) == ("forward-euler", "zero", ">")
    assert "NIR default" in t.source


def test_rockpool_preset_takes_dt_from_metadata_or_argument():
    assert resolve_timing({"dt": 1e-3}, convention="rockpool").dt == 1e-3
    assert resolve_timing({}, convention="rockpool", dt=2e-3).dt == 2e-3


def test_missing_dt_is_one_clear_error():
    with pytest.raises(GraphError) as e:
        resolve_timing({"integrator": "exact"})
    assert str(e.value) == ("graph: no dt in the file; give --dt SECONDS or --convention NAME "
                            "(snntorch, sinabs, norse, norse-1.1, spikingjelly, "
                            "nmc-deploy)")
    with pytest.raises(GraphError, match="convention 'rockpool' hides dt in r"):
        resolve_timing({}, convention="rockpool")


@pytest.mark.parametrize("kw, match", [
    ({"convention": "brian2"}, r"unknown convention \('brian2'\); use one of snntorch, sinabs"),
    ({"dt": -1.0}, r"dt \(-1.0\) is not a positive number of seconds"),
    ({"dt": "soon"}, r"dt \('soon', from argument\) is not a number"),
    ({"dt": 1e-3, "integrator": "rk4"}, r"integrator \('rk4'\) is not one of forward-euler, "
                                        "exact"),
    ({"dt": 1e-3, "threshold_comparison": "=="}, r"threshold_comparison \('=='\)"),
])
def test_bad_values_are_one_line_errors(kw, match):
    with pytest.raises(GraphError, match=match) as e:
        resolve_timing({}, **kw)
    assert "\n" not in str(e.value) and str(e.value).startswith("graph: ")


def test_spellings_of_other_files_are_normalised():
    t = resolve_timing({"dt": np.float64(1e-4), "integrator": "euler", "reset": b"subtraction",
                        "threshold_comparison": "ge"})
    assert (t.integrator, t.reset, t.threshold_comparison) == ("forward-euler", "subtract", ">=")
    assert type(t.dt) is float


def test_timing_is_frozen_and_validated():
    t = Timing(dt=1e-4, integrator="exact", reset="zero", threshold_comparison=">", source="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dt = 1.0
    with pytest.raises(GraphError):
        Timing(dt=0.0, integrator="exact", reset="zero", threshold_comparison=">", source="x")
    assert "alpha = exp(-dt/tau)" in Timing.__doc__ and "v_k - theta" in Timing.__doc__


def test_apply_timing_is_pure():
    g = tiny_graph({"time_steps": 4})
    before = dict(g.metadata)
    t = resolve_timing(g.metadata, convention="sinabs")
    g2 = apply_timing(g, t)
    assert g.metadata == before and g2 is not g
    assert {k: g2.metadata[k] for k in ("dt", "integrator", "reset", "threshold_comparison")} \
        == {"dt": 1.0, "integrator": "exact", "reset": "subtract", "threshold_comparison": ">="}
    assert g2.metadata["time_steps"] == 4 and g2.metadata["timing_source"] == t.source
    assert g2.nodes is not g.nodes and g2.nodes["lif"] is g.nodes["lif"]
    assert apply_timing(g2, t) is g2


def test_resolve_timing_accepts_the_graph_itself():
    t = resolve_timing(tiny_graph({"dt": 1e-4}))
    assert t.dt == 1e-4


def rockpool_lif(rng, dt, n=50):
    tau_mem = rng.uniform(2 * dt, 200 * dt, size=n)
    tau_syn = rng.uniform(2 * dt, 50 * dt, size=n)
    return ir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem,
                      r=tau_mem * np.exp(-dt / tau_mem) / dt, v_leak=np.zeros(n),
                      v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.ones(n))


@pytest.mark.parametrize("dt", [1e-3, 1e-4, 1.0])
def test_rockpool_dt_is_recovered_from_r(rng, dt):
    lif = rockpool_lif(rng, dt)
    g = Graph(nodes={"input": ir.Input(shape=(50,)), "lif": lif,
                     "output": ir.Output(shape=(50,))},
              edges=(("input", "lif"), ("lif", "output")))
    got = rockpool_dt(g)
    assert math.isclose(got, dt, rel_tol=1e-12)
    # rockpool's own importer estimate min(tau/(1+r)) is only approximate
    assert not math.isclose(float(np.min(lif.tau_mem / (1 + lif.r))), dt, rel_tol=1e-6)
    t = resolve_timing(g, convention="rockpool")
    assert math.isclose(t.dt, dt, rel_tol=1e-12) and "(from r)" in t.source
    assert (t.integrator, t.reset, t.threshold_comparison) == ("rockpool", "subtract", ">=")


def test_rockpool_dt_that_disagrees_is_an_error(rng):
    a, b = rockpool_lif(rng, 1e-3, 3), rockpool_lif(rng, 2e-3, 3)
    g = Graph(nodes={"input": ir.Input(shape=(3,)), "a": a, "b": b,
                     "output": ir.Output(shape=(3,))},
              edges=(("input", "a"), ("a", "b"), ("b", "output")))
    with pytest.raises(GraphError, match="rockpool dt from r differs between neurons"):
        rockpool_dt(g)


def test_conventions_module_does_not_import_nir():
    code = ("import sys, nmc_deploy.ir.conventions; "
            "sys.exit(1 if any(m == 'nir' or m.startswith('nir.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_norse_11_tau_scale_follows_dt():
    """norse 1.1.0 writes tau = dt x the time constant: the scale is 1/dt for any --dt; an
    explicit convention wins over a tau_scale in the file's metadata."""
    from nmc_deploy.ir.conventions import resolve_timing

    assert resolve_timing({}, convention="norse-1.1", dt=1e-4).tau_scale == pytest.approx(1e4)
    assert resolve_timing({}, convention="norse-1.1").tau_scale == pytest.approx(1e3)
    assert resolve_timing({"tau_scale": 1e3, "dt": 1e-3}, convention="norse").tau_scale == 1.0
    assert resolve_timing({"tau_scale": 1e3, "dt": 1e-3}).tau_scale == 1e3


def test_spike_rule_presets_are_what_the_tools_build_from_the_file():
    """sinabs' from_nir: MultiSpike (no limit), min_v_mem -theta on IF; rockpool's import:
    floor(v/theta) up to 2**16; the others one spike, no clamp."""
    got = {n: (c.spike_fn, c.max_spikes, c.min_v_mem) for n, c in CONVENTIONS.items()}
    assert got.pop("sinabs") == ("multi", None, "-theta-if")
    assert got.pop("rockpool") == ("multi", 2 ** 16, None)
    assert set(got.values()) == {("single", 1, None)}


def test_spike_rule_argument_beats_file_beats_preset():
    t = resolve_timing({}, convention="sinabs")
    assert (t.spike_fn, t.max_spikes, t.min_v_mem) == ("multi", None, "-theta-if")
    assert t.spike_source == "spike_fn, min_v_mem: convention 'sinabs'"
    t = resolve_timing({"spike_fn": "single", "min_v_mem": -0.5}, convention="sinabs")
    assert (t.spike_fn, t.max_spikes, t.min_v_mem) == ("single", 1, -0.5)
    assert t.spike_source == "spike_fn, min_v_mem: graph metadata"
    t = resolve_timing({"spike_fn": "single"}, convention="sinabs", spikes="multi",
                       v_min="none")
    assert (t.spike_fn, t.max_spikes, t.min_v_mem) == ("multi", None, None)
    t = resolve_timing({"spike_fn": "MultiSpike", "max_spikes": 4}, dt=1e-3)
    assert (t.spike_fn, t.max_spikes, t.min_v_mem) == ("multi", 4, None)
    assert resolve_timing({}, dt=1e-3).spike_fn == "single"
    with pytest.raises(GraphError, match=r"^graph: min_v_mem \('high'\) is not a number"):
        resolve_timing({}, dt=1e-3, v_min="high")
    with pytest.raises(GraphError, match=r"spike_fn \('double'\) is not one of single, multi"):
        resolve_timing({}, dt=1e-3, spikes="double")


def test_assumed_line_states_the_spike_rule_in_force():
    from nmc_deploy.ir.conventions import assumed_reset

    line = assumed_reset(resolve_timing({}, convention="sinabs"))
    assert "\n" not in line
    assert "spikes 'multi' (floor(v/theta) per step, no limit" in line
    assert "min_v_mem -theta on IF nodes" in line and "--spikes single" in line
    line = assumed_reset(resolve_timing({}, convention="rockpool", dt=1e-3, reset="subtract"))
    assert line.startswith("assumed: spikes 'multi' (floor(v/theta) per step, at most 65536")
    assert "reset" not in line.split("(")[0]
    assert assumed_reset(resolve_timing({}, convention="sinabs", reset="zero", spikes="single",
                                        v_min="none")) is None
    assert "spikes" not in assumed_reset(resolve_timing({}, convention="snntorch"))


def test_apply_timing_overrides_a_declared_rule():
    g = tiny_graph({"spike_fn": "multi", "min_v_mem": -1.0, "max_spikes": 3})
    t = resolve_timing(g, dt=1e-3, spikes="single", v_min="none")
    md = apply_timing(g, t).metadata
    assert (md["spike_fn"], md["min_v_mem"], md["max_spikes"]) == ("single", "none", 1)
    assert g.metadata["spike_fn"] == "multi"  # pure
