"""Pruning of Spikformer models: lottery tickets (IMP), L1P, DSP and sLIF compensation.

* :mod:`~nmc_deploy.prune.masks`: prunable-weight selection, magnitude masks, keeping
  pruned weights at zero while training, sparsity reports.
* :mod:`~nmc_deploy.prune.lth`: iterative magnitude pruning with late rewinding, as
  SparseSpikformer released it (resumable).
* :mod:`~nmc_deploy.prune.l1p`: one-shot or gradual magnitude pruning of the block matrices.
* :mod:`~nmc_deploy.prune.dsp`: low-rank (truncated SVD) factorisation of the block matrices.
* :mod:`~nmc_deploy.prune.slif`: SLIF neurons (learnable threshold and leak per channel).
* :mod:`~nmc_deploy.prune.tokens`: SparseSpikformer's token selectors.
* :mod:`~nmc_deploy.prune.request` (no torch): :class:`PruneRequest`, checked before any work;
  :mod:`~nmc_deploy.prune.run`: one run of a request on a loaded model (``nmc-deploy prune``).

L1P, DSP and sLIF follow the labelled proposal of docs/spikformer-and-pruning.md section
3.3 (the paper's equations are unavailable). The submodules import torch; this package
file does not.
"""
