"""Simulators of a compiled program: the numpy reference (fixed or float) and the Lava backend.

``reference`` runs the one simulation loop (``simulate_reference``, ``simulate_float``) with a
precision from ``precision`` over the group sources of ``sources``; ``inputs`` turns images
or sequences into the (B, T, n_in) input, ``readout`` computes logits and per-step outputs
(the Lava backend uses it too), ``result`` holds ``SimulationResult`` and merges batches;
``lava/`` runs the program on real Lava Processes (the only package that imports lava).
"""
