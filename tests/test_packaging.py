"""The package as users install it: ``pip install .`` (no network, no repository on the path)
gives working ``nmc-deploy`` commands with the shipped targets; pyproject lists every package."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    """Packages are listed (the hw_targets mapping rules out discovery): a new subpackage
    must be added to pyproject.toml, or the wheel would lack it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.relative_to(ROOT).parent.parts)
             for p in (ROOT / "nmc_deploy").rglob("__init__.py")}
    assert set(config["packages"]) == found | {"nmc_deploy.hw_targets"}
    assert config["package-dir"] == {"nmc_deploy.hw_targets": "hw_targets"}
    assert config["package-data"]["nmc_deploy.hw_targets"] == ["*.toml"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --no-deps --no-build-isolation --target SITE`` of a copy of the sources
    (so the build leaves nothing in the repository)."""
    tmp = tmp_path_factory.mktemp("pip")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("nmc_deploy", "hw_targets"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                        "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return site


def _run(site: Path, cwd: Path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(site)  # the install; third-party packages: the venv's own
    return subprocess.run([*args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.mark.slow
def test_pip_install_then_the_readme_commands_work_outside_the_repository(installed, tmp_path,
                                                                           tiny_graph):
    from nmc_deploy.nirio import write_nir

    site, work = installed, tmp_path / "elsewhere"
    work.mkdir()
    assert sorted(p.name for p in (site / "nmc_deploy" / "hw_targets").glob("*.toml")) == \
        sorted(p.name for p in (ROOT / "hw_targets").glob("*.toml"))
    write_nir(tiny_graph, work / "some.nir")
    r = _run(site, work, sys.executable, "-c",
             "import nmc_deploy, nmc_deploy.targets as t; print(nmc_deploy.__file__); "
             "print(t.targets_dir())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(site / "nmc_deploy" / "__init__.py"),
                                     str(site / "nmc_deploy" / "hw_targets")]
    cli = [sys.executable, "-m", "nmc_deploy.cli"]
    r = _run(site, work, *cli, "compile", "some.nir", "--target", "loihi2", "-o", "OUT")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (work / "OUT" / "program.npz").is_file()
    r = _run(site, work, *cli, "simulate", "OUT", "--samples", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(site, work, *cli, "report", "OUT")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loihi2" in r.stdout and re.search(r"cores", r.stdout)
    # the console script pip wrote works as well (its bin/ is what goes on PATH)
    script = site / "bin" / "nmc-deploy"
    assert script.is_file()
    r = _run(site, work, str(script), "report", "OUT", "--format", "json")
    assert r.returncode == 0 and '"target": "loihi2"' in r.stdout, r.stderr[-2000:]
    # a system target (a system file names its chip by name) from the package data
    r = _run(site, work, *cli, "compile", "some.nir", "--target", "kapoho_point", "-o", "K")
    assert r.returncode == 0 and "kapoho_point" in r.stdout, r.stderr[-2000:]
