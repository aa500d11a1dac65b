"""Tensors whose elements are produced range by range instead of viewed in place.

A ``ChunkedArray`` stands where a reader cannot hand out a flat numpy view of a tensor's
elements: block-quantized storage (GGML's Q4_K, Q8_0: blocks that decode to float32), rows
stored in another order than the source model's (llama.cpp's RoPE permutation of Q/K
projections), or a matrix stored transposed (ONNX MatMul weights). It answers two questions
for any element range ``[start, stop)``:

* ``values(start, stop)``: the elements, decoded, as a contiguous array of ``dtype``;
* ``raw(start, stop)``: the stored bytes that hold them, in element order (for hashing and
  the identical-bytes test, which never decode).

Both touch only the blocks or rows covering the range, so the metrics, hashing and stats
passes, which walk a tensor in fixed-size chunks, stay bounded in memory whatever the
tensor's size. Element ranges the metrics engine asks for start on multiples of its chunk
size (a multiple of every block size), so block-aligned access is the normal case; an
unaligned range decodes the blocks around it and trims.

This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: ``decode(raw)``: whole blocks of stored bytes (uint8, flat) -> their elements (flat).
Decode = Callable[[np.ndarray], np.ndarray]
_Fetch = Callable[[int, int], np.ndarray]


class ChunkedArray:
    """A flat tensor of ``size`` elements of ``dtype``, read by element range."""

    __slots__ = ("_raw", "_values", "dtype", "nbytes", "size")

    def __init__(
        self, *, size: int, dtype: np.dtype, nbytes: int, values: _Fetch, raw: _Fetch
    ) -> None:
        self.size = int(size)
        self.dtype = np.dtype(dtype)
        self.nbytes = int(nbytes)  # stored bytes (what the identical-bytes test compares)
        self._values = values
        self._raw = raw

    @property
    def shape(self) -> tuple[int]:
        return (self.size,)

    def values(self, start: int, stop: int) -> np.ndarray:
        """Elements ``[start, stop)`` as a contiguous array of ``dtype``."""
        start, stop = _clip(start, stop, self.size)
        out = self._values(start, stop)
        if out.dtype != self.dtype or out.size != stop - start:
            raise TypeError(f"reader bug: chunk {start}:{stop} came back {out.dtype} {out.size}")
        return out

    def raw(self, start: int, stop: int) -> np.ndarray:
        """The stored bytes (uint8) that hold elements ``[start, stop)``, in element order."""
        start, stop = _clip(start, stop, self.size)
        return self._raw(start, stop)

    def prefix(self, n: int) -> ChunkedArray:
        """The first ``n`` elements (the kept rows of a first-axis resize)."""
        n = max(0, min(int(n), self.size))
        per = self.nbytes / self.size if self.size else 0.0
        return ChunkedArray(
            size=n, dtype=self.dtype, nbytes=round(per * n), values=self._values, raw=self._raw
        )

    def view(self, dtype: np.dtype) -> ChunkedArray:
        """The same elements read as ``dtype`` of the same item size (a bfloat16 tensor's
        uint16 storage view and back); stored bytes unchanged."""
        dtype = np.dtype(dtype)
        if dtype.itemsize != self.dtype.itemsize:
            raise ValueError(f"cannot view {self.dtype} elements as {dtype}")
        if dtype == self.dtype:
            return self
        fetch = self._values
        return ChunkedArray(
            size=self.size,
            dtype=dtype,
            nbytes=self.nbytes,
            values=lambda start, stop: fetch(start, stop).view(dtype),
            raw=self._raw,
        )

    def dense(self) -> np.ndarray:
        """Every element in one array: only for callers that bound the size themselves."""
        return self.values(0, self.size)

    def __repr__(self) -> str:
        return f"ChunkedArray({self.size} x {self.dtype})"


def _clip(start: int, stop: int, size: int) -> tuple[int, int]:
    start = max(0, min(int(start), size))
    return start, max(start, min(int(stop), size))


def blocked(
    storage: np.ndarray,
    *,
    size: int,
    dtype: np.dtype,
    block_size: int,
    block_bytes: int,
    decode: Decode,
    row_len: int = 0,
    row_order: np.ndarray | None = None,
) -> ChunkedArray:
    """Elements stored in blocks of ``block_size`` elements / ``block_bytes`` bytes.

    ``storage`` is the tensor's bytes (uint8, flat, mapped). With ``row_order``, element row
    ``i`` (rows of ``row_len`` elements, a multiple of ``block_size``) is stored row
    ``row_order[i]``: the stored matrix is a row permutation of the one presented. A plain
    dtype is the case ``block_size=1``, ``decode`` a view.
    """
    storage = storage.reshape(-1).view(np.uint8)
    n_blocks = -(-size // block_size)
    if storage.size < n_blocks * block_bytes:
        raise ValueError(f"storage holds {storage.size} bytes, {n_blocks * block_bytes} needed")
    if row_order is not None:
        if row_len <= 0 or row_len % block_size or size % row_len:
            raise ValueError(f"rows of {row_len} do not tile {size} elements in blocks")
        if sorted(row_order.tolist()) != list(range(size // row_len)):
            raise ValueError("row_order is not a permutation of the rows")
    row_blocks = row_len // block_size if row_len else 0

    def block_bytes_of(b0: int, b1: int) -> np.ndarray:
        if row_order is None:
            return storage[b0 * block_bytes : b1 * block_bytes]
        r0, r1 = b0 // row_blocks, -(-b1 // row_blocks)
        rows = storage[: (size // row_len) * row_blocks * block_bytes].reshape(
            -1, row_blocks * block_bytes
        )
        gathered = rows[row_order[r0:r1]].reshape(-1)  # copies only the rows of this range
        skip = (b0 - r0 * row_blocks) * block_bytes
        return gathered[skip : skip + (b1 - b0) * block_bytes]

    def values(start: int, stop: int) -> np.ndarray:
        b0, b1 = start // block_size, -(-stop // block_size)
        out = decode(block_bytes_of(b0, b1)).reshape(-1)
        lo = start - b0 * block_size
        out = out[lo : lo + (stop - start)]
        return np.ascontiguousarray(out, dtype=dtype)

    def raw(start: int, stop: int) -> np.ndarray:
        return block_bytes_of(start // block_size, -(-stop // block_size))

    return ChunkedArray(
        size=size,
        dtype=dtype,
        nbytes=n_blocks * block_bytes,
        values=values,
        raw=raw,
    )


def transposed(matrix: np.ndarray) -> ChunkedArray:
    """The transpose of a 2-D array (any strides), read a band of columns at a time."""
    if matrix.ndim != 2:
        raise ValueError("transposed() needs a 2-D array")
    rows, cols = matrix.shape
    dtype = matrix.dtype

    def values(start: int, stop: int) -> np.ndarray:
        if rows == 0:
            return np.empty(0, dtype=dtype)
        c0, c1 = start // rows, -(-stop // rows)
        band = np.ascontiguousarray(matrix[:, c0:c1].T).reshape(-1)
        return np.ascontiguousarray(band[start - c0 * rows : stop - c0 * rows])

    def raw(start: int, stop: int) -> np.ndarray:
        return values(start, stop).view(np.uint8)

    return ChunkedArray(
        size=rows * cols, dtype=dtype, nbytes=rows * cols * dtype.itemsize, values=values, raw=raw
    )


def take(x: np.ndarray | ChunkedArray, start: int, stop: int) -> np.ndarray:
    """Elements ``[start, stop)`` of a flat array or a ``ChunkedArray``."""
    if isinstance(x, ChunkedArray):
        return x.values(start, stop)
    return x[start:stop]


def take_raw(x: np.ndarray | ChunkedArray, start: int, stop: int) -> np.ndarray:
    """The stored bytes of elements ``[start, stop)`` (uint8)."""
    if isinstance(x, ChunkedArray):
        return x.raw(start, stop)
    return np.ascontiguousarray(x[start:stop]).view(np.uint8)


def head(x: np.ndarray | ChunkedArray, n: int) -> np.ndarray | ChunkedArray:
    """The first ``n`` elements, still lazy for a ``ChunkedArray``."""
    return x.prefix(n) if isinstance(x, ChunkedArray) else x[:n]


def dense(x: np.ndarray | ChunkedArray) -> np.ndarray:
    """All elements in memory (callers bound the size: low-rank analysis of small deltas)."""
    return x.dense() if isinstance(x, ChunkedArray) else x
