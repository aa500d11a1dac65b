"""The lazy in-memory view of a checkpoint every reader produces.

A ``Checkpoint`` knows each tensor's name, dtype, shape and size without touching tensor
data; ``TensorRef.array()`` hands out a flat, zero-copy (where the format allows) numpy view
when the data is needed, and ``TensorRef.release()`` lets go of the mapped pages afterwards,
so memory stays bounded by the tensors in flight, not by the checkpoint size.

This module must not import torch, click or the git/hook packages.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from .chunked import ChunkedArray, dense
from .dtypes import DType
from .errors import CheckpointError
from .naming import natural_sorted

_T = TypeVar("_T")

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
        "numel",
        "offset",
        "shape",
        "source",
        "storage_key",
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
        storage_key: Hashable | None = None,
        offset: int | None = None,
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = tuple(map(int, shape))
        #: Elements (the product of the shape).
        self.numel = math.prod(self.shape)
        self.nbytes = dtype.storage_nbytes(self.numel)
        self.source = source  # file the data lives in (a shard, an npz member), for messages
        #: Where the reader found the elements (file, byte offset, dtype, shape, strides) when
        #: several names can share them (torch saves tied weights once, under each name):
        #: equal keys in one checkpoint are one tensor saved twice. None: not known.
        self.storage_key = storage_key
        #: Byte offset of the data in ``source`` where the reader knows it (None: not known):
        #: a pass reads tensors in this order, front to back through each file.
        self.offset = offset
        self._loader = loader
        self._release = release
        self._release_range = release_range  # (start byte, stop byte) of the tensor's data

    def array(self) -> Elements:
        """The tensor's elements as a flat C-contiguous array of ``self.dtype.numpy``, or a
        ``ChunkedArray`` of them (read by range) where the storage is not a plain view.
        For bfloat16/float8 this imports ml_dtypes: passes that only read bits (metrics,
        hashing, byte comparisons) use ``storage()`` instead."""
        arr = self._load()
        dt = self.dtype
        if not dt.storage_differs or arr.dtype.name == dt.name:
            return arr
        return arr.view(dt.numpy)

    def storage(self) -> Elements:
        """The same elements as ``array()`` (zero-copy where it is) as a flat C-contiguous
        array of ``self.dtype.storage``: uint16 for bfloat16, uint8 for float8 (the same
        bits; no ml_dtypes), the numpy dtype itself for every other type. The metrics kernel
        reads it when told the logical dtype (``metrics.diff_arrays(..., dtypes=...)``)."""
        arr = self._load()
        st = self.dtype.storage
        return arr if arr.dtype == st else arr.view(st)

    def _load(self) -> Elements:
        # Loaders hand out the storage dtype (every reader: no ml_dtypes at open or view) or,
        # for in-memory arrays (from_arrays), the logical one: told apart by name and item
        # size, so checking a bfloat16 storage view never imports ml_dtypes.
        arr = self._loader()
        st = self.dtype.storage
        if arr.dtype != st:
            name = "float32" if self.dtype.is_quantized else self.dtype.name
            if arr.dtype.name != name or arr.dtype.itemsize != st.itemsize:
                raise TypeError(f"reader bug: {self.name} loader returned {arr.dtype}")
        if isinstance(arr, ChunkedArray):
            if arr.size != self.numel:
                raise TypeError(f"reader bug: {self.name} loader returned {arr!r}")
            return arr
        if arr.ndim != 1 or not arr.flags.c_contiguous:
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
        if name == self.name:
            return self
        alias = TensorRef.__new__(TensorRef)
        for slot in TensorRef.__slots__:
            setattr(alias, slot, getattr(self, slot))
        alias.name = name
        return alias

    def __repr__(self) -> str:
        return f"TensorRef({self.name!r}, {self.dtype.name}, {self.shape})"


def in_read_order(
    each: Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]],
    fn: Callable[[_T], Any],
    items: Sequence[_T],
    ref: Callable[[_T], TensorRef],
) -> Iterator[tuple[int, Any]]:
    """``each(fn, items)`` (``map`` or a pool's ordered map) with the items taken in the order
    their data sits in the files (``ref(item)``'s source, then offset; items whose reader
    knows no offset keep their order, ahead of the rest of their file): yields (index in
    ``items``, result) as results come. Each file is read front to back, so the pages read go
    back in long runs (``formats.base.page_release``); callers put results back in their
    own order (reports keep natural order)."""

    def position(i: int) -> tuple[str, int]:
        r = ref(items[i])
        return (r.source or "", -1 if r.offset is None else r.offset)

    order = sorted(range(len(items)), key=position)
    return zip(order, each(lambda i: fn(items[i]), order), strict=True)


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

    # -- the original API's field names ---------------------------------------------------
    @property
    def num_elements(self) -> int:
        return self.numel

    @property
    def size_bytes(self) -> int:
        return self.nbytes

    @property
    def min_val(self) -> float | None:
        return self.min

    @property
    def max_val(self) -> float | None:
        return self.max

    @property
    def sparsity(self) -> float:
        """Fraction of zeros (the original's name for ``zero_fraction``)."""
        return self.zero_fraction


def tensor_info(ref: TensorRef) -> TensorInfo:
    """One tensor's ``TensorInfo``: its statistics in one streaming pass (pages released)."""
    from .metrics import array_stats  # numeric work lives in metrics; it knows no Checkpoint

    try:
        s = array_stats(ref.storage(), dtype=ref.dtype.name, done=ref.release_range)
    finally:
        ref.release()
    return TensorInfo(
        name=ref.name,
        shape=ref.shape,
        dtype=ref.dtype.name,
        numel=ref.numel,
        nbytes=ref.nbytes,
        mean=s.mean,
        std=s.std,
        min=s.min,
        max=s.max,
        l2_norm=s.norm,
        zero_fraction=s.zero_fraction if s.zero_fraction is not None else 0.0,
        nan_count=s.nan_count,
        inf_count=s.inf_count,
    )


def checkpoint_stats(ckpt: Checkpoint, workers: int | None = None) -> dict[str, TensorInfo]:
    """TensorInfo for every tensor of a checkpoint, tensors spread over a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    from .metrics import default_workers

    refs = list(ckpt.tensors.values())
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        infos = list(pool.map(tensor_info, refs))
    return {i.name: i for i in infos}


@dataclass(frozen=True)
class Subtree:
    """One part of a checkpoint file's structure: a model, an optimizer's state, ...

    ``path`` is the dotted path in the file ("" for the whole file); ``kind`` one of
    ``model``, ``ema`` (a model's EMA/shadow copy), ``optimizer``, ``scheduler``,
    ``scalars`` (only 0-d tensors), ``tensor`` (a loose tensor beside the model);
    ``compared`` says whether its tensors are among the checkpoint's tensors.
    """

    path: str
    kind: str
    tensors: int
    nbytes: int
    compared: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``optimizer_state: 32 tensors (Adam state), not compared``."""
        n = f"{self.tensors} tensor{'s' if self.tensors != 1 else ''}"
        state = "compared" if self.compared else "not compared"
        return f"{self.path or '(file)'}: {n} ({self.detail}), {state}"


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


@dataclass(frozen=True)
class NameRule:
    """One consistent rewrite of tensor names that paired ``count`` tensors across the two
    checkpoints (``model_diff.alignment`` finds them): a separator replaced everywhere in
    the name (``find`` -> ``replace``), then a prefix dropped (``drop``) and/or put in front
    (``add``). ``side`` ("old" or "new") is the side whose names were rewritten."""

    side: str
    count: int
    drop: str = ""
    add: str = ""
    find: str = ""
    replace: str = ""

    def apply(self, name: str) -> str | None:
        """``name`` rewritten, or None when the rule does not apply (prefix absent)."""
        if self.find:
            name = name.replace(self.find, self.replace)
        if self.drop:
            if not name.startswith(self.drop):
                return None
            name = name[len(self.drop) :]
        return self.add + name

    def describe(self) -> str:
        """``' ' -> '_' in old names (103 tensors)``."""
        parts = []
        if self.find:
            parts.append(f"{self.find!r} -> {self.replace!r}")
        if self.drop:
            parts.append(f"prefix {self.drop!r} dropped")
        if self.add:
            parts.append(f"prefix {self.add!r} added")
        n = f"{self.count} tensor{'s' if self.count != 1 else ''}"
        return f"{' and '.join(parts)} in {self.side} names ({n})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.describe()}


@dataclass(frozen=True)
class NameMapping:
    """How one side's tensor names were mapped onto the other side's, stated once in every
    report: a converted format's names (a GGUF or ONNX file compared with the checkpoint it
    came from: ``scheme``, ``mapped`` of ``total``, layouts undone) and/or the ``rules`` found
    between two checkpoints' names (``model.`` prefix, spaces vs underscores, ``module.``)."""

    #: e.g. "GGUF llama", "ONNX export"; "" when only ``rules`` mapped names
    scheme: str
    mapped: int
    total: int
    #: names of the mapped side that have no counterpart (compared as added/removed)
    unmapped: tuple[str, ...] = ()
    #: converter transforms undone, by kind ("RoPE permutation", "transpose") -> tensor names
    transforms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: "old" or "new": the side whose names were mapped (set by the diff); "" for rules only
    side: str = ""
    #: name rules applied after any format mapping, in the order they were found
    rules: tuple[NameRule, ...] = ()

    def describe(self) -> str:
        """One line for reports: "names mapped from GGUF llama, 291 of 291", or
        "names mapped: ' ' -> '_' in old names (103 tensors)"."""
        parts = []
        if self.scheme:
            text = f"names mapped from {self.scheme}, {self.mapped} of {self.total}"
            undone = [f"{kind} undone on {len(names)}" for kind, names in self.transforms.items()]
            if undone:
                text += " (" + ", ".join(undone) + ")"
            if self.unmapped:
                text += f"; unmapped: {', '.join(self.unmapped[:8])}"
                if len(self.unmapped) > 8:
                    text += f" and {len(self.unmapped) - 8} more"
            parts.append(text)
        if self.rules:
            rules = "; ".join(r.describe() for r in self.rules)
            parts.append(("then " if self.scheme else "names mapped: ") + rules)
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "side": self.side,
            "scheme": self.scheme,
            "mapped": self.mapped,
            "total": self.total,
            "unmapped": list(self.unmapped),
            "transforms": {k: list(v) for k, v in sorted(self.transforms.items())},
            "description": self.describe(),
        }
        if self.rules:  # only when present: reports without rules keep their shape
            out["rules"] = [r.to_dict() for r in self.rules]
        return out


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
        structure: list[Subtree] | None = None,
        pool: Mapping[str, TensorRef] | None = None,
        unchecked: Mapping[str, str] | None = None,
        unchecked_paths: Mapping[str, str] | None = None,
        location: str | None = None,
        nesting: Any = None,
    ) -> None:
        self.path = path
        self.format = format
        self.tensors: dict[str, TensorRef] = {n: tensors[n] for n in natural_sorted(tensors)}
        self.metadata: dict[str, str] = dict(metadata or {})
        self.config: dict[str, Any] | None = dict(config) if config is not None else None
        #: entries of the file that are not compared: non-tensor values (step counters,
        #: strings, configs) and the subtrees set aside (optimizer state, ...), by path
        self.skipped: list[str] = natural_sorted(skipped or [])
        #: the file's parts as the reader found them (models, optimizer state, ...); empty
        #: for formats whose files hold one flat set of tensors
        self.structure: list[Subtree] = list(structure or [])
        #: every readable tensor of the file by its path in the file, compared or not
        #: (``narrowed`` picks from it); the compared tensors when the reader gives none
        self.pool: dict[str, TensorRef] = dict(pool) if pool is not None else dict(self.tensors)
        #: tensors of the compared part that model-diff cannot read: name -> why
        self.unchecked: dict[str, str] = _sorted_map(unchecked or {})
        #: the same for every part of the file, by path in the file (``narrowed`` picks)
        self.unchecked_paths: dict[str, str] = (
            _sorted_map(unchecked_paths) if unchecked_paths is not None else dict(self.unchecked)
        )
        #: the file or folder the reader read (the object, for a resolved Git LFS pointer);
        #: None for a checkpoint built in memory. Writers read the container's layout there.
        self.location: str | None = location
        #: how the tensors nest in a PyTorch pickle (``formats.torch_nesting.Nesting``), for
        #: writing the file back; None for other formats
        self.nesting: Any = nesting
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

    def get_tensor(self, name: str) -> np.ndarray | None:
        """The tensor's data in its shape (the original API), or None if there is no such
        tensor. Loads the whole tensor: prefer ``tensors[name].array()`` for big ones."""
        ref = self.tensors.get(name)
        return None if ref is None else dense(ref.array()).reshape(ref.shape)

    def get_info(self, name: str) -> TensorInfo | None:
        """The tensor's ``TensorInfo`` (the original API), or None."""
        return self.tensor_info.get(name) if name in self.tensors else None

    def get_layers_by_pattern(self, pattern: str) -> list[str]:
        """Tensor names matching the regular expression ``pattern`` (the original API)."""
        regex = re.compile(pattern)
        return [n for n in self.tensors if regex.search(n)]

    # -- structure -------------------------------------------------------------------------
    @property
    def choice(self) -> str | None:
        """Which parts of the file are compared and which are set aside, in one line; None
        when there was nothing to choose (one set of weights, nothing set aside)."""
        parts = [s for s in self.structure if s.compared]
        aside = [s for s in self.structure if not s.compared]
        if len(parts) <= 1 and not aside:
            return None

        def show(s: Subtree) -> str:
            n = f"{s.tensors} tensor{'s' if s.tensors != 1 else ''}"
            return f"{s.path or '(file)'} ({n}, {s.detail})"

        text = "compared: " + (", ".join(show(s) for s in parts) or "nothing")
        if aside:
            text += "; not compared: " + ", ".join(show(s) for s in aside)
        return text

    def narrowed(self, *, select: str | None = None, include_optimizer: bool = False) -> Checkpoint:
        """A view comparing another part of the file.

        ``select``: only the tensors under this dotted path of the file (a model among
        several, an EMA copy, even an optimizer), named relative to it. ``include_optimizer``:
        the optimizer state's tensors too, named by path and parameter order. Data shared.
        """
        if select is None and not include_optimizer:
            return self
        if select is not None:
            select = select.strip(".")
            picked = {n: r for n, r in self.pool.items() if _under(n, select)}
            if not picked:
                known = [s.path for s in self.structure if s.path] or natural_sorted(
                    {n.split(".", 1)[0] for n in self.pool}
                )
                raise CheckpointError(
                    f"holds no tensors under {select!r}",
                    path=self.path,
                    hint="choose one of: " + ", ".join(known[:20]) if known else None,
                )
            cut = len(select) + 1

            def rel(n: str) -> str:
                return n[cut:] if n != select else n.rsplit(".", 1)[-1]

            tensors = {rel(n): r for n, r in picked.items()}
            structure = [
                Subtree(
                    s.path,
                    s.kind,
                    s.tensors,
                    s.nbytes,
                    _under(s.path, select) or _under(select, s.path),
                    s.detail,
                )
                for s in self.structure
            ]
            unchecked = {
                rel(n): why for n, why in self.unchecked_paths.items() if _under(n, select)
            }
        else:
            tensors = dict(self.tensors)
            structure = list(self.structure)
            unchecked = dict(self.unchecked)
        if include_optimizer:
            for s in self.structure:
                if s.kind != "optimizer":
                    continue
                for n, r in self.pool.items():
                    if _under(n, s.path) and (select is None or _under(n, select)):
                        tensors.setdefault(n if select is None else n[len(select) + 1 :], r)
            structure = [
                Subtree(s.path, s.kind, s.tensors, s.nbytes, True, s.detail)
                if s.kind == "optimizer"
                and (select is None or _under(s.path, select) or _under(select, s.path))
                else s
                for s in structure
            ]
        renamed = {name: ref.with_name(name) for name, ref in tensors.items()}
        return self._derive(tensors=renamed, structure=structure, unchecked=unchecked)

    def relabeled(
        self,
        path: str,
        *,
        format: str | None = None,
        config: Mapping[str, Any] | None = None,
        closers: list[Callable[[], None]] | None = None,
    ) -> Checkpoint:
        """The same checkpoint under another path (and format/config), with ``closers``
        replacing its own (pass ``[inner.close, ...]`` to close it with the new one)."""
        view = self._derive(
            path=path,
            format=format or self.format,
            config=config if config is not None else self.config,
        )
        view._closers = list(closers or [])
        return view

    def _derive(self, **changes: Any) -> Checkpoint:
        fields: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "tensors": self.tensors,
            "metadata": self.metadata,
            "config": self.config,
            "skipped": self.skipped,
            "structure": self.structure,
            "pool": self.pool,
            "unchecked": self.unchecked,
            "unchecked_paths": self.unchecked_paths,
            "location": self.location,
            "nesting": self.nesting,
        }
        fields.update(changes)
        path, fmt, tensors = fields.pop("path"), fields.pop("format"), fields.pop("tensors")
        view = Checkpoint(path, fmt, tensors, **fields)
        view._closers = self._closers  # closing the view closes the files it shares
        return view

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
        return self._derive(tensors=new)

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


def _sorted_map(m: Mapping[str, str]) -> dict[str, str]:
    return {n: m[n] for n in natural_sorted(m)}


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
