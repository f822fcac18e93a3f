"""nmc-deploy: deploy pruned spiking transformers onto Loihi-style neuromorphic cores.

Stages (one CLI command each, one file format between each pair):
train/prune (torch) -> export (NIR) -> compile (core program) -> simulate (reference, Lava)
-> report (synaptic operations, energy, latency).

The Python API (:mod:`nmc_deploy.api`, README "Python API")::

    import nmc_deploy as nd
    build = nd.compile(graph_or_nir_path, target="loihi2")    # -> nd.Build
    sim = nd.simulate(build, inputs=x, labels=y)               # -> nd.SimulationResult
    rep = nd.report(build, sim)                                # -> nd.Report

Importing this package is cheap: torch, nir and lava are imported only by the modules
that need them (see docs/architecture.md); the API loads on first use.
"""
from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

#: API functions that share their name with a subpackage (nmc_deploy.compile is both).
_STAGES = ("prune", "export", "compile", "simulate", "report")
_API = ("train", "load_build", "Build", "SimulationResult", "Report")
__all__ = [*_STAGES, *_API, "__version__"]


class _Stage:
    """``nmc_deploy.<stage>``: calling it calls :mod:`nmc_deploy.api`'s function of that name;
    its attributes are the subpackage's, so ``nmc_deploy.compile.recipe`` (and
    ``import nmc_deploy.compile.quantize as q``, ``mock.patch``) still reach the modules."""

    __slots__ = ("_stage",)

    def __init__(self, stage: str):
        object.__setattr__(self, "_stage", stage)

    def _function(self):
        return getattr(importlib.import_module(f"{__name__}.api"), self._stage)

    def __call__(self, *args, **kwargs):
        return self._function()(*args, **kwargs)

    @property
    def __doc__(self):  # help(nmc_deploy.compile) shows the API function
        return self._function().__doc__

    @property
    def __wrapped__(self):  # inspect.signature(nmc_deploy.compile) is the function's
        return self._function()

    def __getattr__(self, attr):
        return getattr(importlib.import_module(f"{__name__}.{self._stage}"), attr)

    def __setattr__(self, attr, value):  # monkeypatching nmc_deploy.compile.x patches the module
        setattr(importlib.import_module(f"{__name__}.{self._stage}"), attr, value)

    def __repr__(self) -> str:
        return f"<nmc_deploy.{self._stage}: the API function and the subpackage>"


class _Package(types.ModuleType):
    """This package's module: importing a subpackage named like a stage keeps the stage."""

    def __setattr__(self, name, value):
        if name in _STAGES and isinstance(value, types.ModuleType):
            return  # the import system binds the subpackage; it stays reachable via _Stage
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


compile = _Stage("compile")  # noqa: A001 (the API's name; the builtin is not used here)
simulate = _Stage("simulate")
report = _Stage("report")
export = _Stage("export")
prune = _Stage("prune")
sys.modules[__name__].__class__ = _Package
