"""Opening one checkpoint file: format detection by content, then by extension.

``open_file(path)`` turns a file (or a Git LFS pointer to one) into a lazy ``Checkpoint``
with the reader its content or extension names (``FILE_READERS``). The HuggingFace folder
reader (``formats.hf``) opens its shards through here; the package (``formats``) adds it
for directories. This module must not import torch, click, dulwich or the git/hook packages.
"""

from __future__ import annotations

import os

from ..checkpoint import Checkpoint
from ..errors import CheckpointError, UnknownFormatError
from . import gguf, lfs, numpy, onnx, safetensors, torch, unsupported
from .base import Reader, is_zip_or_pickle, read_head

__all__ = [
    "CHECKPOINT_EXTENSIONS",
    "DIRECTORY_FORMAT",
    "FILE_READERS",
    "detect_format",
    "format_name",
    "is_checkpoint_name",
    "open_file",
]

#: The formats of single files, in the order content sniffing tries them.
FILE_READERS: dict[str, Reader] = {
    safetensors.NAME: safetensors,
    numpy.NAME: numpy,
    torch.NAME: torch,
    gguf.NAME: gguf,
    onnx.NAME: onnx,
}
#: The format of a model folder (``formats.hf.NAME``): never a file's.
DIRECTORY_FORMAT = "huggingface"

#: Every file suffix a reader claims (lower-case, with the dot), in registry order: the one list
#: of "checkpoint files" for ``diff``, ``ci``, ``check --staged``, difftool, install's
#: attributes, the pre-commit manifest and the GitHub Action (tests hold those to it). The
#: HuggingFace reader reads folders and claims no suffix.
CHECKPOINT_EXTENSIONS: tuple[str, ...] = tuple(
    dict.fromkeys(ext for reader in FILE_READERS.values() for ext in reader.EXTENSIONS)
)


def is_checkpoint_name(path: str) -> bool:
    """Whether ``path``'s file name has a checkpoint extension, in any letter case."""
    return os.path.splitext(path)[1].lower() in CHECKPOINT_EXTENSIONS


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


def format_name(format: str) -> str:
    """The canonical name of a ``format`` argument (aliases: pt, bin, hf, st, ...)."""
    key = _ALIASES.get(format.lower(), format.lower())
    if key not in FILE_READERS and key != DIRECTORY_FORMAT:
        names = [*FILE_READERS, DIRECTORY_FORMAT]
        raise UnknownFormatError(
            f"unknown format {format!r}", hint=f"use one of: {', '.join(names)}"
        )
    return key


def detect_format(path: str, *, name: str | None = None) -> str:
    """The ``READERS`` key for the file at ``path``: by content first, then by the extension of
    ``name`` (default ``path``; an LFS object is named by its pointer's path)."""
    label = name or path
    head = read_head(path)
    for key, reader in FILE_READERS.items():
        if reader.sniff(head, path):
            return key
    ext = os.path.splitext(label)[1].lower()
    known = unsupported.by_content(head)
    if known is None:
        for key, reader in FILE_READERS.items():
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
    key = format_name(format) if format else detect_format(path, name=name or label)
    if key == DIRECTORY_FORMAT:
        raise CheckpointError(
            "is a file; the huggingface format is a model directory",
            path=label,
            hint="pass the directory, or drop the format",
        )
    ckpt = FILE_READERS[key].open_path(path, label=label, unsafe_pickle=unsafe_pickle)
    ckpt.location = path
    return ckpt
