"""Rendering of cost reports: text table, JSON, self-contained HTML, atomic writes."""
from __future__ import annotations

import html
import json
import re

import pytest

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.report.energy import estimate_costs
from nmc_deploy.report.render import render_html, render_json, render_table, write_report
from nmc_deploy.targets import load_target


def _activity(encoding_synops: int = 1000) -> dict:
    return {
        "backend": "reference", "samples": 2, "time_steps": 4, "pipeline_depth": 1,
        "layers": [
            {"name": "patch_embed.enc", "kind": "encoding", "synops": encoding_synops,
             "synapses": 300, "population": "lif1"},
            {"name": "block0.mlp<fc1>", "kind": "synapses", "synops": 400, "synapses": 200,
             "population": "lif2"},
            {"name": "block0.attn", "kind": "attention", "synops": 100, "synapses": 0,
             "population": "lif2"},
        ],
        "populations": [
            {"name": "lif1", "neurons": 20, "spikes": 50, "neuron_updates": 160,
             "active_updates": 120},
            {"name": "lif2", "neurons": 10, "spikes": 20, "neuron_updates": 80,
             "active_updates": 40},
        ],
    }


_PROGRAM = {"target": "loihi2", "cores_used": 1, "cores": [
    {"core": 0, "populations": [{"name": "lif1", "neurons": 20, "fraction": 1.0},
                                {"name": "lif2", "neurons": 10, "fraction": 1.0}],
     "neurons": 30, "synapses": 500, "synapse_memory_bits": 0, "in_axons": 0, "out_axons": 0}]}


@pytest.fixture(scope="module")
def report() -> dict:
    return estimate_costs(_activity(), _PROGRAM, load_target("loihi2"))


def test_table_has_layers_totals_energy_latency_sources(report):
    text = render_table(report)
    for row in report["layers"]:
        assert row["name"] in text
    total_line = next(line for line in text.splitlines() if line.startswith("total"))
    assert "750" in total_line                                # synops per sample
    for model, uj in report["energy_per_sample_uj"].items():
        assert f"{uj * 1e6:,.3f}" in total_line                # total pJ per sample
        assert re.search(rf"{model}\s+{uj:.6g} µJ", text)
    assert f"{report['latency_per_sample_us']:.6g} µs" in text
    assert "1 cores used" in text
    assert "Sources:" in text and "Davies" in text and "Horowitz" in text
    assert "estimated (model)" in text and "measured (simulated activity)" in text


def test_table_columns_are_aligned(report):
    lines = render_table(report).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("layer"))
    table = lines[header:header + 2 + len(report["layers"]) + 2]
    rules = [line for line in table if line.startswith("---")]
    assert len(rules) == 2
    width = len(rules[0])
    assert all(len(line) == width for line in table if not line.startswith("total"))


def test_json_round_trips(report):
    assert json.loads(render_json(report)) == report


def test_html_is_self_contained_with_one_bar_per_layer_and_model(report):
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    by_layer = page.split("By layer")[1].split("</svg>")[0]
    n_models = len(report["energy_per_sample_uj"])
    assert by_layer.count("<rect") == len(report["layers"]) * n_models
    assert "<script" not in page and "<link" not in page and "src=" not in page
    for row in report["layers"]:
        assert html.escape(row["name"]) in page
    assert "block0.mlp&lt;fc1&gt;" in page                  # names are escaped
    for model, cites in report["sources"].items():
        assert html.escape(model) in page
        for cite in cites:
            assert html.escape(cite) in page
    assert "energy per sample [pJ]" in page                 # axis label
    assert "estimated (model)" in page and "measured (simulated activity)" in page


def test_html_bars_stay_linear_for_wide_ranges():
    report = estimate_costs(_activity(encoding_synops=10**9), _PROGRAM, load_target("loihi2"))
    page = render_html(report)
    assert "log scale" not in page and "(linear scale)" in page
    by_layer = page.split("By layer")[1].split("</svg>")[0]
    assert by_layer.count("<rect") == len(report["layers"]) * len(report["energy_per_sample_uj"])


@pytest.mark.parametrize("fmt, check", [
    ("table", lambda text, r: text.startswith("nmc-deploy cost report")),
    ("json", lambda text, r: json.loads(text) == r),
    ("html", lambda text, r: "<svg" in text),
])
def test_write_report_is_atomic(tmp_path, report, fmt, check):
    path = tmp_path / "out" / f"report.{fmt}"
    written = write_report(report, fmt, path)
    assert written == path
    assert check(path.read_text(encoding="utf-8"), report)
    # overwrite in place; no temporary files are left behind
    write_report(report, fmt, path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_write_report_rejects_unknown_format(tmp_path, report):
    with pytest.raises(NmcDeployError, match="report format 'pdf': unknown"):
        write_report(report, "pdf", tmp_path / "r.pdf")
    assert not (tmp_path / "r.pdf").exists()


def test_chips_and_traffic_are_shown():
    from test_energy import _with_traffic

    program = dict(_PROGRAM, cores=[dict(_PROGRAM["cores"][0], chip=0, tile=[0, 0])],
                   system={"name": "kapoho_point", "chip": "loihi2", "chips": 8,
                           "cores_per_chip": 128, "chip_grid": [4, 2], "tile_grid": [16, 8],
                           "cores_per_tile": 1, "chips_used": 1,
                           "per_chip": [{"chip": 0, "position": [0, 0], "cores": 1,
                                         "binding": "synapse_memory_bits", "binding_cores": 1,
                                         "utilization": {"neurons": 0.5,
                                                         "synapse_memory_bits": 0.75}}]})
    program["target"] = "kapoho_point"
    rep = estimate_costs(_with_traffic(_activity()), program, load_target("kapoho_point"))
    assert rep["chips_used"] == 1 and rep["system"]["per_chip"][0]["binding_cores"] == 1
    text = render_table(rep)
    assert "1 cores used on 1 of 8 chips (kapoho_point: loihi2 chips of 128 cores)" in text
    assert "chip 0 at (0, 0): 1/128 cores, binds synapse memory bits on 1 of 1 cores " \
           "(mean 75.0 %)" in text
    assert f"messages / step: {65 / 8:,.2f}" in text and "chip hops / step: 1.25" in text
    page = render_html(rep)
    assert "Chips (compiled): 1 of 8 used" in page and "messages between chips / step" in page
    assert json.loads(render_json(rep))["traffic"]["longest_route"]["chip_hops"] == 1
