"""The safetensors reader: strict header validation, zero-copy mmap'd tensor data.

The 8-byte little-endian header length and the JSON header are parsed here (the
``safetensors`` library is not used: its numpy path copies every tensor). The header is
validated at least as strictly as the library does: known dtypes, offsets in bounds,
contiguous and non-overlapping, sizes matching shapes, the data region fully covered, the file
not truncated, ``__metadata__`` a str -> str map. Tensor data is never read here: each
``TensorRef`` hands out a read-only ``np.frombuffer`` view of one mapping of the file, and its
``release()`` drops the pages it touched. This module must not import torch.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, TensorRef
from ..dtypes import BY_ST_CODE, DType
from ..errors import CheckpointError
from .base import close_mmap, load_json, page_release

NAME = "safetensors"
EXTENSIONS: tuple[str, ...] = (".safetensors",)

#: The safetensors library refuses headers above 100 MB; so do we.
MAX_HEADER_SIZE = 100_000_000

_HINT = "the file is not valid safetensors; re-save it with safetensors.save_file"


def sniff(head: bytes, path: str) -> bool:
    """A plausible header length followed by the start of a JSON object."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    return 2 <= n <= min(MAX_HEADER_SIZE, size - 8) and head[8:9] == b"{"


def _fail(label: str, what: str, hint: str = _HINT) -> CheckpointError:
    return CheckpointError(what, path=label, hint=hint)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {k!r}")
            seen.add(k)
    return out


def _uints(v: object) -> bool:
    """A list of integers >= 0 (JSON numbers without a fraction; not true/false)."""
    # type() is int, not isinstance: bool is an int subclass, and excluded
    return isinstance(v, list) and all(type(x) is int and x >= 0 for x in v)


def read_header(path: str, *, label: str | None = None) -> tuple[int, dict[str, Any], int]:
    """``(header_length, header_dict, file_size)`` of a safetensors file, unvalidated entries.

    Raises ``CheckpointError`` for an empty, short or truncated file and for a header that is
    not a UTF-8 JSON object.
    """
    label = label or path
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise _fail(
                label,
                "is empty (0 bytes)",
                "the file was never written completely; re-save or re-fetch it",
            )
        if size < 8:
            raise _fail(label, f"is {size} bytes, too short for a safetensors header length")
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_SIZE:
            raise _fail(
                label,
                f"safetensors header length {n} exceeds the "
                f"{MAX_HEADER_SIZE}-byte limit (corrupt or not safetensors)",
            )
        if n < 2:
            raise _fail(label, f"safetensors header length {n} is too small for a JSON object")
        if 8 + n > size:
            raise _fail(
                label,
                f"safetensors header length {n} runs past the end of the "
                f"{size}-byte file (truncated?)",
                "the file is truncated; re-save or re-fetch it",
            )
        raw = f.read(n)
    if not raw.startswith(b"{"):
        raise _fail(label, "safetensors header does not start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(label, f"safetensors header is not valid UTF-8 (byte {e.start})") from None
    header = load_json(
        text,
        what="safetensors header",
        label=label,
        hint=_HINT,
        max_bytes=MAX_HEADER_SIZE,
        object_pairs_hook=_reject_duplicates,
    )
    if not isinstance(header, dict):
        raise _fail(label, "safetensors header is not a JSON object")
    return n, header, size


def parse_entries(
    header: dict[str, Any], data_size: int, *, label: str
) -> tuple[dict[str, tuple[DType, tuple[int, ...], int, int]], dict[str, str]]:
    """Validate a header against a data region of ``data_size`` bytes.

    Returns ``({name: (dtype, shape, begin, end)}, metadata)`` with offsets relative to the
    start of the data region.
    """
    meta_raw = header.get("__metadata__")
    metadata: dict[str, str] = {}
    if meta_raw is not None:
        if not isinstance(meta_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta_raw.items()
        ):
            raise _fail(label, "safetensors __metadata__ must map strings to strings")
        metadata = dict(meta_raw)
    entries: dict[str, tuple[DType, tuple[int, ...], int, int]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise _fail(label, f"safetensors entry {name!r} is not an object")
        missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
        if missing:
            raise _fail(label, f"safetensors entry {name!r} lacks {', '.join(missing)}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str):
            raise _fail(label, f"safetensors entry {name!r} has a non-string dtype")
        dtype = BY_ST_CODE.get(code)
        if dtype is None:
            known = " ".join(BY_ST_CODE)
            raise _fail(
                label,
                f"tensor {name!r} has dtype {code!r}, which model-diff does "
                f"not read (known: {known})",
                "convert the tensor to a supported dtype",
            )
        if not _uints(shape):
            raise _fail(label, f"tensor {name!r} has an invalid shape {shape!r}")
        if not _uints(offsets) or len(offsets) != 2:
            raise _fail(label, f"tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if end < begin:
            raise _fail(
                label, f"tensor {name!r} has data_offsets {offsets} that end before they begin"
            )
        numel = 1
        for s in shape:
            numel *= s
        if numel * dtype.itemsize != end - begin:
            raise _fail(
                label,
                f"tensor {name!r} is {code} {shape} = {numel * dtype.itemsize} "
                f"bytes but its data_offsets span {end - begin}",
            )
        entries[name] = (dtype, tuple(shape), begin, end)
    # The library's rule: sorted by offset, each tensor starts where the previous one ended
    # (no gaps, no overlap) and the last one ends exactly at the end of the data region.
    cursor = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != cursor:
            what = "overlaps the previous tensor" if begin < cursor else "leaves a gap before it"
            raise _fail(
                label,
                f"tensor {name!r} at data_offsets [{begin}, {end}] {what} "
                f"(expected to start at {cursor})",
            )
        cursor = end
    if cursor != data_size:
        if cursor > data_size:
            raise _fail(
                label,
                f"tensor data needs {cursor} bytes but the file holds "
                f"{data_size} after the header (truncated?)",
                "the file is truncated; re-save or re-fetch it",
            )
        raise _fail(
            label, f"{data_size - cursor} bytes after the last tensor are not covered by the header"
        )
    return entries, metadata


def open_path(path: str, *, label: str | None = None, unsafe_pickle: bool = False) -> Checkpoint:
    """Open a safetensors file: header parsed and validated now, data mapped on demand."""
    del unsafe_pickle  # safetensors holds no code
    label = label or path
    n, header, size = read_header(path, label=label)
    base = 8 + n
    entries, metadata = parse_entries(header, size - base, label=label)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if len(mm) != size:  # the file changed between stat and map
        close_mmap(mm)
        raise _fail(label, "changed while being opened", "retry once the writer has finished")
    refs: dict[str, TensorRef] = {}
    for name, (dtype, shape, begin, end) in entries.items():
        count = (end - begin) // dtype.itemsize

        def load(dt: DType = dtype, c: int = count, o: int = base + begin) -> np.ndarray:
            # The storage dtype (uint16 for bf16): TensorRef.array() views it as bfloat16
            # (ml_dtypes) only for callers that ask; the metrics read the storage view.
            if c == 0:
                return np.empty(0, dt.storage)
            return np.frombuffer(mm, dt.storage, count=c, offset=o)

        def release(o: int = base + begin, e: int = base + end) -> None:
            page_release(mm, o, e)

        def release_range(lo: int, hi: int, o: int = base + begin) -> None:
            page_release(mm, o + lo, o + hi)

        refs[name] = TensorRef(
            name,
            dtype,
            shape,
            load,
            release=release,
            release_range=release_range,
            source=label,
            offset=base + begin,
        )
    return Checkpoint(label, NAME, refs, metadata=metadata, closers=[lambda: close_mmap(mm)])
