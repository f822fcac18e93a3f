"""Loihi chip arithmetic as Lava's bit-accurate models compute it: constants, kernels (numpy).

``constants`` holds every Lava/Loihi constant; ``synapses`` the weight grid and the Sparse
step; ``neurons`` the fixed-point LIF step and its float twin; ``attention`` the spike
attention and token selector kernels.
"""
