"""Git plumbing for model-diff: textconv, difftool, external diff, install, revisions, LFS.

Thin adapters over the engine's public API; no import-time side effects.
"""
