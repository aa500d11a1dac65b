"""What every checkpoint writer shares: streamed output tensors and atomic output paths.

An ``OutTensor`` is a tensor to write: name, dtype, shape and a function that yields its
bytes (C order, little-endian) in bounded chunks, so no writer ever holds a whole tensor, let
alone a checkpoint, in memory. ``atomic_file`` / ``atomic_dir`` give a writer a temporary path
in the destination folder that is renamed onto the destination only when the writer finished;
on any error the temporary is removed and the destination is untouched.
``aligned_member`` writes one zip member whose data starts at a 64-byte boundary (what torch's
own writer does, so a mapped tensor is aligned).

This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..checkpoint import TensorRef
from ..chunked import ChunkedArray
from ..dtypes import DType
from ..errors import ModelDiffError

#: Bytes handed to the file per write: large enough to amortise calls, small enough to bound RSS.
WRITE_CHUNK = 4 << 20
#: Data of stored zip members starts at a multiple of this (torch's ``.storage_alignment``).
ZIP_ALIGNMENT = 64
#: A fixed timestamp for zip members: the same inputs give the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_PADDING_ID = 0x4246  # "FB": the extra-field id torch's writer pads with


@dataclass(frozen=True)
class OutTensor:
    """One tensor to write: its layout and a source of its bytes in bounded chunks."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    chunks: Callable[[], Iterable[bytes | memoryview]]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def copy_of(ref: TensorRef, name: str | None = None) -> OutTensor:
    """An ``OutTensor`` with the exact bytes of ``ref`` (read from its mapping in slices,
    pages released as they are written)."""

    def chunks() -> Iterator[memoryview]:
        arr = ref.storage()  # the bits (uint16 for bfloat16): no ml_dtypes needed
        if isinstance(arr, ChunkedArray):  # quantized/permuted storage: never a writable side
            raise TypeError(f"{ref.name}: stored bytes are not its elements; cannot copy them")
        raw = arr.view(np.uint8).data if arr.size else memoryview(b"")
        size = ref.dtype.itemsize
        try:
            for start in range(0, len(raw), WRITE_CHUNK):
                stop = min(len(raw), start + WRITE_CHUNK)
                yield raw[start:stop]
                ref.release_range(start // size, stop // size)
        finally:
            raw.release()
            ref.release()

    return OutTensor(name or ref.name, ref.dtype, ref.shape, chunks)


def data_file(path: str) -> str:
    """The file holding ``path``'s bytes: the LFS object when ``path`` is a Git LFS pointer
    (the reader resolves pointers the same way; a missing object has failed there already)."""
    from ..formats import lfs

    pointer = lfs.read_pointer(path)
    return path if pointer is None else lfs.resolve_pointer(pointer, path=path)


def write_tensor(f: BinaryIO, t: OutTensor) -> None:
    """Stream ``t``'s bytes into ``f``; a source that yields the wrong byte count is a bug."""
    written = 0
    for chunk in t.chunks():
        f.write(chunk)
        written += len(chunk)
    if written != t.nbytes:
        raise RuntimeError(f"bug: {t.name} produced {written} bytes, expected {t.nbytes}")


def _output_dir(dest: str) -> str:
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        raise ModelDiffError(
            "output directory does not exist", path=directory, hint="create it or choose another -o"
        )
    return directory


def _mode_for(dest: str) -> int:
    """The permission bits a new file at ``dest`` gets: the existing file's, else 0o666 & ~umask."""
    try:
        return os.stat(dest).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(dest: str) -> Iterator[BinaryIO]:
    """An open binary temporary file beside ``dest``, renamed onto it when the block succeeds
    (keeping ``dest``'s permissions if it exists); removed on any error."""
    if os.path.isdir(dest):
        raise ModelDiffError(
            "is a directory; the merged checkpoint is a file", path=dest, hint="choose a file path"
        )
    directory = _output_dir(dest)
    mode = _mode_for(dest)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model-diff-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(dest: str) -> Iterator[str]:
    """A temporary directory beside ``dest``, renamed to ``dest`` when the block succeeds.
    ``dest`` must not exist, or be an empty directory; removed on any error."""
    if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.listdir(dest)):
        raise ModelDiffError(
            "already exists; a merged model folder is written to a new directory",
            path=dest,
            hint="choose a path that does not exist yet (or an empty directory)",
        )
    directory = _output_dir(dest)
    tmp = tempfile.mkdtemp(dir=directory, prefix=".model-diff-")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if os.path.isdir(dest):
            os.rmdir(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _padding(offset: int, name: bytes, zip64: bool) -> bytes:
    """An extra field that makes a stored member's data start at a ZIP_ALIGNMENT boundary."""
    start = offset + 30 + len(name) + 4 + (20 if zip64 else 0)
    pad = -start % ZIP_ALIGNMENT
    return struct.pack("<HH", _PADDING_ID, pad) + b"\0" * pad


def aligned_member(
    zf: zipfile.ZipFile,
    f: BinaryIO,
    name: str,
    size: int,
    chunks: Iterable[bytes | memoryview],
    *,
    compress: int = zipfile.ZIP_STORED,
) -> None:
    """Write member ``name`` of ``size`` bytes from ``chunks``, streamed (zipfile computes the
    CRC on the way); a stored member's data is 64-byte aligned in the archive."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress
    info.file_size = size
    info.external_attr = 0o644 << 16
    if compress == zipfile.ZIP_STORED:
        # zipfile decides zip64 from the announced size exactly like this (ZipFile._open_to_write)
        zip64 = size * 1.05 > zipfile.ZIP64_LIMIT
        info.extra = _padding(f.tell(), name.encode("utf-8"), zip64)
    written = 0
    with zf.open(info, "w") as member:
        for chunk in chunks:
            member.write(chunk)
            written += len(chunk)
    if written != size:
        raise RuntimeError(f"bug: zip member {name} got {written} bytes, expected {size}")
