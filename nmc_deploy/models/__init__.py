"""Spiking transformer models (Spikformer), their LIF neuron, training and checkpoints.

The submodules import torch; this package file does not, so ``import nmc_deploy.models``
stays cheap. Import what you need from the submodules:
:mod:`~nmc_deploy.models.config` (no torch), :mod:`~nmc_deploy.models.lif`,
:mod:`~nmc_deploy.models.spikformer`, :mod:`~nmc_deploy.models.official_config`,
:mod:`~nmc_deploy.models.import_official`,
:mod:`~nmc_deploy.models.checkpoint` and :mod:`~nmc_deploy.models.train`.
"""
