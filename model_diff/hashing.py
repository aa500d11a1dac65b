"""Content hashes of tensors and files, streamed in chunks.

Two hashes with two jobs:

* **xxh3-128** (``xxhash``, ~10 GB/s here) for internal identity: textconv lines, caches keyed
  by content. A collision would only cost a redundant computation, so a fast
  non-cryptographic hash is the right tool. Tensor keys cover dtype and shape as well as the
  bytes, so the same bytes read as another dtype or shape get another key.
* **sha256** (~1.5 GB/s) where a digest identifies content *to users* and must match other
  tools (Git LFS object ids).

Everything streams: a tensor is hashed from its (mapped) buffer in ``HASH_CHUNK``-byte
slices without a copy, a file through one reused buffer. This module must not import torch,
click or the git/hook packages.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import xxhash

from .chunked import ChunkedArray

if TYPE_CHECKING:
    from .checkpoint import TensorRef

#: Bytes hashed per update: large enough to amortise calls, small enough to stay in cache.
HASH_CHUNK = 4 << 20
#: With a ``done`` hook, the pages of every this many bytes are handed back once hashed.
RELEASE_BYTES = 16 << 20


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def _feed_array(
    h: _Hasher, arr: np.ndarray | ChunkedArray, done: Callable[[int, int], None] | None = None
) -> None:
    """Feed ``arr``'s bytes in C order; ``done(start, stop)`` hears of each hashed element
    range of a contiguous array (every ``RELEASE_BYTES``), so its pages can be released.
    A ``ChunkedArray`` feeds its stored bytes (quantized blocks as stored), range by range."""
    if isinstance(arr, ChunkedArray):
        per = max(1, round(HASH_CHUNK * arr.size / max(1, arr.nbytes)))
        per -= per % 256 if per > 256 else 0  # whole blocks of every GGML block size
        for start in range(0, arr.size, per):
            stop = min(arr.size, start + per)
            h.update(arr.raw(start, stop).data)
            if done is not None:
                done(start, stop)
        return
    flat = arr.reshape(-1)
    if flat.flags.c_contiguous:
        raw = flat.view(np.uint8).data  # a view of the buffer: nothing copied
        size = max(1, flat.dtype.itemsize)
        released = 0
        for start in range(0, len(raw), HASH_CHUNK):
            h.update(raw[start : start + HASH_CHUNK])
            end = min(len(raw), start + HASH_CHUNK)
            if done is not None and (end - released >= RELEASE_BYTES or end == len(raw)):
                done(released // size, end // size)
                released = end
        return
    per = max(1, HASH_CHUNK // max(1, flat.dtype.itemsize))
    for start in range(0, flat.size, per):  # strided input: one bounded copy per slice
        h.update(np.ascontiguousarray(flat[start : start + per]).view(np.uint8).data)


def xxh3_bytes(chunks: Iterable[bytes | memoryview]) -> str:
    """xxh3-128 hex digest of the concatenation of ``chunks``."""
    h = xxhash.xxh3_128()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def array_xxh3(
    arr: np.ndarray | ChunkedArray,
    *,
    with_layout: bool = True,
    done: Callable[[int, int], None] | None = None,
) -> str:
    """xxh3-128 of an array's elements in C order; with its dtype and shape unless told not.
    ``done`` as for the metrics: told of each hashed element range (to release its pages)."""
    h = xxhash.xxh3_128()
    if with_layout:
        h.update(_layout_tag(arr.dtype.name, arr.shape))
    _feed_array(h, arr, done)
    return h.hexdigest()


def tensor_xxh3(ref: TensorRef) -> str:
    """xxh3-128 key of one checkpoint tensor (dtype, shape, bytes); releases its pages after."""
    h = xxhash.xxh3_128()
    h.update(_layout_tag(ref.dtype.name, ref.shape))
    try:
        _feed_array(h, ref.storage(), ref.release_range)
    finally:
        ref.release()
    return h.hexdigest()


def _layout_tag(dtype_name: str, shape: tuple[int, ...]) -> bytes:
    return f"{dtype_name}:{','.join(str(s) for s in shape)};".encode()


def file_xxh3(path: str | os.PathLike[str]) -> str:
    """xxh3-128 of a file's bytes, read through one reused buffer."""
    return file_xxh3_sized(path)[0]


def file_xxh3_sized(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(xxh3-128, byte count) of a file, in one pass."""
    h = xxhash.xxh3_128()
    size = _feed_file(h, path)
    return h.hexdigest(), size


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (a Git LFS oid when the file is an LFS object)."""
    import hashlib  # here: the xxh3 keys of a compare or textconv never need it (start-up)

    h = hashlib.sha256()
    _feed_file(h, path)
    return h.hexdigest()


def array_sha256(arr: np.ndarray) -> str:
    """sha256 of an array's raw bytes in C order (no dtype or shape mixed in)."""
    import hashlib

    h = hashlib.sha256()
    _feed_array(h, arr)
    return h.hexdigest()


def _feed_file(h: _Hasher, path: str | os.PathLike[str]) -> int:
    """Feed a file's bytes to ``h``; returns the byte count. The read buffer is an anonymous
    mmap: page-aligned (readinto a merely 16-byte-aligned buffer ran 6x slower here) and
    reused for every read."""
    buf = mmap.mmap(-1, HASH_CHUNK)
    view = memoryview(buf)
    size = 0
    try:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
                size += n
    finally:
        view.release()
        buf.close()
    return size
