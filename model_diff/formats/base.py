"""What every checkpoint reader is: the ``Reader`` protocol and small shared helpers.

A reader is a plain module (``safetensors``, ``torch``, ``numpy``, ``hf``) exposing ``NAME``,
``EXTENSIONS``, ``sniff(head, path)`` and ``open_path(path, *, label, unsafe_pickle)``; the
registry in ``model_diff.formats`` lists them in one dict. Readers raise
``model_diff.errors`` types and never print, exit, or fall back to made-up data.
This module must not import torch.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import mmap
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from ..checkpoint import Checkpoint
from ..errors import CheckpointError

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


#: Read bytes go back to the OS in runs aligned to this, the span one huge page maps (x86-64,
#: and arm64 with 4 KiB pages). A page cache of 2 MiB folios (what Linux keeps for a file read
#: with readahead or written in large writes) is mapped a huge page at a time, and handing
#: back part of one splits it: a synchronous flush of the TLB of every core the process runs
#: on. Releasing each tensor's own pages split one at every tensor boundary: 0.13 s more CPU
#: over a 2 x 4 GiB bf16 pair.
HUGE_PAGE = 2 << 20
#: The smallest aligned run handed back in one call (each call flushes those TLBs too).
RELEASE_RUN = 8 << 20
#: Bytes of one mapping read but not yet handed back stay under this: past it, every whole
#: page of them goes back at once, aligned or not (reads far apart in the file, or a
#: neighbour that is never read, e.g. a header or a filtered-out tensor).
RELEASE_LIMIT = 32 << 20


class _Unreleased:
    """Per mapping: the byte ranges reported read, merged (disjoint, not touching), each as
    ``[lo, hi, rlo, rhi]``: read ``[lo, hi)``, of which ``[rlo, rhi)`` is handed back."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.ranges: list[list[int]] = []

    def add(self, start: int, end: int) -> list[tuple[int, int]]:
        """Record bytes ``[start, end)`` as read; return the byte ranges to hand back now."""
        page = mmap.PAGESIZE
        lo, hi = start, end
        kept: list[list[int]] = []
        given: list[tuple[int, int]] = []  # handed back already, within what is now one range
        out: list[tuple[int, int]] = []
        for r in self.ranges:
            if r[1] < lo or r[0] > hi:
                kept.append(r)
                continue
            if r[0] <= start and end <= r[1]:  # read again: its pages are mapped again
                a, b = max(-(-start // page) * page, r[2]), min(end - end % page, r[3])
                if b > a:
                    out.append((a, b))
            lo, hi = min(lo, r[0]), max(hi, r[1])
            if r[3] > r[2]:
                given.append((r[2], r[3]))
        given.sort()
        # Between two runs handed back: read bytes bounded by run edges, whatever their size.
        out += [(a, b) for (_, a), (b, _) in itertools.pairwise(given) if b > a]
        first = -(-lo // HUGE_PAGE) * HUGE_PAGE
        # The mapping's end has no neighbour after it: a range reaching it ends a run there.
        last = hi if hi >= self.size else hi - hi % HUGE_PAGE
        at_end = hi >= self.size
        rlo, rhi = (given[0][0], given[-1][1]) if given else (first, first)
        if rhi == rlo:
            if last - first >= RELEASE_RUN or (at_end and last > first):
                out.append((first, last))
                rlo, rhi = first, last
        else:
            if rlo - first >= RELEASE_RUN:
                out.append((first, rlo))
                rlo = first
            if last - rhi >= RELEASE_RUN or (at_end and last > rhi):
                out.append((rhi, last))
                rhi = last
        kept.append([lo, hi, rlo, rhi])
        if sum((r[1] - r[0]) - (r[3] - r[2]) for r in kept) > RELEASE_LIMIT:
            for r in kept:  # whole pages only: never a byte of a neighbour not read yet
                plo = -(-r[0] // page) * page
                phi = r[1] if r[1] >= self.size else r[1] - r[1] % page
                if r[3] > r[2]:
                    out += [(a, b) for a, b in ((plo, r[2]), (r[3], phi)) if b > a]
                    r[2], r[3] = min(r[2], plo), max(r[3], phi)
                elif phi > plo:
                    out.append((plo, phi))
                    r[2], r[3] = plo, phi
        self.ranges = kept
        return out


_UNRELEASED: weakref.WeakKeyDictionary[mmap.mmap, _Unreleased] = weakref.WeakKeyDictionary()
_UNRELEASED_LOCK = threading.Lock()


def page_release(mm: mmap.mmap, start: int, end: int) -> None:
    """Report bytes ``[start, end)`` of ``mm`` as read: their pages go back to the OS.

    ``mm`` must be a read-only file mapping that nobody wrote to, so a dropped page is simply
    re-read from the page cache if touched again (on a private mapping someone modified, the
    modification would be lost: readers never write into their mappings). Ranges reported by
    any thread, in any order, are merged per mapping and handed back in runs aligned to
    ``HUGE_PAGE``, of at least ``RELEASE_RUN`` bytes (or up to the mapping's end), never
    reaching a byte not reported (a neighbouring tensor's); what waits stays under
    ``RELEASE_LIMIT`` per mapping. A no-op where the platform lacks ``madvise`` or the mapping
    is already closed.
    """
    if _DONTNEED is None:
        return
    try:
        with _UNRELEASED_LOCK:
            state = _UNRELEASED.get(mm)
            if state is None:
                state = _UNRELEASED[mm] = _Unreleased(len(mm))
        start, end = max(start, 0), min(end, state.size)
        if end <= start:
            return
        with state.lock:
            runs = state.add(start, end)
        for lo, hi in runs:
            _dontneed()(mm, lo, hi - lo)
    except (ValueError, OSError):  # closed mapping, or a kernel that refuses the advice
        return


@functools.cache
def _dontneed() -> Callable[[mmap.mmap, int, int], None]:
    """``madvise(MADV_DONTNEED)`` of a range of a mapping: the compiled kernel's, which lets
    go of the GIL for the system call (the other workers run their Python meanwhile), else
    ``mmap.madvise`` (which holds it). Imported on the first release, not at start."""
    try:
        from ..kernel import madvise_dontneed
    except ImportError:  # no compiled kernel, or a platform without MADV_DONTNEED in it
        advice = _DONTNEED
        assert advice is not None  # page_release returns first where there is none
        return lambda mm, start, length: mm.madvise(advice, start, length)
    return madvise_dontneed


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


def zip_data_offset(mm: mmap.mmap | bytes, header_offset: int) -> int | None:
    """Where a zip member's bytes start: after its local file header, whose extra field may
    differ from the central directory's. None when no local header is at ``header_offset``."""
    o = header_offset
    if o < 0 or mm[o : o + 4] != ZIP_MAGIC or o + 30 > len(mm):
        return None
    name_len = int.from_bytes(mm[o + 26 : o + 28], "little")
    extra_len = int.from_bytes(mm[o + 28 : o + 30], "little")
    return o + 30 + name_len + extra_len


#: Bytes of a JSON document model-diff parses (config.json, an index) unless told otherwise.
MAX_JSON_BYTES = 64 << 20


def load_json(
    raw: bytes | str,
    *,
    what: str,
    label: str,
    hint: str,
    max_bytes: int | None = None,
    **kwargs: Any,
) -> Any:
    """Parse a JSON document from a checkpoint, bounded: a document over ``max_bytes``
    (default ``MAX_JSON_BYTES``) or nested deeper than Python's parser can follow is a
    ``CheckpointError`` (one line, exit 2), never a RecursionError traceback. ``kwargs`` go
    to ``json.loads``."""
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    if len(raw) > max_bytes:
        raise CheckpointError(
            f"{what} is over the {max_bytes:,}-byte limit for JSON",
            path=label,
            hint=hint,
        )
    try:
        return json.loads(raw, **kwargs)
    except RecursionError:
        raise CheckpointError(
            f"{what} nests JSON too deeply to be a real checkpoint file", path=label, hint=hint
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{what} is not valid JSON ({e})", path=label, hint=hint) from None
