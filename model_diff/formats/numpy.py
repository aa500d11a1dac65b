"""The numpy reader: ``.npy`` files and ``.npz`` archives, mapped where the bytes allow.

A ``.npy`` file holds one array, named ``arr_0`` (the name ``np.savez`` gives a single
positional array, so ``x.npy`` and ``np.savez(f, x)`` pair up, and two ``.npy`` files always
pair with each other whatever they are called). An ``.npz`` archive holds one array per
``<name>.npy`` member. Uncompressed (stored) members are mapped zero-copy at their offset in
the archive. Compressed members are inflated in bounded chunks when first read: up to
``SPOOL_BYTES`` into memory, larger ones into an unlinked temporary file that is then mapped
like a stored member, so memory stays bounded whatever the compression ratio (a 2 MB archive
may inflate to gigabytes). Every member's header (dtype, shape) must account for exactly the
bytes the archive says it holds. Object arrays are refused (they are pickles):
``allow_pickle`` is never set. A member of a dtype model-diff does not read (complex) is
listed in ``Checkpoint.unchecked``. Fortran-ordered or big-endian arrays are converted per
tensor (a copy, never a write into the mapping).
This module must not import torch.
"""

from __future__ import annotations

import io
import mmap
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ..checkpoint import Checkpoint, TensorRef
from ..dtypes import DType, from_numpy
from ..errors import CheckpointError
from .base import ZIP_MAGIC, close_mmap, first_zip_member, page_release, zip_data_offset

if TYPE_CHECKING:
    import zipfile

NAME = "numpy"
EXTENSIONS: tuple[str, ...] = (".npy", ".npz")
NPY_MAGIC = b"\x93NUMPY"
SINGLE_ARRAY_NAME = "arr_0"
_MAX_HEADER = 1 << 16
#: A compressed member up to this size is inflated into memory; a larger one into a
#: temporary file (then mapped).
SPOOL_BYTES = 16 << 20
#: Inflated bytes handled per step.
INFLATE_CHUNK = 1 << 20
#: Free space left on the temporary file system after spooling a member.
SPOOL_RESERVE = 64 << 20


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
        #: Why model-diff does not read this dtype (complex ...), else None.
        self.unsupported: str | None = None
        try:
            self.dtype: DType = from_numpy(dtype)
        except KeyError:
            self.unsupported = f"dtype {dtype} is not read by model-diff"
            self.dtype = from_numpy(np.dtype(np.uint8))
        self.what = what
        self.np_dtype = dtype
        self.shape = tuple(int(s) for s in shape)
        self.fortran = bool(fortran)
        self.header_len = fp.tell()
        n = 1
        for s in self.shape:
            n *= s
        self.count = n
        self.nbytes = n * dtype.itemsize

    def refuse_unsupported(self, label: str) -> None:
        if self.unsupported is not None:
            raise CheckpointError(
                f"{self.what} has dtype {self.np_dtype}, which model-diff does not read",
                path=label,
                hint="convert it to a float, int or bool dtype",
            )

    def check_size(self, member_size: int, label: str) -> None:
        """The header's dtype and shape must account for exactly ``member_size`` bytes."""
        if self.header_len + self.nbytes != member_size:
            shape = "x".join(str(s) for s in self.shape) or "scalar"
            raise CheckpointError(
                f"{self.what} claims {self.np_dtype} [{shape}] = {self.nbytes:,} bytes, but the "
                f"member holds {max(0, member_size - self.header_len):,} after its header",
                path=label,
                hint="the archive is corrupt or crafted; re-save it with numpy.savez",
            )

    @property
    def in_place(self) -> bool:
        """True when ``to_flat`` hands out a view of the file (C order, native byte order)."""
        return not self.fortran and self.np_dtype == self.dtype.storage

    def to_flat(self, arr: np.ndarray) -> np.ndarray:
        """A flat, C-ordered, native-endian array of ``arr`` (a view when it already is)."""
        if self.fortran:
            arr = np.ascontiguousarray(arr.reshape(self.shape, order="F"))
        if arr.dtype != self.dtype.storage:
            arr = arr.astype(self.dtype.storage)
        return arr if arr.ndim == 1 else arr.reshape(-1)


def _mapped_loader(mm: mmap.mmap, h: _Header, offset: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        if h.count == 0:
            return np.empty(0, h.dtype.storage)
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
        h.refuse_unsupported(label)
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


def _open_npz(path: str, label: str) -> Checkpoint:
    import zipfile  # npz only: not on every start-up

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
            refs, skipped, unchecked, spools = _npz_members(zf, mm, path, label)
        except BaseException:
            close_mmap(mm)
            raise

    def close() -> None:
        for spool in spools:
            spool.close()
        close_mmap(mm)

    return Checkpoint(label, NAME, refs, skipped=skipped, closers=[close], unchecked=unchecked)


def _npz_members(
    zf: zipfile.ZipFile, mm: mmap.mmap, path: str, label: str
) -> tuple[dict[str, TensorRef], list[str], dict[str, str], list[_Spool]]:
    import zipfile  # npz only: not on every start-up

    refs: dict[str, TensorRef] = {}
    skipped: list[str] = []
    unchecked: dict[str, str] = {}
    spools: list[_Spool] = []
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
            start = zip_data_offset(mm, info.header_offset)
            if start is None:
                raise CheckpointError(
                    f"{what} has a corrupt local header",
                    path=label,
                    hint="re-save it with numpy.savez",
                )
            if start + info.file_size > len(mm):
                raise CheckpointError(
                    f"{what} runs past the end of the file (truncated?)",
                    path=label,
                    hint="re-save or re-fetch it",
                )
            h = _Header(
                io.BytesIO(mm[start : start + min(info.file_size, _MAX_HEADER + 16)]), label, what
            )
            h.check_size(info.file_size, label)
            if h.unsupported is not None:
                unchecked[name] = h.unsupported
                continue
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
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise CheckpointError(
                    f"{what} cannot be decompressed: {e}", path=label, hint="re-save or re-fetch it"
                ) from None
            h.check_size(info.file_size, label)
            if h.unsupported is not None:
                unchecked[name] = h.unsupported
                continue
            spool = _Spool(path, info.filename, h, label)
            spools.append(spool)
            refs[name] = TensorRef(
                name,
                h.dtype,
                h.shape,
                spool.load,
                release=spool.release,
                release_range=spool.release_range if h.in_place else None,
                source=f"{label}:{info.filename}",
            )
    return refs, skipped, unchecked, spools


class _Spool:
    """A compressed member, inflated in ``INFLATE_CHUNK`` steps on first read: into memory
    when small, else into an unlinked temporary file mapped read-only (kept until close)."""

    def __init__(self, path: str, member: str, h: _Header, label: str) -> None:
        self.path = path
        self.member = member
        self.h = h
        self.label = label
        self._mm: mmap.mmap | None = None
        self._lock = threading.Lock()

    def _fail(self, why: str) -> CheckpointError:
        return CheckpointError(
            f"member {self.member!r} {why}", path=self.label, hint="re-save or re-fetch it"
        )

    def _inflate(self, sink: Callable[[bytes], object]) -> None:
        import zipfile  # npz only: not on every start-up

        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as f:
                f.read(self.h.header_len)
                left = self.h.nbytes
                while left:
                    chunk = f.read(min(INFLATE_CHUNK, left))
                    if not chunk:
                        raise self._fail("ends before its array does (truncated?)")
                    sink(chunk)
                    left -= len(chunk)
                if f.read(1):  # also makes zipfile check the member's CRC
                    raise self._fail("holds more bytes than its header says")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise self._fail(f"cannot be read: {e}") from None

    def _spooled(self) -> mmap.mmap:
        if self._mm is None:
            import tempfile  # only a compressed member needs it (start-up of every reader)

            tmpdir = tempfile.gettempdir()
            st = os.statvfs(tmpdir)
            free = st.f_bavail * st.f_frsize
            if self.h.nbytes + SPOOL_RESERVE > free:
                raise CheckpointError(
                    f"member {self.member!r} inflates to {self.h.nbytes:,} bytes; the "
                    f"temporary directory {tmpdir} has {free:,} free",
                    path=self.label,
                    hint="set TMPDIR to a disk with room, or save the archive uncompressed",
                )
            with tempfile.TemporaryFile(prefix="model-diff-npz-") as tmp:
                self._inflate(tmp.write)
                tmp.flush()
                self._mm = mmap.mmap(tmp.fileno(), self.h.nbytes, access=mmap.ACCESS_READ)
        return self._mm

    def load(self) -> np.ndarray:
        h = self.h
        if h.count == 0:
            return np.empty(0, h.dtype.storage)
        with self._lock:
            if h.nbytes <= SPOOL_BYTES:
                parts: list[bytes] = []
                self._inflate(parts.append)
                buf: bytes | mmap.mmap = b"".join(parts)
            else:
                buf = self._spooled()
        return h.to_flat(np.frombuffer(buf, h.np_dtype, count=h.count))

    def release(self) -> None:
        if self._mm is not None:
            page_release(self._mm, 0, self.h.nbytes)

    def release_range(self, lo: int, hi: int) -> None:
        if self._mm is not None:
            page_release(self._mm, lo, hi)

    def close(self) -> None:
        with self._lock:
            if self._mm is not None:
                close_mmap(self._mm)
                self._mm = None


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
