"""Reading PyTorch files (``formats.torch``'s work): safely, lazily and without torch.

Two containers, both written by ``torch.save``:

- **zip** (torch >= 1.6, and TorchScript archives): ``<archive>/data.pkl`` is the object
  tree, each storage is one stored member ``<archive>/data/<key>``, and
  ``<archive>/byteorder`` says how its numbers are laid out (absent: little-endian);
- **legacy**: pickles back to back (magic number, protocol, system info, the object tree,
  the storage keys) followed by each storage as an 8-byte little-endian element count and
  its little-endian bytes.

The object tree is read by ``torch_pickle`` (a restricted unpickler: torch's tensor rebuild
functions become records over storages, every other class an inert placeholder that runs
nothing). ``structure.classify`` then tells the weights from optimizer state, schedulers,
EMA copies and loose tensors. Tensor data stays in one read-only ``mmap`` of the file: a
contiguous native-order tensor is a zero-copy view; a strided view reads only the part of
its storage it spans (one copy of the tensor); a non-native byte order is swapped into a
copy, never in the mapping, so releasing pages (whole pages inside the tensor's span) can
never lose data.

``unsafe_pickle=True`` (``--unsafe-pickle``) loads the file with ``torch.load`` instead
(torch needed; runs the file's code): for pickles whose tensors only that code can build.
torch is imported only then, never by the safe path or a git driver.
This module must not import torch at import time.
"""

from __future__ import annotations

import math
import mmap
import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, TensorRef
from ..dtypes import BY_NAME, DType, from_torch_name
from ..errors import CheckpointError, MissingDependencyError
from . import structure
from .base import ZIP_MAGIC, close_mmap, page_release, zip_data_offset
from .torch_nesting import Nesting, nesting_of
from .torch_pickle import (
    ArrayTensor,
    PickledObject,
    PickledTensor,
    Storage,
    StorageKind,
    UnreadableTensor,
    load_pickle,
)

#: ``torch.save``'s legacy format opens with these two pickled integers.
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: A strided view is materialised only up to this many bytes beyond its storage's size
#: (a broadcast view of a huge shape over a tiny storage would allocate without bound).
MAX_VIEW_GROWTH = 1 << 30

_CORRUPT_HINT = "the file is corrupt or truncated; re-save or re-fetch it"


# -- the object tree as the structure classifier sees it ----------------------------------


class _PickledTree:
    """``structure.Tree`` over what ``torch_pickle`` produced."""

    def is_leaf(self, node: Any) -> bool:
        return isinstance(node, (PickledTensor, UnreadableTensor, ArrayTensor))

    def ndim(self, leaf: Any) -> int:
        return int(leaf.ndim)

    def shape(self, leaf: Any) -> tuple[int, ...] | None:
        return leaf.shape

    def nbytes(self, leaf: Any) -> int:
        if isinstance(leaf, PickledTensor):
            return math.prod(leaf.shape) * leaf.itemsize
        if isinstance(leaf, ArrayTensor):
            return int(leaf.array.nbytes)
        return 0

    def is_module(self, node: Any) -> bool:
        return isinstance(node, PickledObject) and node.is_module()

    def children(self, node: Any) -> list[tuple[str, Any]] | None:
        if isinstance(node, Mapping):
            return [(str(k), v) for k, v in node.items()]
        if isinstance(node, (list, tuple)):
            return [(str(i), v) for i, v in enumerate(node)]
        if isinstance(node, PickledObject):
            return node.children()
        return None


# -- containers ------------------------------------------------------------------------------


class _Read:
    """What a container reader found: the object tree (its storages located in the file),
    the byte order, and the classes recorded instead of run."""

    def __init__(self, root: Any, byteorder: str, not_run: set[str]) -> None:
        self.root = root
        self.byteorder = byteorder
        self.not_run = not_run


def _storage_from_pid(pid: Any, label: str) -> tuple[StorageKind, str, str, int]:
    if not isinstance(pid, tuple) or len(pid) < 5:
        raise CheckpointError(
            f"holds a persistent reference {pid!r} that is not a torch storage",
            path=label,
            hint=_CORRUPT_HINT,
        )
    typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    kind, key, location, numel = pid[1], pid[2], pid[3], pid[4]
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if isinstance(location, bytes):
        location = location.decode("ascii", "replace")
    if (
        typename != "storage"
        or not isinstance(kind, StorageKind)
        or not isinstance(key, str)
        or not isinstance(numel, int)
        or numel < 0
    ):
        what = getattr(kind, "class_name", None) or type(kind).__name__
        raise CheckpointError(
            f"holds a storage reference model-diff does not know ({typename!r}, {what})",
            path=label,
            hint="re-save it with torch.save from a recent torch",
        )
    return kind, key, str(location), numel


def _read_zip(path: str, mm: mmap.mmap, label: str) -> _Read:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"is not a readable PyTorch checkpoint (a broken zip archive: {e})",
            path=label,
            hint=_CORRUPT_HINT,
        ) from None
    with zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl") and n.count("/") <= 1), None)
        if pkl is None:
            raise CheckpointError(
                "is a zip archive without data.pkl: not a torch.save checkpoint",
                path=label,
                hint="pass a file written by torch.save, or give it its real extension",
            )
        prefix = pkl[: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            raw = zf.read(f"{prefix}byteorder").strip()
            if raw not in (b"little", b"big"):
                raise CheckpointError(
                    f"says its byte order is {raw[:20]!r}, neither little nor big",
                    path=label,
                    hint=_CORRUPT_HINT,
                )
            byteorder = raw.decode()
        storages: dict[str, Storage] = {}

        def persistent_load(pid: Any) -> Storage:
            kind, key, location, numel = _storage_from_pid(pid, label)
            if key not in storages:
                storages[key] = Storage(key, kind, numel, location)
            return storages[key]

        try:
            with zf.open(pkl) as f:
                root, not_run = load_pickle(f, persistent_load)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(
                f"has a data.pkl that is not a readable pickle ({_first_line(e)})",
                path=label,
                hint=_CORRUPT_HINT,
            ) from None
        by_name = {i.filename: i for i in zf.infolist()}
        for key, st in storages.items():
            info = by_name.get(f"{prefix}data/{key}")
            if info is None:
                st.offset = None
                continue
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(
                    f"stores tensor data data/{key} compressed; torch.save never does, and "
                    "model-diff maps storages in place",
                    path=label,
                    hint="re-save it with torch.save (or unzip and re-zip with -0)",
                )
            start = zip_data_offset(mm, info.header_offset)
            if start is None:
                raise CheckpointError(
                    f"has a corrupt zip header for data/{key}", path=label, hint=_CORRUPT_HINT
                )
            if start + info.file_size > len(mm):
                raise CheckpointError(
                    f"ends inside tensor data data/{key} (truncated?)",
                    path=label,
                    hint=_CORRUPT_HINT,
                )
            if st.nbytes > info.file_size:
                raise CheckpointError(
                    f"storage data/{key} holds {info.file_size} bytes but its tensors need "
                    f"{st.nbytes}",
                    path=label,
                    hint=_CORRUPT_HINT,
                )
            st.offset = start
    return _Read(root, byteorder, not_run)


def _read_legacy(path: str, mm: mmap.mmap, label: str) -> _Read:
    if mm[257:262] == b"ustar":
        raise CheckpointError(
            "is a torch.save file in the tar format of torch < 0.4, which model-diff does not read",
            path=label,
            hint="load and re-save it with a recent torch (or save it as safetensors)",
        )
    storages: dict[str, Storage] = {}
    views: list[Storage] = []

    def no_persistent(pid: Any) -> Any:
        raise pickle.UnpicklingError("unexpected persistent id in a header pickle")

    def persistent_load(pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] in ("module", b"module"):
            return pid[1] if len(pid) > 1 else None
        kind, key, location, numel = _storage_from_pid(pid, label)
        if key not in storages:
            storages[key] = Storage(key, kind, numel, location)
        root = storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3):
                raise CheckpointError(
                    "has a malformed storage view", path=label, hint=_CORRUPT_HINT
                )
            _, offset, size = view
            if not (
                isinstance(offset, int) and isinstance(size, int) and offset >= 0 and size >= 0
            ):
                raise CheckpointError(
                    "has a malformed storage view", path=label, hint=_CORRUPT_HINT
                )
            st = Storage(
                str(view[0]), kind, size, location, base=root, byte_offset=offset * kind.itemsize
            )
            views.append(st)
            return st
        return root

    try:
        with open(path, "rb") as f:
            magic, _ = load_pickle(f, no_persistent)
            if magic != MAGIC_NUMBER:
                raise CheckpointError(
                    "is a pickle but not a torch.save checkpoint (no PyTorch magic number)",
                    path=label,
                    hint="model-diff reads torch.save files; save the weights with torch.save "
                    "or safetensors",
                )
            protocol, _ = load_pickle(f, no_persistent)
            if protocol != PROTOCOL_VERSION:
                raise CheckpointError(
                    f"is a torch.save file of protocol {protocol!r}, not {PROTOCOL_VERSION}",
                    path=label,
                    hint="load and re-save it with a recent torch",
                )
            load_pickle(f, no_persistent)  # system info: data is little-endian whatever it says
            root, not_run = load_pickle(f, persistent_load)
            keys, _ = load_pickle(f, no_persistent)
            pos = f.tell()
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"is not a readable PyTorch checkpoint ({_first_line(e)})",
            path=label,
            hint=_CORRUPT_HINT,
        ) from None
    if not isinstance(keys, list):
        raise CheckpointError("has no storage key list", path=label, hint=_CORRUPT_HINT)
    for key in keys:
        st = storages.get(str(key))
        if st is None:
            raise CheckpointError(
                f"lists storage {key!r} that no tensor uses", path=label, hint=_CORRUPT_HINT
            )
        if pos + 8 > len(mm):
            raise CheckpointError(
                f"ends before storage {key} (truncated?)", path=label, hint=_CORRUPT_HINT
            )
        numel = int.from_bytes(mm[pos : pos + 8], "little")
        st.offset = pos + 8
        pos = st.offset + numel * st.kind.itemsize
        if numel < st.numel or pos > len(mm):
            raise CheckpointError(
                f"ends inside storage {key} (truncated?)", path=label, hint=_CORRUPT_HINT
            )
    for v in views:
        if v.base is not None and v.base.offset is not None:
            if v.byte_offset + v.nbytes > v.base.nbytes:
                raise CheckpointError(
                    f"has a storage view {v.key} past its storage", path=label, hint=_CORRUPT_HINT
                )
            v.offset = v.base.offset + v.byte_offset
    return _Read(root, "little", not_run)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


# -- tensor data -------------------------------------------------------------------------------


def _carrier(itemsize: int) -> np.dtype:
    return np.dtype(f"u{itemsize}")


def _is_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for size, st in zip(reversed(shape), reversed(stride), strict=True):
        if size != 1 and st != expected:
            return False
        expected *= size
    return True


class _TensorData:
    """Where one tensor's elements lie in the mapping and how to hand them out."""

    def __init__(self, t: PickledTensor, dtype: DType, mm: mmap.mmap, swap: bool) -> None:
        self.mm = mm
        self.dtype = dtype
        self.shape = t.shape
        self.stride = t.stride
        self.numel = math.prod(t.shape)
        size = dtype.itemsize
        assert t.storage.offset is not None  # checked by the caller
        self.start = t.storage.offset + t.storage_offset * size
        last = t.storage_offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True))
        self.count = (last - t.storage_offset + 1) if self.numel else 0  # elements spanned
        self.end = self.start + self.count * size
        self.contiguous = _is_contiguous(t.shape, t.stride)
        self.swap = swap and size > 1
        self.aligned = self.start % size == 0

    @property
    def in_place(self) -> bool:
        """True when ``load`` hands out a view of the mapping (elements in file order)."""
        return self.contiguous and not self.swap and self.aligned

    def load(self) -> np.ndarray:
        size = self.dtype.itemsize
        if self.numel == 0:
            return np.empty(0, self.dtype.storage)
        raw = np.frombuffer(self.mm, _carrier(size), count=self.count, offset=self.start)
        if self.in_place:
            return raw.view(self.dtype.storage)
        if self.contiguous:
            arr = raw.byteswap() if self.swap else raw.copy()
        else:
            view = np.lib.stride_tricks.as_strided(
                raw, self.shape, [s * size for s in self.stride], writeable=False
            )
            arr = np.ascontiguousarray(view).reshape(-1)
            if self.swap:
                arr.byteswap(inplace=True)  # our own copy, never the mapping
        arr.flags.writeable = False
        return arr.view(self.dtype.storage)

    def release(self) -> None:
        page_release(self.mm, self.start, self.end)

    def release_range(self, lo: int, hi: int) -> None:
        page_release(self.mm, self.start + lo, self.start + hi)


def _leaf_ref(name: str, leaf: Any, mm: mmap.mmap, swap: bool, label: str) -> TensorRef | str:
    """A TensorRef for one leaf of the tree, or why it cannot be read."""
    if isinstance(leaf, UnreadableTensor):
        return leaf.reason
    if isinstance(leaf, ArrayTensor):
        dtype = BY_NAME.get(leaf.dtype)
        arr = leaf.array
        if dtype is None or arr.dtype.itemsize != dtype.itemsize or arr.dtype.hasobject:
            return f"dtype {leaf.dtype} is not read by model-diff"
        flat = np.ascontiguousarray(arr).reshape(-1).view(dtype.storage)
        flat.flags.writeable = False

        def in_memory(f: np.ndarray = flat) -> np.ndarray:
            return f

        return TensorRef(name, dtype, leaf.shape, in_memory, source=label)
    assert isinstance(leaf, PickledTensor)
    if leaf.unreadable is not None:
        return leaf.unreadable
    dtype = BY_NAME.get(leaf.dtype)
    if dtype is None:
        return f"dtype {leaf.dtype} is not read by model-diff"
    if leaf.storage.offset is None:
        return f"its storage data/{leaf.storage.key} is missing from the archive"
    data = _TensorData(leaf, dtype, mm, swap)
    span = data.count * dtype.itemsize
    if data.numel and (leaf.storage_offset + data.count) * dtype.itemsize > leaf.storage.nbytes:
        raise CheckpointError(
            f"tensor {name!r} reaches past the end of its storage data/{leaf.storage.key}",
            path=label,
            hint=_CORRUPT_HINT,
        )
    if data.numel * dtype.itemsize > max(span, 0) + MAX_VIEW_GROWTH:
        return (
            f"a broadcast view of {data.numel:,} elements over {data.count:,} stored ones "
            "(not materialised)"
        )
    return TensorRef(
        name,
        dtype,
        leaf.shape,
        data.load,
        release=data.release,
        release_range=data.release_range if data.in_place else None,
        source=label,
        # torch saves a tensor reachable under two names (tied weights) once: both names
        # are views of the same bytes of the file
        storage_key=(label, data.start, leaf.shape, leaf.stride, dtype.name),
        offset=data.start,
    )


def _refs(
    names: Mapping[str, Any], mm: mmap.mmap, swap: bool, label: str
) -> tuple[dict[str, TensorRef], dict[str, str]]:
    refs: dict[str, TensorRef] = {}
    unreadable: dict[str, str] = {}
    for name, leaf in names.items():
        got = _leaf_ref(name, leaf, mm, swap, label)
        if isinstance(got, str):
            unreadable[name] = got
        else:
            refs[name] = got
    return refs, unreadable


def _checkpoint(
    layout: structure.Layout,
    make: Callable[[Mapping[str, Any]], tuple[dict[str, TensorRef], dict[str, str]]],
    label: str,
    closers: list[Callable[[], None]],
    not_run: set[str],
    fmt: str,
    nesting: Nesting | None = None,
) -> Checkpoint:
    pool, unchecked_paths = make(layout.pool)
    refs: dict[str, TensorRef] = {}
    unchecked: dict[str, str] = {}
    for name, (full, _) in layout.weights.items():
        path = structure.dotted(full)
        if path in pool:
            refs[name] = pool[path].with_name(name)
        else:
            unchecked[name] = unchecked_paths[path]
    missing = {n: why for n, why in unchecked.items() if "missing from the archive" in why}
    if missing:
        shown = "; ".join(f"{n}: {why}" for n, why in list(missing.items())[:10])
        raise CheckpointError(
            f"lacks the data of {len(missing)} tensor(s) ({shown})",
            path=label,
            hint="the archive is incomplete (an interrupted copy or download); re-fetch it",
        )
    if not refs and not unchecked:
        raise _no_tensors(layout, label, not_run)
    return Checkpoint(
        label,
        fmt,
        refs,
        metadata=layout.metadata,
        skipped=layout.skipped,
        closers=closers,
        structure=layout.subtrees,
        pool=pool,
        unchecked=unchecked,
        unchecked_paths=unchecked_paths,
        nesting=nesting,
    )


def _no_tensors(layout: structure.Layout, label: str, not_run: set[str]) -> CheckpointError:
    found = ", ".join(layout.skipped[:5]) + (", ..." if len(layout.skipped) > 5 else "")
    aside = [s.describe() for s in layout.subtrees if not s.compared]
    what = f"holds no tensors model-diff can read as weights (found: {found or 'nothing'})"
    if aside:
        what += "; set aside: " + "; ".join(aside)
    hint = "save model.state_dict() or the weights"
    if not_run:
        classes = ", ".join(sorted(not_run)[:5]) + (", ..." if len(not_run) > 5 else "")
        what += f"; classes recorded, not run: {classes}"
        hint = (
            "if its tensors are built by those classes' code and you trust the file, pass "
            "--unsafe-pickle (needs torch and those packages); better, save a state dict"
        )
    if aside:
        hint = "pass --select PATH (or --include-optimizer) to compare a part set aside"
    return CheckpointError(what, path=label, hint=hint)


def read_path(path: str, *, label: str, unsafe_pickle: bool, fmt: str) -> Checkpoint:
    """Read a PyTorch checkpoint (zip, TorchScript or legacy) and find its weights; the
    checkpoint's format is ``fmt`` (``formats.torch.NAME``)."""
    if unsafe_pickle:
        return _open_unsafe(path, label, fmt)
    with open(path, "rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise CheckpointError("is empty (0 bytes)", path=label, hint=_CORRUPT_HINT) from None
    try:
        read = _read_zip(path, mm, label) if mm[:4] == ZIP_MAGIC else _read_legacy(path, mm, label)
        if isinstance(read.root, (PickledTensor, UnreadableTensor, ArrayTensor)):
            raise CheckpointError(
                "holds a single tensor, not a dict of tensors",
                path=label,
                hint="save a dict ({'name': tensor}) or model.state_dict()",
            )
        layout = structure.classify(read.root, _PickledTree(), label=label)
        swap = read.byteorder != sys.byteorder

        def make(leaves: Mapping[str, Any]) -> tuple[dict[str, TensorRef], dict[str, str]]:
            return _refs(leaves, mm, swap, label)

        nesting = nesting_of(read.root, layout.weights, layout.root)
        return _checkpoint(
            layout, make, label, [lambda: close_mmap(mm)], read.not_run, fmt, nesting
        )
    except BaseException:
        close_mmap(mm)
        raise


# -- --unsafe-pickle: torch.load runs the file's code ------------------------------------------


def _import_torch(label: str) -> Any:
    try:
        import torch  # optional and slow to import: only for --unsafe-pickle
    except ImportError:
        raise MissingDependencyError(
            "needs torch for --unsafe-pickle, and torch is not installed",
            path=label,
            hint="drop --unsafe-pickle (model-diff reads PyTorch files without torch), or "
            "pip install 'model-diff[torch]'",
        ) from None
    return torch


class _TorchTree:
    """``structure.Tree`` over the objects ``torch.load`` returned."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def is_leaf(self, node: Any) -> bool:
        return isinstance(node, self.torch.Tensor)

    def ndim(self, leaf: Any) -> int:
        return int(leaf.dim())

    def shape(self, leaf: Any) -> tuple[int, ...] | None:
        return tuple(int(s) for s in leaf.shape)

    def nbytes(self, leaf: Any) -> int:
        return int(leaf.numel() * leaf.element_size())

    def is_module(self, node: Any) -> bool:
        return isinstance(node, self.torch.nn.Module)

    def children(self, node: Any) -> list[tuple[str, Any]] | None:
        if isinstance(node, self.torch.nn.Module):
            return [(str(k), v) for k, v in node.state_dict().items()]
        if isinstance(node, Mapping):
            return [(str(k), v) for k, v in node.items()]
        if isinstance(node, (list, tuple)):
            return [(str(i), v) for i, v in enumerate(node)]
        if hasattr(node, "__dict__") and not isinstance(node, type):
            return [(str(k), v) for k, v in vars(node).items() if not callable(v)]
        return None


def _torch_ref(torch: Any, name: str, t: Any, label: str) -> TensorRef | str:
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        return f"a {t.layout} / {t.device.type} tensor"
    try:
        dtype = from_torch_name(str(t.dtype))
    except KeyError:
        return f"dtype {str(t.dtype).removeprefix('torch.')} is not read by model-diff"
    carrier = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]

    def load() -> np.ndarray:
        flat = t.detach().contiguous().reshape(-1)
        arr = flat.view(carrier).numpy().view(dtype.storage)
        arr.flags.writeable = False
        return np.asarray(arr)

    # No page release: torch's mapping may be private and byte-swapped in place.
    key = (
        label,
        t.untyped_storage().data_ptr(),
        t.storage_offset(),
        tuple(t.shape),
        tuple(t.stride()),
        dtype.name,
    )
    return TensorRef(name, dtype, tuple(t.shape), load, source=label, storage_key=key)


def _open_unsafe(path: str, label: str, fmt: str) -> Checkpoint:
    torch = _import_torch(label)
    with open(path, "rb") as f:
        is_zip = f.read(4) == ZIP_MAGIC
    try:
        # torch's advisory warnings (pickle protocol, future defaults) are not the user's
        # business here; -W error must not turn them into failures.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
    except ModuleNotFoundError as e:
        raise CheckpointError(
            f"needs the module {e.name!r} to run its pickle, which is not installed",
            path=label,
            hint="drop --unsafe-pickle: model-diff reads the tensors without running "
            "the file's classes",
        ) from None
    except Exception as e:  # torch raises RuntimeError/EOFError/ValueError/... for bad bytes
        raise CheckpointError(
            f"is not a readable PyTorch checkpoint ({_first_line(e)})",
            path=label,
            hint=_CORRUPT_HINT,
        ) from None
    if isinstance(obj, torch.Tensor):
        raise CheckpointError(
            "holds a single tensor, not a dict of tensors",
            path=label,
            hint="save a dict ({'name': tensor}) or model.state_dict()",
        )
    layout = structure.classify(obj, _TorchTree(torch), label=label)
    kept: list[Any] = [obj]

    def make(leaves: Mapping[str, Any]) -> tuple[dict[str, TensorRef], dict[str, str]]:
        refs: dict[str, TensorRef] = {}
        unreadable: dict[str, str] = {}
        for name, t in leaves.items():
            got = _torch_ref(torch, name, t, label)
            if isinstance(got, str):
                unreadable[name] = got
            else:
                refs[name] = got
        return refs, unreadable

    return _checkpoint(layout, make, label, [kept.clear], set(), fmt)
