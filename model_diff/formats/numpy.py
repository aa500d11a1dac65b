"""The numpy reader: ``.npy`` files and ``.npz`` archives, mapped where the bytes allow.

A ``.npy`` file holds one array, named ``arr_0`` (the name ``np.savez`` gives a single
positional array, so ``x.npy`` and ``np.savez(f, x)`` pair up, and two ``.npy`` files always
pair with each other whatever they are called). An ``.npz`` archive holds one array per
``<name>.npy`` member. Uncompressed (stored) members are mapped zero-copy at their offset in
the archive; compressed members are decompressed per tensor on demand (a fresh buffer is
unavoidable there). Object arrays are refused (they are pickles): ``allow_pickle`` is never
set. Fortran-ordered or big-endian arrays are converted per tensor (a copy).
This module must not import torch.
"""

from __future__ import annotations

import io
import mmap
import os
import zipfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

from ..checkpoint import Checkpoint, TensorRef
from ..dtypes import DType, from_numpy
from ..errors import CheckpointError
from .base import ZIP_MAGIC, close_mmap, first_zip_member, page_release

NAME = "numpy"
EXTENSIONS: tuple[str, ...] = (".npy", ".npz")
NPY_MAGIC = b"\x93NUMPY"
SINGLE_ARRAY_NAME = "arr_0"
_MAX_HEADER = 1 << 16


def sniff(head: bytes, path: str) -> bool:
    if head.startswith(NPY_MAGIC):
        return True
    member = first_zip_member(head)
    return member is not None and member.endswith(".npy")


class _Header:
    """What a .npy header says: dtype, shape, element order and where the data starts."""

    def __init__(self, fp: BinaryIO, label: str, what: str) -> None:
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                    fp, max_header_size=_MAX_HEADER
                )
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                    fp, max_header_size=_MAX_HEADER
                )
            else:
                raise ValueError(f"npy format version {version} is not supported")
        except (ValueError, OSError, EOFError) as e:
            raise CheckpointError(
                f"{what} is not a valid .npy array: {e}",
                path=label,
                hint="re-save it with numpy.save",
            ) from None
        if dtype.hasobject:
            raise CheckpointError(
                f"{what} holds Python objects (a pickle), which model-diff never loads",
                path=label,
                hint="save numeric arrays only",
            )
        try:
            self.dtype: DType = from_numpy(dtype)
        except KeyError:
            raise CheckpointError(
                f"{what} has dtype {dtype}, which model-diff does not read",
                path=label,
                hint="convert it to a float, int or bool dtype",
            ) from None
        self.np_dtype = dtype
        self.shape = tuple(int(s) for s in shape)
        self.fortran = bool(fortran)
        self.header_len = fp.tell()
        n = 1
        for s in self.shape:
            n *= s
        self.count = n
        self.nbytes = n * dtype.itemsize

    @property
    def in_place(self) -> bool:
        """True when ``to_flat`` hands out a view of the file (C order, native byte order)."""
        return not self.fortran and self.np_dtype == self.dtype.numpy

    def to_flat(self, arr: np.ndarray) -> np.ndarray:
        """A flat, C-ordered, native-endian array of ``arr`` (a view when it already is)."""
        if self.fortran:
            arr = np.ascontiguousarray(arr.reshape(self.shape, order="F"))
        if arr.dtype != self.dtype.numpy:
            arr = arr.astype(self.dtype.numpy)
        return arr if arr.ndim == 1 else arr.reshape(-1)


def _mapped_loader(mm: mmap.mmap, h: _Header, offset: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        if h.count == 0:
            return np.empty(0, h.dtype.numpy)
        return h.to_flat(np.frombuffer(mm, h.np_dtype, count=h.count, offset=offset))

    return load


def _releaser(mm: mmap.mmap, start: int, end: int) -> Callable[[], None]:
    return lambda: page_release(mm, start, end)


def _range_releaser(mm: mmap.mmap, h: _Header, start: int) -> Callable[[int, int], None] | None:
    """Release by element range only where elements sit in the file in the order read."""
    if not h.in_place:
        return None
    return lambda lo, hi: page_release(mm, start + lo, start + hi)


def _open_npy(path: str, label: str) -> Checkpoint:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        h = _Header(f, label, "the file")
        if h.header_len + h.nbytes > size:
            raise CheckpointError(
                f"array needs {h.nbytes} bytes after its header but the file holds "
                f"{size - h.header_len} (truncated?)",
                path=label,
                hint="the file is truncated; re-save or re-fetch it",
            )
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    start = h.header_len
    ref = TensorRef(
        SINGLE_ARRAY_NAME,
        h.dtype,
        h.shape,
        _mapped_loader(mm, h, start),
        release=_releaser(mm, start, start + h.nbytes),
        release_range=_range_releaser(mm, h, start),
        source=label,
    )
    return Checkpoint(label, NAME, {SINGLE_ARRAY_NAME: ref}, closers=[lambda: close_mmap(mm)])


def _local_data_offset(mm: mmap.mmap, info: zipfile.ZipInfo, label: str) -> int:
    """Where a member's bytes start: after its local file header (whose extra field may differ
    from the central directory's)."""
    o = info.header_offset
    if mm[o : o + 4] != ZIP_MAGIC:
        raise CheckpointError(
            f"member {info.filename!r} has a corrupt local header",
            path=label,
            hint="re-save it with numpy.savez",
        )
    name_len = int.from_bytes(mm[o + 26 : o + 28], "little")
    extra_len = int.from_bytes(mm[o + 28 : o + 30], "little")
    return o + 30 + name_len + extra_len


def _open_npz(path: str, label: str) -> Checkpoint:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"is not a readable .npz archive: {e}",
            path=label,
            hint="the file is truncated or corrupt; re-save or re-fetch it",
        ) from None
    with zf, open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            refs, skipped = _npz_members(zf, mm, path, label)
        except BaseException:
            close_mmap(mm)
            raise
    return Checkpoint(label, NAME, refs, skipped=skipped, closers=[lambda: close_mmap(mm)])


def _npz_members(
    zf: zipfile.ZipFile, mm: mmap.mmap, path: str, label: str
) -> tuple[dict[str, TensorRef], list[str]]:
    refs: dict[str, TensorRef] = {}
    skipped: list[str] = []
    for info in zf.infolist():
        if info.is_dir():
            continue
        if not info.filename.endswith(".npy"):
            skipped.append(info.filename)
            continue
        name = info.filename[: -len(".npy")]
        what = f"member {info.filename!r}"
        if info.flag_bits & 0x1:
            raise CheckpointError(
                f"{what} is encrypted", path=label, hint="save it without encryption"
            )
        if info.compress_type == zipfile.ZIP_STORED:
            start = _local_data_offset(mm, info, label)
            if start + info.file_size > len(mm):
                raise CheckpointError(
                    f"{what} runs past the end of the file (truncated?)",
                    path=label,
                    hint="re-save or re-fetch it",
                )
            h = _Header(
                io.BytesIO(mm[start : start + min(info.file_size, _MAX_HEADER + 16)]), label, what
            )
            if h.header_len + h.nbytes > info.file_size:
                raise CheckpointError(
                    f"{what} is shorter than its array (truncated?)",
                    path=label,
                    hint="re-save or re-fetch it",
                )
            d0 = start + h.header_len
            refs[name] = TensorRef(
                name,
                h.dtype,
                h.shape,
                _mapped_loader(mm, h, d0),
                release=_releaser(mm, d0, d0 + h.nbytes),
                release_range=_range_releaser(mm, h, d0),
                source=f"{label}:{info.filename}",
            )
        else:
            try:
                with zf.open(info) as member:
                    h = _Header(member, label, what)  # type: ignore[arg-type]
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise CheckpointError(
                    f"{what} cannot be decompressed: {e}", path=label, hint="re-save or re-fetch it"
                ) from None
            refs[name] = TensorRef(
                name,
                h.dtype,
                h.shape,
                _compressed_loader(path, info.filename, h, label),
                source=f"{label}:{info.filename}",
            )
    return refs, skipped


def _compressed_loader(path: str, member: str, h: _Header, label: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            with zipfile.ZipFile(path) as zf, zf.open(member) as f:
                arr = np.lib.format.read_array(f, allow_pickle=False)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise CheckpointError(
                f"member {member!r} cannot be read: {e}", path=label, hint="re-save or re-fetch it"
            ) from None
        # read_array already honours the element order: only C-order and byte order remain.
        flat = np.ascontiguousarray(arr).reshape(-1)
        return flat if flat.dtype == h.dtype.numpy else flat.astype(h.dtype.numpy)

    return load


def open_path(path: str, *, label: str | None = None, unsafe_pickle: bool = False) -> Checkpoint:
    """Open a ``.npy`` file or ``.npz`` archive (decided by content, then extension)."""
    del unsafe_pickle  # numpy object arrays are refused whatever the flag says
    label = label or path
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        return _open_npy(path, label)
    if head.startswith(ZIP_MAGIC[:2]) or path.lower().endswith(".npz"):
        return _open_npz(path, label)
    return _open_npy(path, label)
