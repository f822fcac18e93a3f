"""Loihi chip arithmetic as Lava's bit-accurate models compute it (numpy only)."""
