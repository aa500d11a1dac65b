"""What every checkpoint reader is: the ``Reader`` protocol and small shared helpers.

A reader is a plain module (``safetensors``, ``torch``, ``numpy``, ``hf``) exposing ``NAME``,
``EXTENSIONS``, ``sniff(head, path)`` and ``open_path(path, *, label, unsafe_pickle)``; the
registry in ``model_diff.formats`` lists them in one dict. Readers raise
``model_diff.errors`` types and never print, exit, or fall back to made-up data.
This module must not import torch.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from typing import Protocol

from ..checkpoint import Checkpoint

#: Bytes read from the start of a file to sniff its format.
HEAD_BYTES = 512


class Reader(Protocol):
    """A checkpoint format: how to recognise it and how to open it lazily."""

    NAME: str
    #: lower-case file suffixes (with the dot) this format is saved under
    EXTENSIONS: tuple[str, ...]

    def sniff(self, head: bytes, path: str) -> bool:
        """True when ``head`` (the first ``HEAD_BYTES`` of ``path``) is this format's."""
        ...

    def open_path(self, path: str, *, label: str, unsafe_pickle: bool = False) -> Checkpoint:
        """Open ``path`` lazily; ``label`` is the name used in messages and ``Checkpoint.path``."""
        ...


def read_head(path: str, n: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def page_release(mm: mmap.mmap, start: int, end: int) -> None:
    """Drop the mapped pages covering bytes ``[start, end)`` of ``mm`` (file-backed, read-only,
    so the pages are simply re-read from the page cache if touched again).

    A no-op where the platform lacks ``madvise`` or the mapping is already closed.
    """
    if _DONTNEED is None or end <= start:
        return
    aligned = start - start % mmap.PAGESIZE
    try:
        mm.madvise(_DONTNEED, aligned, end - aligned)
    except (ValueError, OSError):  # closed mapping, or a kernel that refuses the advice
        return


def close_mmap(mm: mmap.mmap) -> None:
    """Close ``mm``; when numpy views of it are still alive, leave it to the garbage collector
    (the mapping is unmapped when the last view goes) rather than invalidate live arrays."""
    with contextlib.suppress(BufferError):
        mm.close()


ZIP_MAGIC = b"PK\x03\x04"


def is_zip_or_pickle(head: bytes) -> bool:
    """Whether ``head`` starts a zip archive or a binary pickle (protocol 2-5): what every
    PyTorch checkpoint starts with, whatever its extension."""
    return head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def first_zip_member(head: bytes) -> str | None:
    """Name of the first member of a zip archive from its first bytes (None if not a zip or
    the name does not fit in ``head``)."""
    if not head.startswith(ZIP_MAGIC) or len(head) < 30:
        return None
    n = int.from_bytes(head[26:28], "little")
    if len(head) < 30 + n:
        return None
    return head[30 : 30 + n].decode("utf-8", "replace")


def file_size(path: str) -> int:
    return os.stat(path).st_size
