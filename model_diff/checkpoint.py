"""The lazy in-memory view of a checkpoint every reader produces.

A ``Checkpoint`` knows each tensor's name, dtype, shape and size without touching tensor
data; ``TensorRef.array()`` hands out a flat, zero-copy (where the format allows) numpy view
when the data is needed, and ``TensorRef.release()`` lets go of the mapped pages afterwards,
so memory stays bounded by the tensors in flight, not by the checkpoint size.

This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .chunked import ChunkedArray
from .dtypes import DType
from .naming import natural_sorted

#: What ``TensorRef.array()`` hands out: a flat view, or a ``ChunkedArray`` where the stored
#: bytes are not the elements themselves (quantized blocks, permuted or transposed layouts).
Elements = np.ndarray | ChunkedArray


class TensorRef:
    """One tensor of a checkpoint: metadata now, data on demand."""

    __slots__ = (
        "_loader",
        "_release",
        "_release_range",
        "dtype",
        "name",
        "nbytes",
        "shape",
        "source",
    )

    def __init__(
        self,
        name: str,
        dtype: DType,
        shape: tuple[int, ...],
        loader: Callable[[], Elements],
        *,
        release: Callable[[], None] | None = None,
        release_range: Callable[[int, int], None] | None = None,
        source: str | None = None,
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = tuple(int(s) for s in shape)
        self.nbytes = dtype.storage_nbytes(self.numel)
        self.source = source  # file the data lives in (a shard, an npz member), for messages
        self._loader = loader
        self._release = release
        self._release_range = release_range  # (start byte, stop byte) of the tensor's data

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def array(self) -> Elements:
        """The tensor's elements as a flat C-contiguous array of ``self.dtype.numpy``, or a
        ``ChunkedArray`` of them (read by range) where the storage is not a plain view."""
        arr = self._loader()
        if isinstance(arr, ChunkedArray):
            if arr.dtype != self.dtype.numpy or arr.size != self.numel:
                raise TypeError(f"reader bug: {self.name} loader returned {arr!r}")
            return arr
        if arr.dtype != self.dtype.numpy or arr.ndim != 1 or not arr.flags.c_contiguous:
            raise TypeError(f"reader bug: {self.name} loader returned {arr.dtype} {arr.shape}")
        return arr

    def release(self) -> None:
        """Drop the pages this tensor's data occupies (a no-op where the reader cannot)."""
        if self._release is not None:
            self._release()

    def release_range(self, start: int, stop: int) -> None:
        """Drop the pages of elements ``[start, stop)`` (a read part of a large tensor), where
        the reader maps the file; else a no-op (``release()`` still runs at the end)."""
        if self._release_range is not None:
            dt = self.dtype
            if dt.is_quantized:  # whole blocks: round the start down and the stop up
                start -= start % dt.block_size
            self._release_range(dt.storage_nbytes(start), dt.storage_nbytes(stop))

    def with_name(self, name: str) -> TensorRef:
        """The same tensor under another name: every slot copied (loader, page release,
        source), so a renamed view keeps part-by-part release of large tensors."""
        alias = TensorRef.__new__(TensorRef)
        for slot in TensorRef.__slots__:
            setattr(alias, slot, getattr(self, slot))
        alias.name = name
        return alias

    def __repr__(self) -> str:
        return f"TensorRef({self.name!r}, {self.dtype.name}, {self.shape})"


@dataclass(frozen=True)
class TensorInfo:
    """Per-tensor facts of one checkpoint (the original API's ``Checkpoint.tensor_info``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nbytes: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    l2_norm: float | None
    zero_fraction: float
    nan_count: int
    inf_count: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class NameMapping:
    """How one side's tensor names (and layouts) were mapped onto the other side's: a GGUF or
    ONNX file compared with the checkpoint it was converted from."""

    #: e.g. "GGUF llama", "ONNX export"
    scheme: str
    mapped: int
    total: int
    #: names of the mapped side that have no counterpart (compared as added/removed)
    unmapped: tuple[str, ...] = ()
    #: converter transforms undone, by kind ("RoPE permutation", "transpose") -> tensor names
    transforms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: "old" or "new": the side whose names were mapped (set by the diff)
    side: str = ""

    def describe(self) -> str:
        """One line for reports: "names mapped from GGUF llama, 291 of 291"."""
        text = f"names mapped from {self.scheme}, {self.mapped} of {self.total}"
        undone = [f"{kind} undone on {len(names)}" for kind, names in self.transforms.items()]
        if undone:
            text += " (" + ", ".join(undone) + ")"
        if self.unmapped:
            text += f"; unmapped: {', '.join(self.unmapped[:8])}"
            if len(self.unmapped) > 8:
                text += f" and {len(self.unmapped) - 8} more"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "scheme": self.scheme,
            "mapped": self.mapped,
            "total": self.total,
            "unmapped": list(self.unmapped),
            "transforms": {k: list(v) for k, v in sorted(self.transforms.items())},
            "description": self.describe(),
        }


class Checkpoint:
    """A checkpoint opened by a reader: lazy tensors plus metadata and config."""

    def __init__(
        self,
        path: str,
        format: str,
        tensors: Mapping[str, TensorRef],
        *,
        metadata: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        skipped: list[str] | None = None,
        closers: list[Callable[[], None]] | None = None,
    ) -> None:
        self.path = path
        self.format = format
        self.tensors: dict[str, TensorRef] = {n: tensors[n] for n in natural_sorted(tensors)}
        self.metadata: dict[str, str] = dict(metadata or {})
        self.config: dict[str, Any] | None = dict(config) if config is not None else None
        #: non-tensor entries found in the file (optimizer step counters, strings, ...)
        self.skipped: list[str] = natural_sorted(skipped or [])
        self._closers = list(closers or [])
        self._info: dict[str, TensorInfo] | None = None
        self._info_lock = threading.Lock()

    # -- the original API -------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        """Tensor names in natural order."""
        return list(self.tensors)

    @property
    def num_parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def size_bytes(self) -> int:
        """Bytes of tensor data (not the file size: headers and pickles excluded)."""
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def tensor_info(self) -> dict[str, TensorInfo]:
        """Statistics per tensor, computed on first access in one streaming pass."""
        with self._info_lock:
            if self._info is None:
                from .metrics import checkpoint_stats

                self._info = checkpoint_stats(self)
            return self._info

    @property
    def dtypes(self) -> dict[str, int]:
        """Parameter count per dtype name, in name order."""
        out: dict[str, int] = {}
        for t in self.tensors.values():
            out[t.dtype.name] = out.get(t.dtype.name, 0) + t.numel
        return dict(sorted(out.items()))

    def describe(self, label: str | None = None) -> dict[str, Any]:
        """Facts that need no tensor data: path (or ``label``), format, counts, dtypes."""
        return {
            "path": label if label is not None else self.path,
            "format": self.format,
            "num_tensors": len(self.tensors),
            "num_parameters": self.num_parameters,
            "size_bytes": self.size_bytes,
            "dtypes": self.dtypes,
        }

    # -- plumbing -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __getitem__(self, name: str) -> TensorRef:
        return self.tensors[name]

    def map_onto(self, other: Checkpoint) -> tuple[Checkpoint, NameMapping] | None:
        """This checkpoint with ``other``'s tensor names and layouts, where this format's
        converter renamed or re-laid them (GGUF, ONNX readers override this); None when
        there is nothing to map. ``other`` is only read for its names and shapes."""
        return None

    def renamed(self, mapping: Callable[[str], str]) -> Checkpoint:
        """A view with every tensor name passed through ``mapping`` (data shared)."""
        new: dict[str, TensorRef] = {}
        for name, ref in self.tensors.items():
            alias = ref.with_name(mapping(name))
            new[alias.name] = alias
        view = Checkpoint(
            self.path,
            self.format,
            new,
            metadata=self.metadata,
            config=self.config,
            skipped=self.skipped,
        )
        view._closers = self._closers  # closing the view closes the files it shares
        return view

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Checkpoint({self.path!r}, format={self.format!r}, tensors={len(self)}, "
            f"parameters={self.num_parameters})"
        )


def from_arrays(
    arrays: Mapping[str, np.ndarray],
    *,
    path: str = "<memory>",
    format: str = "memory",
    metadata: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """A Checkpoint over in-memory numpy arrays (tests, the demo, API users)."""
    from .dtypes import from_numpy

    refs: dict[str, TensorRef] = {}
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if not a.flags.c_contiguous:  # ascontiguousarray would turn a 0-d array into 1-d
            a = a.copy(order="C")
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("="))
        refs[name] = TensorRef(name, from_numpy(a.dtype), a.shape, functools.partial(a.reshape, -1))
    return Checkpoint(path, format, refs, metadata=metadata, config=config)
