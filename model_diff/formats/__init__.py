"""Opening checkpoints: format detection and the registry of readers.

``open_checkpoint(path)`` (alias ``load_checkpoint``, the original API's name) turns a file, a
HuggingFace directory or a Git LFS pointer into a lazy ``Checkpoint``. The format is decided
by content where the content says it (a ``.bin`` that is safetensors, a ``.pt`` that is a zip,
numpy's magic, an LFS pointer's text), else by extension. Readers are plug-in modules meeting
``base.Reader``, listed in ``READERS``.

This package must not import torch at import time (only ``formats.torch`` does, lazily, when
a pickle is actually read), nor click, dulwich or the git/hook packages: the git textconv
opens safetensors files through it and must start fast.
"""

from __future__ import annotations

import os

from ..checkpoint import Checkpoint
from ..errors import CheckpointError, UnknownFormatError
from . import gguf, hf, lfs, numpy, onnx, safetensors, torch, unsupported
from .base import Reader, is_zip_or_pickle, read_head

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
READERS: dict[str, Reader] = {
    safetensors.NAME: safetensors,
    numpy.NAME: numpy,
    torch.NAME: torch,
    gguf.NAME: gguf,
    onnx.NAME: onnx,
    hf.NAME: hf,
}

#: Every file suffix a reader claims (lower-case, with the dot), in registry order: the one list
#: of "checkpoint files" for ``diff``, ``ci``, ``check --staged``, difftool, install's
#: attributes, the pre-commit manifest and the GitHub Action (tests hold those to it).
CHECKPOINT_EXTENSIONS: tuple[str, ...] = tuple(
    dict.fromkeys(ext for reader in READERS.values() for ext in reader.EXTENSIONS)
)


def is_checkpoint_name(path: str) -> bool:
    """Whether ``path``'s file name has a checkpoint extension, in any letter case."""
    return os.path.splitext(path)[1].lower() in CHECKPOINT_EXTENSIONS


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


_ALIASES = {
    "pt": "pytorch",
    "pth": "pytorch",
    "torch": "pytorch",
    "bin": "pytorch",
    "ckpt": "pytorch",
    "npy": "numpy",
    "npz": "numpy",
    "hf": "huggingface",
    "st": "safetensors",
}

SUPPORTED = (
    "safetensors (.safetensors), PyTorch (.pt .pth .bin .ckpt), numpy (.npy .npz), "
    "GGUF (.gguf), ONNX (.onnx), a HuggingFace model directory, or a Git LFS pointer to one "
    "of these"
)


#: Formats whose files always say what they are in their first bytes (every PyTorch file is a
#: zip archive or a pickle): the extension alone never sends other content to them, so a text
#: ``.bin`` is "not a checkpoint" rather than a pickle error that loads torch.
_CONTENT_CHECKS = {torch.NAME: is_zip_or_pickle}


def _preview(head: bytes, n: int = 16) -> str:
    """The first bytes as a short Python bytes literal (escaped: safe on one terminal line)."""
    return repr(head[:n]) + ("..." if len(head) > n else "")


def _reader(format: str) -> Reader:
    key = _ALIASES.get(format.lower(), format.lower())
    if key not in READERS:
        raise UnknownFormatError(
            f"unknown format {format!r}", hint=f"use one of: {', '.join(READERS)}"
        )
    return READERS[key]


def detect_format(path: str, *, name: str | None = None) -> str:
    """The ``READERS`` key for the file at ``path``: by content first, then by the extension of
    ``name`` (default ``path``; an LFS object is named by its pointer's path)."""
    label = name or path
    head = read_head(path)
    for key, reader in READERS.items():
        if key != hf.NAME and reader.sniff(head, path):
            return key
    ext = os.path.splitext(label)[1].lower()
    known = unsupported.by_content(head)
    if known is None:
        for key, reader in READERS.items():
            if ext in reader.EXTENSIONS:
                content_ok = _CONTENT_CHECKS.get(key)
                if content_ok is not None and not content_ok(head):
                    raise UnknownFormatError(
                        f"is not a checkpoint: a {ext} file whose content is neither a zip "
                        f"archive nor a pickle (it starts with {_preview(head)})",
                        path=label,
                        hint="nothing to compare; if it should be a checkpoint, save it again",
                    )
                return key
        known = unsupported.by_extension(ext)
    if known is not None:
        raise UnknownFormatError(known.message, path=label, hint=known.hint)
    raise UnknownFormatError(
        f"is not a checkpoint format model-diff reads (expected {SUPPORTED})",
        path=label,
        hint="convert it to safetensors, or give it the extension of its real format",
    )


def open_file(
    path: str,
    *,
    label: str | None = None,
    format: str | None = None,
    unsafe_pickle: bool = False,
    name: str | None = None,
) -> Checkpoint:
    """Open one checkpoint file (an LFS pointer resolved from the local store).

    ``label`` names the file in messages and ``Checkpoint.path``; ``name`` supplies the
    extension used when the content does not decide the format.
    """
    label = label or path
    if os.path.getsize(path) == 0:
        raise CheckpointError(
            "is empty (0 bytes)",
            path=label,
            hint="the file was never written completely; re-save or re-fetch it",
        )
    pointer = lfs.read_pointer(path)
    if pointer is None and read_head(path).startswith(lfs.VERSION_LINE):
        raise CheckpointError(
            "is a malformed Git LFS pointer (no valid oid/size lines)",
            path=label,
            hint="check it out again with `git lfs pull`",
        )
    if pointer is not None:
        obj = lfs.resolve_pointer(pointer, path=path, label=label)
        return open_file(
            obj, label=label, format=format, unsafe_pickle=unsafe_pickle, name=name or path
        )
    reader = _reader(format) if format else READERS[detect_format(path, name=name or label)]
    if reader is hf:
        raise CheckpointError(
            "is a file; the huggingface format is a model directory",
            path=label,
            hint="pass the directory, or drop the format",
        )
    ckpt = reader.open_path(path, label=label, unsafe_pickle=unsafe_pickle)
    ckpt.location = path
    return ckpt


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
        if format is not None and _reader(format) is not hf:
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
