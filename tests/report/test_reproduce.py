"""docs/reproduce_report.py recomputes a report's headline figures from its JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_page import PAIRS, SIMS, _activity, _placement

from nmc_deploy.report.deployment import deployment_sections
from nmc_deploy.report.energy import estimate_costs
from nmc_deploy.report.render import render_json
from nmc_deploy.targets import load_target

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "reproduce_report.py"


def _run(tmp_path: Path, report: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "report.json"
    path.write_text(render_json(report), encoding="utf-8")
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def report() -> dict:
    rep = estimate_costs(_activity(), _placement(), load_target("loihi2"))
    rep.update(deployment_sections(_placement(), SIMS, PAIRS, samples=2, time_steps=4))
    return json.loads(render_json(rep))


def test_a_generated_report_reproduces(tmp_path, report):
    done = _run(tmp_path, report)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 mismatched" in done.stdout


@pytest.mark.parametrize("tamper, needle", [
    (lambda r: r["energy_per_sample_uj"].update(cmos45nm=1.0), "cmos45nm: total"),
    (lambda r: r["latency"].update(per_step_ns=r["latency"]["per_step_ns"] * 2), "latency"),
    (lambda r: r["traffic_matrix"]["totals"].update(messages=1), "traffic messages"),
    (lambda r: r["verdict"].update(cores_used=3), "verdict cores used (N)"),
    (lambda r: r["verdict"].update(binding="in_axons"), "verdict binding resource"),
])
def test_a_changed_figure_is_caught(tmp_path, report, tamper, needle):
    tamper(report)
    done = _run(tmp_path, report)
    assert done.returncode == 1 and f"MISMATCH {needle}" in done.stdout, done.stdout
