"""Opening checkpoints: format detection and the registry of readers.

``open_checkpoint(path)`` (alias ``load_checkpoint``, the original API's name) turns a file, a
HuggingFace directory or a Git LFS pointer into a lazy ``Checkpoint``. The format is decided
by content where the content says it (a ``.bin`` that is safetensors, a ``.pt`` that is a zip,
numpy's magic, an LFS pointer's text), else by extension. Readers are plug-in modules meeting
``base.Reader``, listed in ``READERS``.

This package must not import torch at import time (only ``formats.torch_read`` does, lazily, when
a pickle is actually read), nor click, dulwich or the git/hook packages: the git textconv
opens safetensors files through it and must start fast.
"""

from __future__ import annotations

import os

from ..checkpoint import Checkpoint
from ..errors import CheckpointError
from . import hf
from .base import Reader
from .files import (
    CHECKPOINT_EXTENSIONS,
    FILE_READERS,
    detect_format,
    format_name,
    is_checkpoint_name,
    open_file,
)

__all__ = [
    "CHECKPOINT_EXTENSIONS",
    "READERS",
    "Reader",
    "checkpoint_globs",
    "detect_format",
    "folder_file",
    "is_checkpoint_name",
    "load_checkpoint",
    "open_checkpoint",
    "open_file",
]

#: Every format model-diff reads, by the name ``Checkpoint.format`` reports. Content sniffing
#: tries them in this order; ``hf`` is for directories only.
READERS: dict[str, Reader] = {**FILE_READERS, hf.NAME: hf}


def checkpoint_globs() -> tuple[str, ...]:
    """``*.ext`` for every checkpoint extension (lower-case, as the readers list them)."""
    return tuple(f"*{ext}" for ext in CHECKPOINT_EXTENSIONS)


def folder_file(name: str) -> bool:
    """Whether the HuggingFace reader reads a file of this name inside a model folder: the
    index, config and adapter files, and weight files other than training leftovers
    (``training_args.bin``, ``optimizer.pt``, ...), which the reader never opens."""
    if name in hf.FOLDER_MARKERS or name in hf.CONFIG_FILES:
        return True
    return is_checkpoint_name(name) and not hf.is_training_file(name)


def open_checkpoint(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    unsafe_pickle: bool = False,
    select: str | None = None,
    include_optimizer: bool = False,
) -> Checkpoint:
    """Open a checkpoint file or HuggingFace directory lazily (no tensor data is read).

    ``format`` forces a reader (``safetensors``, ``pytorch``, ``numpy``, ``huggingface``).
    ``unsafe_pickle=True`` loads PyTorch pickles with ``torch.load``, running their code;
    only for files you trust (the default reader runs nothing and needs no torch).
    ``select`` compares only the tensors under that dotted path of the file (one model of
    several, an EMA copy); ``include_optimizer`` adds the optimizer state, by parameter
    order (see ``Checkpoint.narrowed``).
    Raises ``model_diff.errors.CheckpointError`` (and subclasses) or ``MissingDependencyError``.
    """
    ckpt = _open(os.fspath(path), format, unsafe_pickle)
    if select is None and not include_optimizer:
        return ckpt
    try:
        return ckpt.narrowed(select=select, include_optimizer=include_optimizer)
    except BaseException:
        ckpt.close()
        raise


def _open(p: str, format: str | None, unsafe_pickle: bool) -> Checkpoint:
    if not os.path.exists(p):
        raise CheckpointError(
            "no such file or directory",
            path=p,
            hint="check the path; for a file at a git revision use REV:path",
        )
    if os.path.isdir(p):
        if format is not None and format_name(format) != hf.NAME:
            raise CheckpointError(
                f"is a directory, not a {format} file",
                path=p,
                hint="pass the checkpoint file inside it",
            )
        ckpt = hf.open_path(p, label=p, unsafe_pickle=unsafe_pickle)
        ckpt.location = p
        return ckpt
    try:
        return open_file(p, format=format, unsafe_pickle=unsafe_pickle)
    except PermissionError:
        raise CheckpointError(
            "cannot be read (permission denied)", path=p, hint="check the file's permissions"
        ) from None
    except IsADirectoryError:
        raise CheckpointError("is a directory", path=p) from None


#: The original API's name.
load_checkpoint = open_checkpoint
