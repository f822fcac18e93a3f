"""Interoperability with other NIR tools (issue 4): an independent executor and example graphs.

``nmc_deploy.interop.executor`` runs a ``nir.NIRGraph`` (the nir package's own objects, not
our graph IR) step by step in float64 torch, written from the NIR equations alone, so it can
check our importer, lowering and simulators. ``nmc_deploy.interop.examples`` builds NIR
graphs in the conventions of sinabs, snnTorch, norse and rockpool. Both import torch and nir,
so this package's ``__init__`` imports neither: import the submodules.
"""

__all__ = ["executor", "examples"]
