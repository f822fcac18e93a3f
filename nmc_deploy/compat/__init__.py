"""Compatibility shims for third-party packages (no heavy imports here)."""
