"""Simulators of a compiled program: the numpy reference and the Lava backend."""
