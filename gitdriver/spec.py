"""Checkpoint arguments: a path on disk, or ``REV:path`` from git history.

This is where "revision or path?" is decided. A plain path is opened by ``local`` without
importing the git layer (``git``: its process machinery and repository model are a large
share of a small compare's start-up); ``REV:path`` goes to ``git.open_revision``.
"""

from __future__ import annotations

import os
from typing import Any

from model_diff.checkpoint import Checkpoint

from .local import open_local


def split_spec(spec: str) -> tuple[str, str] | None:
    """``("HEAD~2", "ckpt/m.safetensors")`` for ``"HEAD~2:ckpt/m.safetensors"``; None otherwise.

    An existing file or folder is never a spec, whatever it contains. An empty revision
    (``:path``) means the index, as in git.
    """
    if os.path.exists(spec) or ":" not in spec:
        return None
    rev, path = spec.split(":", 1)
    return rev, path


def open_spec(
    spec: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    display: str | None = None,
    **kw: Any,
) -> Checkpoint:
    """Open a checkpoint argument: a path on disk (relative to ``cwd``), or ``REV:path``.

    An existing path is a path. The checkpoint is named ``display`` (default: ``spec``,
    escaped); ``kw`` goes to the reader.
    """
    parts = split_spec(spec)
    if parts is None:
        full = os.path.join(os.fspath(cwd), spec) if cwd is not None else spec
        return open_local(full, display=display, **kw)
    from .git import open_revision

    return open_revision(*parts, cwd=cwd, display=display, **kw)
