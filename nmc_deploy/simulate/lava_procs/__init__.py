"""Custom Lava Processes of nmc-deploy (SpikeAttention, SpikeRecorder).

Lava's ProcessModel discovery executes every module in this directory, so it holds only
process definitions with absolute imports and no side effects. Import it only after
``nmc_deploy.compat.lava311.install()``.
"""
