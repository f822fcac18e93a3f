"""The console through the real CLI: results on stdout, diagnostics on stderr, --quiet,
--verbose, --json; a Lava run of the demo prints no third-party warning lines."""
import json
import re
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "nmc_deploy.cli", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def build(tmp_path_factory, tiny_graph):
    from nmc_deploy.nirio import write_nir

    tmp = tmp_path_factory.mktemp("console")
    write_nir(tiny_graph, tmp / "m.nir")
    rc, out, err = run("compile", tmp / "m.nir", "-o", tmp / "b")
    assert rc == 0, err
    return tmp / "b"


def test_compile_tables_on_stdout_progress_on_stderr(build, tmp_path):
    rc, out, err = run("compile", build / "model.nir", "-o", tmp_path / "b")
    assert rc == 0, err
    assert "cores used:" in out and "design rules:" in out  # the verdict and the tables
    assert "compiling " in err and "cores used:" not in err
    rc, out, err = run("compile", build / "model.nir", "-o", tmp_path / "b", "--quiet")
    assert rc == 0 and err == "" and "cores used:" in out
    rc, out, err = run("compile", build / "model.nir", "-o", tmp_path / "b", "--json")
    assert rc == 0 and "compiling " in err
    rec = json.loads(out)
    assert rec == json.loads((tmp_path / "b" / "placement.json").read_text())


def test_simulate_result_json_quiet_and_verbose(build):
    rc, out, err = run("simulate", build, "--samples", "3")
    assert rc == 0, err
    assert "fidelity (3 samples" in out and "accuracy: fixed" in out and "summary ->" in out
    assert "fidelity" not in err and "accuracy" not in err
    rc, out, err = run("-q", "simulate", build, "--samples", "3", "--json")  # global --quiet
    assert rc == 0 and err == "", err
    assert json.loads(out) == json.loads((build / "simulation_reference.json").read_text())
    rc, out, err = run("simulate", build, "--samples", "3", "--verbose")
    assert rc == 0 and re.search(r"^done in \d+\.\d s$", err, re.M), err
    rc, out, err = run("simulate", build, "--samples", "3", "-q", "-v")
    assert rc == 2 and err.strip().splitlines() == [
        "error: nmc-deploy simulate: --quiet and --verbose exclude each other (see --help)"]


def test_report_json_is_the_report(build):
    rc, table, err = run("report", build)
    assert rc == 0 and "fits" in table.lower() and err == "", err
    rc, as_format, _ = run("report", build, "--format", "json")
    rc2, as_json, err = run("report", build, "--json")
    assert rc == rc2 == 0 and json.loads(as_json) == json.loads(as_format)


def test_errors_stay_one_line_with_every_mode(tmp_path):
    for mode in ((), ("--quiet",), ("--json",), ("--verbose",)):
        rc, out, err = run("simulate", tmp_path / "missing", *mode)
        assert rc == 1 and out == "" and len(err.strip().splitlines()) == 1, (mode, err)
        assert err.startswith("error: ")


_THIRD_PARTY = re.compile(r"Warning|warnings\.warn|[\\/](scipy|lava|torch|numpy|tqdm)[\\/]"
                          r"|site-packages|\d+%\|")


@pytest.mark.lava
@pytest.mark.slow
def test_a_lava_run_of_the_demo_prints_no_third_party_warning_lines(tmp_path):
    """Issue 12's acceptance: the smallest demo (1 epoch, 2 Lava samples) through the CLI."""
    rc, out, err = run("demo", "--out", tmp_path / "d", "--epochs", "1", "--lava-samples", "2")
    assert rc == 0, err[-3000:]
    bad = [line for line in err.splitlines() if _THIRD_PARTY.search(line)]
    assert bad == [], bad[:5]
    assert "running Lava" in err and "== simulate" in err  # the diagnostics are there
    summary = json.loads(out)  # the result: the summary, alone on stdout
    assert summary == json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["lava_samples"] == 2 and summary["spike_mismatches_reference_vs_lava"] == 0
