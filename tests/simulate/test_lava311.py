"""The Python 3.11 shim makes real Lava import and run, without touching site-packages."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from nmc_deploy.simulate.lava import lava311

pytestmark = pytest.mark.lava


def _lava_dir() -> Path:
    return Path(list(importlib.util.find_spec("lava").submodule_search_locations)[0])


def test_patch_replaces_every_mutable_bytencoder_default():
    src = (_lava_dir() / "magma/compiler/var_model.py").read_text()
    patched, n = lava311.patch_var_model_source(src)
    assert n == 8  # CoreEncoder x3, ChipEncoder x3, AxonEncoder x2
    assert "= ByteEncoder()" not in patched
    compile(patched, "var_model.py", "exec")  # still valid Python


def test_unpatched_module_fails_and_patched_imports_in_a_fresh_interpreter():
    code_plain = "import lava.magma.compiler.var_model"
    r = subprocess.run([sys.executable, "-c", code_plain], capture_output=True, text=True)
    assert r.returncode != 0 and "mutable default" in r.stderr  # the bug the shim fixes
    code = ("from nmc_deploy.simulate.lava import lava311; lava311.install(); lava311.install();"
            "import lava.magma.compiler.var_model as vm; print(vm.CoreEncoder().x is not "
            "vm.CoreEncoder().x); from lava.lib.dl import netx; print('netx')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "netx"]  # defaults are per-instance (default_factory)


def test_install_writes_no_bytecode_into_site_packages(tmp_path):
    cache = _lava_dir() / "magma/compiler/__pycache__"
    before = {p.name: p.stat().st_mtime for p in cache.glob("var_model*")} if cache.exists() else {}
    code = "from nmc_deploy.simulate.lava import lava311; lava311.install(); import lava.magma.compiler.var_model"
    subprocess.run([sys.executable, "-c", code], check=True)
    after = {p.name: p.stat().st_mtime for p in cache.glob("var_model*")} if cache.exists() else {}
    assert after == before


def test_object_detection_stub_explains_itself():
    lava311.install()
    mod = sys.modules[lava311.OBJECT_DETECTION_MODULE]
    with pytest.raises(ImportError, match="torchvision"):
        mod.YOLOBase  # noqa: B018


def test_lava_imports_after_the_start_method_was_fixed():
    code = ("import multiprocessing as mp; mp.get_context(); print(mp.get_start_method());"
            "from nmc_deploy.simulate.lava import lava311; lava311.import_lava_runtime();"
            "from lava.proc.lif.process import LIF; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["fork", "ok"]


def test_pinned_stack_is_installed():
    """The environment the Makefile builds: the pins of constraints.txt (issue 2)."""
    from importlib.metadata import version

    import nir
    import norse.torch  # noqa: F401  (1.1.0 sdist; its metadata says 0.0.0)
    import numpy
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert numpy.__version__ < "2"
    assert version("nir") == "1.0.8" and version("nirtorch") == "2.6"
    assert version("lava-nc") == "0.10.0" and version("lava-dl") == "0.6.0"
    assert nir is not None
