"""Lava backend: the only package that imports lava (import the submodules; this imports nothing)."""
