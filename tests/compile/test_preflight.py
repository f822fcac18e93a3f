"""The pre-flight design-rule check: counts equal the lowering's, rules fire on the right
layer with the partitioner's own quantities, bounds never exceed the real placement, and a
model that cannot fit fails in seconds with one line."""
import dataclasses
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.compile import compile_graph
from nmc_deploy.compile.layer_counts import count_layers
from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.partition import partition_program
from nmc_deploy.compile.preflight import (RULES, DesignRuleReport, check_design_rules,
                                          format_design_rules)
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.compile.schedule import schedule_program
from nmc_deploy.errors import CapacityError, DesignRuleError
from nmc_deploy.ir import LIF, Affine, Conv1d, Conv2d, Graph, Input, Output, SumPool2d, Threshold
from nmc_deploy.program.shared_weights import as_csr, is_shared
from nmc_deploy.targets import load_target

DT = 1e-4


def _lif(shape):
    z, o = np.zeros(shape), np.ones(shape)
    return LIF(tau=np.full(shape, 2 * DT), r=o, v_leak=z, v_threshold=o, v_reset=z)


def _graph(nodes, edges, **md):
    return Graph(nodes, tuple(edges), {"dt": DT, "time_steps": 4, **md})


def _fan_in_graph(n_in, n_out=1, rng=None):
    """Input(n_in) -> dense Affine -> LIF(n_out)."""
    rng = rng or np.random.default_rng(0)
    w = rng.uniform(0.01, 0.02, (n_out, n_in))
    return _graph({"input": Input(shape=(n_in,)), "fc": Affine(weight=w, bias=np.zeros(n_out)),
                   "lif": _lif((n_out,)), "output": Output(shape=(n_out,))},
                  [("input", "fc"), ("fc", "lif"), ("lif", "output")])


def _away_from_zero(rng, shape, size):
    """Random weights of either sign within [size, 3 size]: none rounds to zero."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(size, 3 * size, shape)


def _conv_graph(c_in, c_out, hw, rng, density=1.0, pool=False):
    """Input(c_in, hw, hw) -> 3x3 conv -> LIF [-> 2x2 sum pool -> Threshold] -> Output."""
    shape = (c_out, c_in, 3, 3)
    w = _away_from_zero(rng, shape, 0.1) * (rng.random(shape) < density)
    nodes = {"input": Input(shape=(c_in, hw, hw)),
             "conv": Conv2d(weight=w, bias=np.full(c_out, 0.2), input_hw=(hw, hw),
                            padding=(1, 1)),
             "lif": _lif((c_out, hw, hw))}
    edges = [("input", "conv"), ("conv", "lif")]
    last = "lif"
    if pool:
        nodes["pool"] = SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                                  input_chw=(c_out, hw, hw))
        nodes["or"] = Threshold(threshold=np.full((c_out, hw // 2, hw // 2), 0.5))
        edges += [("lif", "pool"), ("pool", "or")]
        last = "or"
    nodes["output"] = Output(shape=nodes[last].output_shape)
    edges.append((last, "output"))
    return _graph(nodes, edges)


def _token_graph(c, n_tokens, rng, density=1.0):
    """Input(c, N) -> token-parallel Conv1d (k = 1) -> LIF(c, N) -> Output."""
    w = _away_from_zero(rng, (c, c, 1), 0.03) * (rng.random((c, c, 1)) < density)
    return _graph({"input": Input(shape=(c, n_tokens)),
                   "fc": Conv1d(weight=w, bias=np.zeros(c), input_length=n_tokens),
                   "lif": _lif((c, n_tokens)), "output": Output(shape=(c, n_tokens))},
                  [("input", "fc"), ("fc", "lif"), ("lif", "output")])


def _program(graph, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(graph)
        return fp, quantize_program(fp, schedule_program(fp), target=target)


def _rows(report, rule):
    return [r for r in report.rules if r.rule == rule]


# ----------------------------------------------------------------------------- counts

def _low_rank_graph():
    from nmc_deploy.export.spikformer import export_spikformer
    from nmc_deploy.models.config import SpikformerConfig

    from conftest import make_active_spikformer

    cfg = SpikformerConfig(img_size=8, embed_dim=16, num_heads=2, depth=2, mlp_ratio=2,
                           time_steps=4, sps_channels=(4, 8, 16), sps_pool=(False, True, False),
                           low_rank=(("blocks.0.attn.q_linear", 4), ("blocks.0.attn.k_linear", 4),
                                     ("blocks.0.attn.v_linear", 4), ("blocks.1.mlp.fc1_linear", 3)))
    return export_spikformer(make_active_spikformer(cfg, 3), {"input_levels": 16})


def _chain_without_neurons(rng):
    """Input -> Affine -> Affine -> LIF: the group is the product of two weighted nodes."""
    a = rng.normal(0, 1, (12, 10)) * (rng.random((12, 10)) < 0.3)
    b = rng.normal(0, 1, (6, 12)) * (rng.random((6, 12)) < 0.5)
    return _graph({"input": Input(shape=(10,)), "a": Affine(weight=a, bias=np.zeros(12)),
                   "b": Affine(weight=b, bias=np.zeros(6)), "lif": _lif((6,)),
                   "output": Output(shape=(6,))},
                  [("input", "a"), ("a", "b"), ("b", "lif"), ("lif", "output")])


def _case_graph(case, tiny_graph, rng):
    from conftest import make_token_spikformer
    from nmc_deploy.export.spikformer import export_spikformer

    if case == "tiny":
        return tiny_graph
    if case == "tokens":
        return export_spikformer(make_token_spikformer(), {"input_levels": 16})
    if case in ("relay", "fused"):
        return _low_rank_graph()
    if case == "chain":
        return _chain_without_neurons(rng)
    if case == "slif":
        return _slif_graph(rng)
    return _conv_graph(3, 5, 6, rng, density=0.6, pool=True)


def _slif_graph(rng):
    """Per-neuron thresholds and leaks (sLIF): the quantizer's scale differs per neuron."""
    g = _fan_in_graph(30, 20, rng)
    theta = rng.uniform(0.05, 3.0, 20)
    lif = LIF(tau=rng.uniform(1.5, 6.0, 20) * DT, r=np.ones(20), v_leak=np.zeros(20),
              v_threshold=theta, v_reset=np.zeros(20))
    return Graph({**g.nodes, "lif": lif}, g.edges, g.metadata)


CASES = ["tiny", "tokens", "relay", "fused", "chain", "conv", "slif"]


@pytest.mark.parametrize("case", CASES)
def test_groups_and_float_counts_equal_the_lowering(case, tiny_graph, rng, monkeypatch):
    """With every nonzero counted, counts equal the lowered float program's."""
    import nmc_deploy.compile.layer_counts as lcm

    monkeypatch.setattr(lcm, "GRID_STEPS", np.inf)
    low_rank = "relay" if case == "relay" else "fused"
    graph = _case_graph(case, tiny_graph, rng)
    before = pickle.dumps(graph)
    lc = count_layers(graph, low_rank=low_rank)
    assert pickle.dumps(graph) == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(graph, low_rank=low_rank)
    assert [(p.name, p.size) for p in fp.populations] == \
        [(n, size) for n, (size, _) in lc.populations.items()]
    real = {(g.source, g.target, g.lag): g for g in fp.groups}
    mine = {(g.source, g.target, g.lag): g for g in lc.groups}
    assert set(real) == set(mine)
    for key, g in mine.items():
        w = real[key].weight
        assert g.kind == real[key].kind
        if g.kind == "attention":
            continue
        c = g.counts
        assert c.synapses == w.nnz and c.shared == is_shared(w)
        assert c.stored == (w.stored if is_shared(w) else w.nnz)
        csr = as_csr(w)
        assert np.array_equal(c.row_synapses, np.diff(csr.indptr)), key
        cols = np.diff(sp.csc_matrix(csr).indptr)
        assert c.sources_used == np.count_nonzero(cols)
        assert c.max_fanout <= cols.max()


@pytest.mark.parametrize("case", CASES)
def test_counts_never_exceed_the_quantized_program(case, tiny_graph, rng):
    """Only weights that survive rounding onto the grid are counted: per neuron and per
    group at most the quantized program's synapses (some small weights round to zero)."""
    low_rank = "relay" if case == "relay" else "fused"
    graph = _case_graph(case, tiny_graph, rng)
    lc = count_layers(graph, low_rank=low_rank)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(graph, low_rank=low_rank)
        program = quantize_program(fp, schedule_program(fp))
    real = {(g.source, g.target, g.lag): g for g in program.groups}
    counted = dropped = 0
    for g in lc.groups:
        if g.kind == "attention":
            continue
        w = real[(g.source, g.target, g.lag)].weights
        c = g.counts
        assert c.synapses <= w.nnz and c.stored <= (w.stored if is_shared(w) else w.nnz)
        assert np.all(c.row_synapses <= np.diff(as_csr(w).indptr))
        counted, dropped = counted + c.synapses, dropped + w.nnz - c.synapses
    assert dropped <= 0.05 * counted  # the bound stays close


# ----------------------------------------------------------------------------- rules

@pytest.mark.parametrize("n_in, fits", [(12000, True), (12001, False)])
def test_fan_in_memory_fires_exactly_where_the_partitioner_refuses(n_in, fits):
    tgt = load_target("loihi2")  # 384000 bits per core, 32 bits per lone synapse
    graph = _fan_in_graph(n_in)
    report = check_design_rules(graph, tgt, raise_on_failure=False)
    (row,) = _rows(report, "fan-in-memory")
    assert (row.layer, row.value, row.limit) == ("lif", 32 * n_in, 384000)
    _, program = _program(graph, tgt)
    if fits:
        assert report.ok
        partition_program(program, tgt)
        return
    assert [r.rule for r in report.failures] == ["fan-in-memory"]
    assert "keep at most 12000 of its 12001 (prune the inputs of lif by >= 0.1 %" in row.hint
    with pytest.raises(DesignRuleError, match=r"^lif: synapse memory bits of one neuron "
                                              r"\(384032\) exceeds synapse_memory_bits_per_core"):
        check_design_rules(graph, tgt)
    with pytest.raises(CapacityError, match="of one neuron"):
        partition_program(program, tgt)


def test_fan_in_axons_of_a_convolution_name_weight_sharing(rng):
    tgt = load_target("loihi1")  # 4096 input axons per core
    graph = _conv_graph(600, 2, 4, rng)
    off = check_design_rules(graph, tgt, weight_sharing=False, raise_on_failure=False)
    (row,) = [r for r in off.failures if r.rule == "fan-in-axons"]
    assert (row.layer, row.value, row.limit) == ("lif", 600 * 9, 4096)
    assert "--weight-sharing on" in row.hint
    on = check_design_rules(graph, tgt, weight_sharing=True, raise_on_failure=False)
    assert on.ok and max(r.value for r in _rows(on, "fan-in-axons")) == 9
    _, program = _program(graph, tgt)
    with pytest.raises(CapacityError, match="input axons of one neuron"):
        partition_program(program, tgt, weight_sharing=False)
    partition_program(program, tgt, weight_sharing=True)


def test_synaptic_delay_matches_the_validator(tiny_graph, tiny_program):
    tgt = load_target("loihi2")
    longest = max(g.delay for g in tiny_program.groups)
    short = dataclasses.replace(tgt, max_synaptic_delay=longest - 1)
    report = check_design_rules(tiny_graph, short, raise_on_failure=False)
    failing = {r.layer for r in report.failures}
    assert failing == {g.target for g in tiny_program.groups if g.delay > longest - 1}
    assert all(r.rule == "synaptic-delay" and r.value == longest for r in report.failures)
    delays = {r.layer: r.value for r in _rows(report, "synaptic-delay")}
    for p in tiny_program.populations:
        ds = [g.delay for g in tiny_program.groups if g.target == p.name and g.kind != "attention"
              and g.source != p.name]
        assert delays.get(p.name, None) == (max(ds) if ds else None)


def test_attention_unit_rule_uses_the_unit_plan(tiny_graph):
    tgt = load_target("loihi2")
    d = 8  # tiny: D = 16, 2 heads, 16 tokens
    narrow = dataclasses.replace(tgt, max_in_axons_per_core=3 * d - 1)
    report = check_design_rules(tiny_graph, narrow, raise_on_failure=False)
    (row,) = _rows(report, "attention-unit")
    assert (row.layer, row.status, row.value) == ("blocks.0.attn.ssa", "fail", 3 * d)
    assert "narrower heads: at most 7 channels per head (>= 3 heads" in row.hint
    split = dataclasses.replace(tgt, max_in_axons_per_core=3 * d * 16 - 1)
    (row,) = _rows(check_design_rules(tiny_graph, split, raise_on_failure=False),
                   "attention-unit")
    assert row.status == "ok" and row.value <= 3 * d * 16 - 1
    (row,) = _rows(check_design_rules(tiny_graph, "loihi1"), "attention-unit")
    assert row.status == "n/a"  # no graded spikes: attention on the embedded cores


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_a_model_that_fits_passes_every_rule(tiny_graph, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_graph(tiny_graph, target)
    report = result.design_rules
    assert report.ok and {r.status for r in report.rules} <= {"ok", "n/a"}
    assert {r.rule for r in report.rules} >= set(RULES) - {"graded-spikes",
                                                           "attention-payload"}
    assert DesignRuleReport.from_json(report.to_json()).to_json() == report.to_json()
    text = format_design_rules(report.to_json())
    assert text.splitlines()[0].startswith("design rules: ")
    assert "all ok" in text.splitlines()[0]
    assert all(any(line.startswith(r.rule + " ") for line in text.splitlines())
               for r in report.worst())


def _small_core(**changes):
    base = load_target("loihi2")
    return dataclasses.replace(base, **{"max_neurons_per_core": 48, "synapse_words_per_core": 900,
                                        "max_in_axons_per_core": 400,
                                        "max_out_axons_per_core": 800, **changes})


def _lower_bound_cases():
    rng = np.random.default_rng(7)
    cases = []
    for seed in range(4):
        r = np.random.default_rng(seed)
        cases.append(("conv", _conv_graph(2, 6, 8, r, density=0.5 + 0.1 * seed, pool=seed % 2)))
        cases.append(("tokens", _token_graph(12, 10 + seed, r, density=0.3 + 0.2 * seed)))
        w = [r.normal(0.3, 0.5, (n_out, n_in)) * (r.random((n_out, n_in)) < 0.2 + 0.2 * seed)
             for n_in, n_out in ((40, 70), (70, 30))]
        nodes = {"input": Input(shape=(40,)), "output": Output(shape=(30,))}
        edges, prev = [], "input"
        for i, wi in enumerate(w):
            nodes[f"fc{i}"] = Affine(weight=wi, bias=np.zeros(wi.shape[0]))
            nodes[f"lif{i}"] = _lif((wi.shape[0],))
            edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
            prev = f"lif{i}"
        edges.append((prev, "output"))
        cases.append(("chain", _graph(nodes, edges)))
    del rng
    return cases


@pytest.mark.parametrize("name, graph", _lower_bound_cases(),
                         ids=lambda x: x if isinstance(x, str) else "")
@pytest.mark.parametrize("sharing", [True, False])
def test_lower_bound_never_exceeds_the_partition_on_small_cores(name, graph, sharing):
    tgt = _small_core()
    report = check_design_rules(graph, tgt, weight_sharing=sharing, raise_on_failure=False)
    _, program = _program(graph, tgt)
    placement = partition_program(program, tgt, weight_sharing=sharing)
    used = len(placement.cores) + len(placement.attention_cores)
    assert report.cores_lower_bound <= used
    assert report.cores_lower_bound >= 1


@pytest.mark.parametrize("preset, target, sharing", [
    ("tiny_graph", "loihi2", True), ("tiny_graph", "loihi2", False),
    ("tiny_graph", "loihi1", True), ("tiny_graph", "loihi1", False),
    ("digits", "loihi2", True), ("digits", "loihi1", False)])
def test_lower_bound_never_exceeds_the_partition_of_the_presets(preset, target, sharing,
                                                                 request):
    if preset == "digits":
        from nmc_deploy.export.spikformer import export_spikformer
        from nmc_deploy.models.config import PRESETS

        from conftest import make_active_spikformer
        graph = export_spikformer(make_active_spikformer(PRESETS["digits"], 0),
                                  {"input_levels": 16})
    else:
        graph = request.getfixturevalue(preset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_graph(graph, target, weight_sharing=sharing)
    used = len(result.placement.cores) + len(result.placement.attention_cores)
    assert 1 <= result.design_rules.cores_lower_bound <= used


def _wide_graph(n):
    """Input(n) -> LIF(n): too many neurons for one Loihi 2 chip when n > 524160."""
    return _graph({"input": Input(shape=(n,)), "lif": _lif((n,)),
                   "output": Output(shape=(n,))},
                  [("input", "lif"), ("lif", "output")], input_levels=1)


def test_too_many_neurons_fail_on_the_cores_rule_with_the_chips_needed():
    with pytest.raises(DesignRuleError) as info:
        check_design_rules(_wide_graph(600_000), "loihi2")
    msg = str(info.value)
    assert msg.startswith("program: cores (lower bound, by neurons) (147) exceeds the cores "
                          "of target loihi2 (128); 1 chip(s) of 128 cores; use a system of >= 2 "
                          "chips")
    assert "pruning weights does not remove neurons" in msg
    assert "[design rule 'cores'] (and 1 more failing rule)" in msg
    assert isinstance(info.value, CapacityError) and "\n" not in msg
    assert [r.rule for r in info.value.report.failures] == ["cores", "neurons"]


def test_unshared_token_copies_fail_on_memory_and_name_sharing(rng):
    graph = _token_graph(256, 1024, rng)  # 67 M expanded synapses, 65,536 stored
    off = check_design_rules(graph, "loihi2", weight_sharing=False, raise_on_failure=False)
    (cores,) = _rows(off, "cores")
    assert cores.status == "fail" and "by synapse memory" in cores.quantity
    assert "share weights (--weight-sharing on: >= " in cores.hint
    assert "prune the model by >= " in cores.hint
    on = check_design_rules(graph, "loihi2", weight_sharing=True)
    assert on.ok and on.stored_weights == 256 * 256 and on.synapses == 256 * 256 * 1024


def test_cli_fails_fast_with_one_line(tmp_path):
    from nmc_deploy.nirio import write_nir

    path = tmp_path / "wide.nir"
    write_nir(_wide_graph(2_000_000), path)
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", "compile", str(path),
                        "--target", "loihi2", "-o", str(tmp_path / "build")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert errors[0].startswith("error: program: cores (lower bound, by neurons) (489) exceeds "
                                "the cores of target loihi2 (128)")
    assert "use a system of >= 4 chips" in errors[0]
    assert not (tmp_path / "build").exists()


def test_unfit_model_fails_before_lowering(monkeypatch):
    """The check runs first: a model that cannot fit never reaches the expensive passes
    (the wall time of the CLI on the papers' models is measured by benchmarks/scale.py)."""
    from nmc_deploy.compile import recipe
    from nmc_deploy.errors import DesignRuleError

    def never(*args, **kwargs):
        raise AssertionError("lowering ran for a model that cannot fit")

    monkeypatch.setattr(recipe, "lower_graph", never)
    with pytest.raises(DesignRuleError, match=r"cores \(lower bound, by neurons\)"):
        recipe.compile_graph(_wide_graph(2_000_000), "loihi2")


@pytest.mark.parametrize("change, rule, layer, value, limit", [
    ({"state_bits": 16}, "state-bits", "program", 24, 16),
    ({"graded_spike_bits": 7}, "attention-payload", "blocks.0.attn.ssa", 8, 7),
    ({"max_neuron_groups_per_core": 1, "cores_per_chip": 10}, "neuron-groups", "program",
     None, 10),
])
def test_program_rules_fire_on_the_named_limit(tiny_graph, change, rule, layer, value, limit):
    tgt = dataclasses.replace(load_target("loihi2"), **change)
    report = check_design_rules(tiny_graph, tgt, raise_on_failure=False)
    failing = {r.rule: r for r in report.failures}
    row = failing[rule]
    assert row.layer == layer and row.limit == limit and row.hint
    assert value is None or row.value == value
    if rule == "neuron-groups":  # one population chunk per core: a core per population
        assert row.value >= len(count_layers(tiny_graph).populations) > limit
        assert failing["cores"].quantity == "cores (lower bound, by neuron groups)"


def test_relays_need_graded_spikes():
    report = check_design_rules(_low_rank_graph(), "loihi1", low_rank="relay",
                                raise_on_failure=False)
    (row,) = _rows(report, "graded-spikes")
    assert row.status == "fail"
    assert row.hint == "deploy the low-rank factors fused (--low-rank fused)"
    assert not _rows(check_design_rules(_low_rank_graph(), "loihi1"), "graded-spikes")


@pytest.mark.parametrize("policy", ["fit", "head"])
def test_lower_bound_counts_the_attention_units_partition_places(tiny_graph, policy):
    tgt = dataclasses.replace(load_target("loihi2"), max_in_axons_per_core=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_graph(tiny_graph, tgt, attention_split=policy)
    units = len(result.placement.attention_cores)
    assert units > 1  # 3 x 16 x 16 = 768 input axons per op do not fit 300
    used = len(result.placement.cores) + units
    assert units < result.design_rules.cores_lower_bound <= used


@pytest.mark.parametrize("preset", ["tiny_graph", "digits", "low-rank relays"])
def test_residual_relay_counts_equal_the_relay_lowering(preset, request, monkeypatch):
    """with_residual_relays gives the relay form's populations (relays before their readers)
    and groups: the same (source, target, lag) structure as lower_graph(residual="relay"),
    up to the relays' names; its lower bound never exceeds the relay form's placement and
    is below the fan-in form's."""
    import nmc_deploy.compile.layer_counts as lcm
    from nmc_deploy.compile.layer_counts import with_residual_relays

    monkeypatch.setattr(lcm, "GRID_STEPS", np.inf)
    if preset == "digits":
        from nmc_deploy.export.spikformer import export_spikformer
        from nmc_deploy.models.config import PRESETS

        from conftest import make_active_spikformer
        graph = export_spikformer(make_active_spikformer(PRESETS["digits"], 0),
                                  {"input_levels": 16})
    elif preset == "low-rank relays":  # low-rank relays read the stream populations
        graph = _low_rank_graph()
    else:
        graph = request.getfixturevalue(preset)
    low_rank = "relay" if preset == "low-rank relays" else "fused"
    lc = with_residual_relays(count_layers(graph, low_rank=low_rank))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(graph, residual="relay", low_rank=low_rank)
    real = set(fp.metadata.get("residual_relays", ()))
    real_relays = [p.name for p in fp.populations if p.name in real]
    mine_relays = [n for n in lc.populations if n in set(lc.residual_relays)]
    assert len(mine_relays) == len(real_relays) > 0
    rename = dict(zip(mine_relays, real_relays))
    assert [(p.name, p.size) for p in fp.populations] == \
        [(rename.get(n, n), size) for n, (size, _) in lc.populations.items()]
    mine = {(rename.get(g.source, g.source), g.target if g.target not in rename
             else rename[g.target], g.lag) for g in lc.groups}
    assert mine == {(g.source, g.target, g.lag) for g in fp.groups}
    tgt = load_target("loihi2")
    relay = check_design_rules(graph, tgt, residual="relay", low_rank=low_rank,
                               raise_on_failure=False)
    fan_in = check_design_rules(graph, tgt, low_rank=low_rank, raise_on_failure=False)
    assert relay.ok and relay.synapses < fan_in.synapses
    assert any(r.rule == "graded-spikes" and "residual relay" in r.quantity
               for r in relay.rules)
    result = compile_graph(graph, tgt, residual="relay", low_rank=low_rank)
    assert relay.cores_lower_bound <= result.placement.cores_used
