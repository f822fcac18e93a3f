"""Every script in examples/ runs (``--quick``) and gives the outputs its docstring promises;
the README's Python API snippet runs as written. (Named apart from tests/interop/
test_examples.py, the NIR example graphs, since test modules share one namespace.)"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# script -> where it runs in the suite (this module, or the README interop test)
COVERED = {"digits_api.py": "test_digits_api", "sinabs_nir.py": "test_sinabs_nir",
           "pruned_digits.py": "test_pruned_digits",
           "snntorch_digits.py": "tests/interop/test_readme_example.py"}


def _run(cwd: Path, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """A script as a user runs it, with this checkout's nmc_deploy first on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def test_every_example_has_a_docstring_and_runs_in_the_suite():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(COVERED)
    for name in scripts:
        doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
        assert doc and f"python examples/{name}" in doc, name
    assert "examples/snntorch_digits.py" in (ROOT / COVERED["snntorch_digits.py"]).read_text()


def test_sinabs_nir(tmp_path):
    pytest.importorskip("sinabs")
    r = _run(tmp_path, EXAMPLES / "sinabs_nir.py", "out", "--quick", timeout=300)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["float_vs_sinabs"] == 0  # sinabs' own output spikes, reproduced
    assert 0.05 * summary["output_entries"] < summary["sinabs_output_spikes"] \
        < 0.95 * summary["output_entries"]
    assert "float vs sinabs: 0 of" in r.stdout and "convention 'sinabs'" in r.stdout
    assert (tmp_path / "out" / "build" / "program.npz").is_file()


@pytest.mark.slow
def test_digits_api(tmp_path):
    r = _run(tmp_path, EXAMPLES / "digits_api.py", "out", "--quick")
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 40 and summary["cores_used"] > 0
    assert summary["accuracy_fixed"] > 0.3  # 3 epochs: well above chance (0.1)
    assert summary["synops_per_sample"] > 0 and summary["latency_per_sample_us"] > 0
    assert (out / "build" / "activity_reference.json").is_file()
    assert '<section id="verdict"' in (out / "report.html").read_text()
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == \
        ["train", "export", "compile", "simulate", "report"]


@pytest.mark.slow
def test_pruned_digits(tmp_path):
    r = _run(tmp_path, EXAMPLES / "pruned_digits.py", "out", "--quick")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    dense, pruned = summary["dense"], summary["pruned"]
    assert summary["nonzeros"][1] < summary["nonzeros"][0]
    assert pruned["synapses"] < 0.7 * dense["synapses"]
    assert pruned["cores_used"] <= dense["cores_used"]
    assert pruned["synops_per_sample"] < dense["synops_per_sample"]
    assert re.search(r"^pruned\s+\d", r.stdout, re.M) and re.search(r"^dense\s+\d", r.stdout, re.M)


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_api_snippet_runs(tmp_path):
    code = _readme_snippet() + "\nopen('checked.txt', 'w').write(str(sim.accuracy['fixed']))\n"
    (tmp_path / "snippet.py").write_text(code)
    r = _run(tmp_path, tmp_path / "snippet.py")
    assert "cores," in r.stdout and "'lava': None" in r.stdout
    assert 0.0 <= float((tmp_path / "checked.txt").read_text()) <= 1.0
