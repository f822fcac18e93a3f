"""nmc-deploy: deploy pruned spiking transformers onto Loihi-style neuromorphic cores.

Stages (one CLI command each, one file format between each pair):
train/prune (torch) -> export (NIR) -> compile (core program) -> simulate (reference, Lava)
-> report (synaptic operations, energy, latency).

Importing this package is cheap: torch, nir and lava are imported only by the modules
that need them (see docs/architecture.md).
"""
__version__ = "0.1.0"
