"""The one-page HTML report: sections in order, verdict, a heatmap cell per core, the traffic
matrix, well-formed markup, size on a large build."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from nmc_deploy.report.deployment import deployment_sections
from nmc_deploy.report.energy import estimate_costs
from nmc_deploy.report.page import SECTIONS
from nmc_deploy.report.render import render_html, render_table
from nmc_deploy.targets import load_target

_VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


class _Checker(HTMLParser):
    """Records section ids in order and every tag left open or closed out of order."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: list[str] = []
        self.classes: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if attrs.get("class"):
            self.classes[f"{tag}.{attrs['class']}"] = self.classes.get(
                f"{tag}.{attrs['class']}", 0) + 1
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <circle .../>: opened and closed
        attrs = dict(attrs)
        if attrs.get("class"):
            key = f"{tag}.{attrs['class']}"
            self.classes[key] = self.classes.get(key, 0) + 1

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _check(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    return checker


def _activity() -> dict:
    return {
        "backend": "reference", "samples": 2, "time_steps": 4, "pipeline_depth": 1,
        "layers": [{"name": "enc", "kind": "encoding", "synops": 1000, "synapses": 300,
                    "population": "a"},
                   {"name": "fc<1>", "kind": "synapses", "synops": 400, "synapses": 200,
                    "population": "b"}],
        "populations": [{"name": "a", "neurons": 20, "spikes": 50, "neuron_updates": 160,
                         "active_updates": 120},
                        {"name": "b", "neurons": 10, "spikes": 20, "neuron_updates": 80,
                         "active_updates": 40}],
    }


def _placement() -> dict:
    limits = {"max_neurons_per_core": 40, "synapse_memory_bits_per_core": 384000,
              "max_in_axons_per_core": 16000, "max_out_axons_per_core": 16000,
              "max_neuron_groups_per_core": 8}
    return {"target": "loihi2", "cores_used": 2, "chips_used": 1, "limits": limits,
            "cores": [{"core": i, "kind": "neuro", "chip": 0, "tile": [i, 0],
                       "populations": [{"name": n, "neurons": k, "fraction": 1.0}],
                       "neurons": k, "synapses": 300, "synapse_memory_bits": 2400,
                       "in_axons": 20, "out_axons": 20} for i, (n, k) in enumerate(
                           [("a", 20), ("b", 10)])],
            "system": {"name": "loihi2", "chip": "loihi2", "chips": 1, "cores_per_chip": 128,
                       "chip_grid": [1], "tile_grid": [16, 8], "cores_per_tile": 1,
                       "chips_used": 1, "per_chip": []},
            "quantization": {"weight_bits": 8, "vth_mant": 1023, "zeroed_weights": 3,
                             "clipped_weights": 0, "clipped_biases": 0, "float_synapses": 500,
                             "decay_rounding": {}}}


PAIRS = {"source": [0, 0, 1], "destination": [0, 1, 1], "messages": [9, 4, 2],
         "hops": [0, 4, 0], "chip_hops": [0, 0, 0]}
SIMS = {"compare": {"dataset": "digits", "samples": 2, "accuracy_float": 1.0,
                    "accuracy_fixed_reference": 0.5, "accuracy_fixed_lava": 0.5,
                    "spike_mismatches_per_population": {"a": 0, "b": 0},
                    "spikes_compared": 70, "prediction_mismatches": 0}}


@pytest.fixture(scope="module")
def report() -> dict:
    rep = estimate_costs(_activity(), _placement(), load_target("loihi2"))
    rep.update(deployment_sections(_placement(), SIMS, PAIRS, samples=2, time_steps=4))
    return rep


def test_every_section_in_order_and_well_formed(report):
    page = render_html(report)
    checker = _check(page)
    assert checker.sections == list(SECTIONS)
    assert checker.errors == [] and checker.stack == []
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert "fits on loihi2: 2 of 128 cores on 1 of 1 chip" in page
    assert "binding resource: neurons (2 of 2 cores)" in page
    # above the fold: verdict, then fidelity and cost, before any chart
    assert page.index('id="cost"') < page.index("<svg")


def test_heatmap_cell_per_core_and_matrix_cell_per_pair(report):
    checker = _check(render_html(report))
    assert checker.classes["rect.core"] == 2
    assert checker.classes["rect.cell"] == len(PAIRS["source"])
    page = render_html(report)
    assert "<title>core 0 → 1: 4 messages (0.50/step), 4 tile hops</title>" in page
    assert "core 1 (neuro) chip 0 tile (1, 0): neurons binds at 25.0 %" in page


def test_energy_bars_are_linear_one_per_value(report):
    page = render_html(report)
    energy = page.split('<section id="energy">')[1].split("</section>")[0]
    models = report["energy_per_sample_uj"]
    terms = sum(len(v) for v in report["energy_breakdown_pj_per_sample"].values())
    assert energy.count('class="bar"') == terms + len(report["layers"]) * len(models)
    assert "(linear scale)" in energy and "log scale" not in page


def test_fidelity_and_placement_text(report):
    page = render_html(report)
    fid = page.split('<section id="fidelity">')[1].split("</section>")[0]
    assert "50.00 %" in fid and "Spike mismatches reference vs Lava" in fid
    assert "3 of 500 weights rounded to zero" in fid
    assert "greedy placement (no alternative computed)" in page
    text = render_table(report).splitlines()
    assert text[0].startswith("Verdict: fits on loihi2: 2 of 128 cores")
    assert text[1].startswith("Fidelity: accuracy float 100.00 % (2 samples)")


def test_a_cost_only_report_still_renders():
    rep = estimate_costs(_activity(), _placement(), load_target("loihi2"))
    checker = _check(render_html(rep))
    assert checker.sections == list(SECTIONS) and checker.errors == []


def test_3000_cores_stay_under_2_mb(report):
    n, per_chip = 3000, 120
    placement = _placement()
    placement["cores_used"] = n
    placement["system"] = dict(placement["system"], chips=30, chips_used=25)
    placement["cores"] = [dict(placement["cores"][0], core=i, chip=i // per_chip,
                               tile=[(i % per_chip) % 16, (i % per_chip) // 16])
                          for i in range(n)]
    src = [i for i in range(n) for _ in range(10)]
    dst = [(i * 7 + k * 131) % n for i in range(n) for k in range(10)]
    pairs = {"source": src, "destination": dst, "messages": [3] * len(src),
             "hops": [5] * len(src), "chip_hops": [1] * len(src)}
    big = dict(report, **deployment_sections(placement, SIMS, pairs, samples=2, time_steps=4))
    page = render_html(big)
    assert len(page.encode()) < 2_000_000
    checker = _check(page)
    assert checker.classes["rect.core"] == n and checker.errors == []
    assert 0 < checker.classes["rect.cell"] <= 48 * 48 + 25 * 25     # binned, plus chips
    assert "fits on loihi2: 3,000 of 3,840 cores on 25 of 30 chips" in page
    assert re.search(r"3,000 cores in 48 bins", page)


def test_placement_record_and_latency_bound_are_rendered(report):
    placement = _placement()
    placement["placement"] = {
        "method": "traffic", "seed": 7, "rates": "measured",
        "estimates": {"greedy": {"messages_per_step": 8.0, "message_hops_per_step": 20.0},
                      "traffic": {"messages_per_step": 8.0, "message_hops_per_step": 5.0}},
        "baseline": {"core_chip": [0, 0], "core_tile": [[1, 0], [0, 0]]}}
    rep = dict(report, **deployment_sections(placement, SIMS, PAIRS, samples=2, time_steps=4))
    rep["latency"] = dict(rep["latency"], bound="traffic",
                          critical_terms_ns={"synops": 10.0, "messages": 30.5})
    page = render_html(rep)
    section = page.split('<section id="placement">')[1].split("</section>")[0]
    assert "traffic placement (seed 7, rates: measured)" in section
    assert "<th>greedy</th><th>traffic</th><th>change</th>" in section
    assert "-75.00 %" in section and "2 cores sit on another chip or tile" in section
    cost = page.split('<section id="cost">')[1].split("</section>")[0]
    assert "bound: traffic" in cost and "synops 10, messages 30 ns" in cost


def test_balanced_placement_shows_both_layouts(report):
    """A re-cut partition (balance): no one-to-one 'moved' count, the balance line, and a
    before and an after map with one cell per core of each layout."""
    placement = _placement()
    placement["placement"] = {
        "method": "traffic", "seed": 0, "rates": "prior",
        "estimates": {"greedy": {"message_hops_per_step": 20.0},
                      "traffic": {"message_hops_per_step": 9.0}},
        "baseline": {"core_chip": [0], "core_tile": [[0, 0]], "core_population": ["a"]},
        "balance": {"work_cap": 0.8, "cores": [1, 2], "busiest_core_work_ns": [100.0, 60.0]}}
    rep = dict(report, **deployment_sections(placement, SIMS, PAIRS, samples=2, time_steps=4))
    section = render_html(rep).split('<section id="placement">')[1].split("</section>")[0]
    assert "cores sit on another chip" not in section
    assert "cap of 0.8" in section and "1 → 2 cores" in section
    assert section.count('class="layout-before"') == 1
    assert section.count('class="layout-after"') == len(placement["cores"])
