"""Checkpoint gates: the check policy, the pre-commit hooks and the CI entry point.

Thin adapters over the engine's public API; no import-time side effects.
"""
