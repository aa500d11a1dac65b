"""Checkpoints on disk, named as the user or git calls them.

The readers' entry points with a display name: what ``spec.open_spec`` does with a plain
path and ``git.Repo.open`` with the working tree, an LFS object or a blob written out. No
git here, so opening a local file never imports the git layer.
"""

from __future__ import annotations

import os
from typing import Any

from model_diff.checkpoint import Checkpoint


def open_local(path: str, *, display: str | None = None, **kw: Any) -> Checkpoint:
    """A file or folder on disk, named ``display``; an LFS pointer in it is resolved from the
    local store by the reader (``formats.lfs``)."""
    if display is None or os.path.isdir(path):
        ckpt = open_any(path, **kw)
        if display is not None:
            ckpt.path = display
        return ckpt
    return open_named(path, display, path, **kw)


def open_any(path: str, **kw: Any) -> Checkpoint:
    """A file or model folder, detected by the readers (``formats.open_checkpoint``)."""
    from model_diff.formats import open_checkpoint

    return open_checkpoint(path, **kw)


def open_named(path: str, label: str, name: str, **kw: Any) -> Checkpoint:
    """One file; ``label`` names it in messages, ``name``'s extension helps detection."""
    from model_diff.formats import open_file

    if not os.path.exists(path):
        return open_any(path, **kw)  # the reader's own "no such file" error
    return open_file(path, label=label, name=name, **kw)
