"""Make lava-nc 0.10.0 and lava-dl 0.6.0 importable on Python 3.11.

Lava is archived upstream and declares ``Requires-Python <3.11``. Two things
stop it from importing here, and both are fixed at import time, in memory:

1. ``lava/magma/compiler/var_model.py`` declares dataclass fields such as
   ``x: ByteEncoder = ByteEncoder()``. Python 3.11 rejects unhashable
   (mutable) dataclass defaults, so the module raises ``ValueError`` when it is
   executed. :func:`install` registers a meta-path finder that compiles that one
   module from a patched copy of its source, with every such default replaced by
   ``field(default_factory=ByteEncoder)``. The patched code is never written to
   disk (no ``.pyc`` in site-packages), and every other Lava module loads
   normally.
2. ``lava/lib/dl/slayer/__init__.py`` imports ``object_detection``, which needs
   torchvision and OpenCV (neither installs with torch+cpu here). :func:`install`
   puts an empty placeholder module under that name into ``sys.modules``; any
   attribute access on it raises an ``ImportError`` that says why.

3. ``lava/magma/runtime/message_infrastructure/multiprocessing.py`` calls
   ``multiprocessing.set_start_method('fork')`` at import, which raises ``RuntimeError:
   context has already been set`` once anything has fixed the start method (tqdm's
   multiprocessing lock does, during training). :func:`import_lava_runtime` imports that module
   with the call made a no-op when the method already is 'fork' (the Linux default).

Call :func:`install` before the first ``import lava``; it is idempotent.
``nmc_deploy.simulate.lava.backend`` does so at its top.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import types

__all__ = ["install", "is_installed", "patch_var_model_source", "import_lava_runtime",
           "VAR_MODEL_MODULE", "OBJECT_DETECTION_MODULE", "LAVA_MP_MODULE"]

VAR_MODEL_MODULE = "lava.magma.compiler.var_model"
OBJECT_DETECTION_MODULE = "lava.lib.dl.slayer.object_detection"
LAVA_MP_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"

# ``name: ByteEncoder = ByteEncoder()`` -> ``name: ByteEncoder = field(default_factory=ByteEncoder)``
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)\s*$", re.MULTILINE)
# The module starts with ``from __future__ import annotations``, so no import line can be
# prepended; the replacement reaches ``dataclasses.field`` through ``__import__``.
_FIELD_FACTORY = "__import__('dataclasses').field(default_factory=ByteEncoder)"


def patch_var_model_source(source: str) -> tuple[str, int]:
    """Return ``(patched_source, n_replacements)`` for Lava's ``var_model.py``."""
    patched, n = _MUTABLE_DEFAULT.subn(lambda m: m.group(1) + _FIELD_FACTORY, source)
    return patched, n


class _PatchedSourceLoader(importlib.abc.Loader):
    """Execute a module from its source file after an in-memory text patch."""

    def __init__(self, fullname: str, origin: str):
        self.fullname = fullname
        self.origin = origin

    def create_module(self, spec):  # default module creation
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        with open(self.origin, "rb") as fh:
            source = importlib.util.decode_source(fh.read())
        patched, _ = patch_var_model_source(source)
        code = compile(patched, self.origin, "exec", dont_inherit=True)
        exec(code, module.__dict__)


class _LavaFinder(importlib.abc.MetaPathFinder):
    """Route ``lava.magma.compiler.var_model`` through :class:`_PatchedSourceLoader`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != VAR_MODEL_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        spec.loader = _PatchedSourceLoader(fullname, spec.origin)
        spec.cached = None  # nothing is read from or written to __pycache__
        return spec


class _MissingObjectDetection(types.ModuleType):
    """Placeholder for slayer's object_detection (needs torchvision and cv2)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"{OBJECT_DETECTION_MODULE}.{name}: unavailable; nmc-deploy stubs slayer's "
            "object_detection because it needs torchvision and OpenCV, which do not install "
            "with the CPU build of torch"
        )


def is_installed() -> bool:
    """Whether :func:`install` has run in this interpreter."""
    return any(isinstance(f, _LavaFinder) for f in sys.meta_path)


def install() -> None:
    """Install both shims; safe to call more than once."""
    if not is_installed():
        sys.meta_path.insert(0, _LavaFinder())
    if OBJECT_DETECTION_MODULE not in sys.modules:
        stub = _MissingObjectDetection(OBJECT_DETECTION_MODULE, _MissingObjectDetection.__doc__)
        stub.__path__ = []  # a package, so submodule imports fail cleanly
        sys.modules[OBJECT_DETECTION_MODULE] = stub


def import_lava_runtime() -> None:
    """Import Lava's multiprocessing runtime even if the start method is already fixed.

    Raises ``RuntimeError`` if the start method was set to something other than 'fork'
    (Lava's runtime works with fork only).
    """
    import importlib
    import multiprocessing as mp

    install()
    if LAVA_MP_MODULE in sys.modules:
        return
    current = mp.get_start_method(allow_none=True)
    if current not in (None, "fork"):
        raise RuntimeError(f"multiprocessing start method is '{current}'; Lava needs 'fork'")
    original = mp.set_start_method

    def _tolerant(method, force=False):
        if not force and method == mp.get_start_method(allow_none=True):
            return None
        return original(method, force=force)

    mp.set_start_method = _tolerant
    try:
        importlib.import_module(LAVA_MP_MODULE)
    finally:
        mp.set_start_method = original
