"""The PyTorch writer: a ``torch.save``-compatible zip archive, written without torch.

``layout(path)`` walks the pickle of a ``.pt``/``.bin`` file (zip or legacy format) with a
restricted unpickler that builds nothing but dicts, ``OrderedDict``s, plain data and
placeholders for tensors, so no code from the file runs. It accepts exactly a (possibly
nested) dict whose leaves are tensors (``torch._utils._rebuild_tensor_v2``/``_v3`` over a
storage), keyed by str or int; an ``OrderedDict``'s attribute state (``state_dict()``'s
``_metadata``: version numbers per module) is kept when it is plain data. Anything else (an
optimizer's lists, an int epoch, a class, a Parameter, a TorchScript archive) makes the file
unwritable (``UnwritableCheckpointError``), because writing it back would lose it.

``write`` produces the archive torch 2.x writes: ``archive/data.pkl`` (pickle protocol 2; each
tensor a ``_rebuild_tensor_v2`` over ``torch.<Type>Storage``, or ``_rebuild_tensor_v3`` over
an ``UntypedStorage`` plus the dtype for the dtypes without a typed storage: float8, uint16-64),
``archive/.format_version``, ``archive/.storage_alignment``, ``archive/byteorder``
(``little``), one stored member ``archive/data/<key>`` per tensor (data 64-byte aligned) and
``archive/version``. ``torch.load(..., weights_only=True)`` reads it back. Every tensor gets
its own contiguous storage (tensors that shared a storage in the original are written as
separate storages with the same values).
This module must not import torch.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..dtypes import BY_NAME
from .base import ZIP_DATE, OutTensor, aligned_member

NAME = "pytorch"
ARCHIVE = "archive"
#: torch's typed storage class per dtype name; the others go through UntypedStorage (v3).
STORAGE_TYPES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Refused(Exception):
    """The pickle holds something other than a dict of tensors (the message says what)."""


@dataclass
class Leaf:
    """A tensor's place in the structure."""

    requires_grad: bool = False


@dataclass
class Node:
    """A dict (or OrderedDict) of the structure, its items in the file's order."""

    ordered: bool
    items: list[tuple[str | int, Node | Leaf]] = field(default_factory=list)
    state: dict[str, Any] | None = None  # an OrderedDict's attributes (state_dict's _metadata)


@dataclass(frozen=True)
class Layout:
    root: Node
    prefix: tuple[str | int, ...] = ()  # keys of single-item dicts wrapping the tensors

    def tensor_names(self) -> set[str]:
        """The reader's names of the tensors (dotted key paths below the prefix)."""
        return {".".join(str(k) for k in p) for p in _leaf_paths(_descend(self.root, self.prefix))}


def _descend(node: Node, keys: tuple[str | int, ...]) -> Node:
    for k in keys:
        child = dict(node.items)[k]
        if not isinstance(child, Node):
            raise TypeError(f"bug: {k!r} is a tensor, not a dict")
        node = child
    return node


def _leaf_paths(node: Node, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    for k, v in node.items:
        if isinstance(v, Leaf):
            yield (*path, k)
        else:
            yield from _leaf_paths(v, (*path, k))


# -- reading the structure (nothing from the file runs) ------------------------------------


class _Storage:
    def __init__(self, pid: Any) -> None:
        self.pid = pid


class _Class:
    def __init__(self, name: str) -> None:
        self.name = name


class _Tensor:
    def __init__(self, requires_grad: bool) -> None:
        self.requires_grad = requires_grad


def _tensor(storage: Any, hooks: Any, metadata: Any, requires_grad: Any) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise Refused("a tensor rebuilt from something that is not a storage")
    if hooks:
        raise Refused("a tensor with backward hooks")
    if metadata:
        raise Refused("a tensor with extra metadata")
    return _Tensor(bool(requires_grad))


def _rebuild_v2(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    metadata: Any = None,
) -> _Tensor:
    return _tensor(storage, hooks, metadata, requires_grad)


def _rebuild_v3(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> _Tensor:
    return _tensor(storage, hooks, metadata, requires_grad)


class _OrderedDict(collections.OrderedDict):
    """An OrderedDict whose attribute state (BUILD) is recorded, not applied to the class."""


class _Walker(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_v2
        if (module, name) == ("torch._utils", "_rebuild_tensor_v3"):
            return _rebuild_v3
        if (module == "torch" and name.endswith("Storage")) or (
            (module, name) == ("torch.storage", "UntypedStorage")
        ):
            return _Class(name)
        if module == "torch" and name in BY_NAME:
            return _Class(name)
        raise Refused(f"a {module}.{name} object")

    def persistent_load(self, pid: Any) -> Any:
        return _Storage(pid)


_PLAIN = (str, int, float, bool, type(None))


def _is_plain(x: Any) -> bool:
    if isinstance(x, _PLAIN):
        return True
    if isinstance(x, (list, tuple)):
        return all(_is_plain(v) for v in x)
    if isinstance(x, dict):
        return all(isinstance(k, _PLAIN) and _is_plain(v) for k, v in x.items())
    return False


def _node(obj: Any, where: str) -> Node:
    if not isinstance(obj, dict):
        what = "a tensor" if isinstance(obj, _Tensor) else f"a {type(obj).__name__}"
        raise Refused(f"{what} at {where or 'the top level'} (not a dict of tensors)")
    ordered = isinstance(obj, _OrderedDict)
    state = dict(vars(obj)) if ordered and vars(obj) else None
    if state is not None and not _is_plain(state):
        raise Refused(f"non-plain attributes on the dict at {where or 'the top level'}")
    node = Node(ordered, state=state)
    for k, v in obj.items():
        if isinstance(k, bool) or not isinstance(k, (str, int)):
            raise Refused(f"a {type(k).__name__} key at {where or 'the top level'}")
        path = f"{where}.{k}" if where else str(k)
        if isinstance(v, _Tensor):
            node.items.append((k, Leaf(v.requires_grad)))
        else:
            node.items.append((k, _node(v, path)))
    return node


def read_structure(path: str) -> Node:
    """The structure of a torch.save file, or ``Refused`` saying what else it holds."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pkl) != 1:
                raise Refused("a zip archive that is not a torch.save file")
            if any(n.endswith(("/constants.pkl", "/code/")) or "/code/" in n for n in names):
                raise Refused("a TorchScript archive (code)")
            with zf.open(pkl[0]) as f:
                obj = _walk(f)
    else:
        with open(path, "rb") as f:
            head = [_walk(f) for _ in range(3)]  # magic number, protocol version, sys info
            if head[0] != _LEGACY_MAGIC:
                raise Refused("a pickle that is not a torch.save file")
            obj = _walk(f)
    return _node(obj, "")


def _walk(f: Any) -> Any:
    try:
        return _Walker(f).load()
    except Refused:
        raise
    except Exception as e:  # a malformed pickle; the reader reports those with more detail
        raise Refused(f"an unreadable pickle ({type(e).__name__})") from None


def layout(path: str, tensor_names: set[str]) -> Layout:
    """The structure of ``path`` with the wrapper prefix that maps its leaves onto the
    reader's ``tensor_names``; ``Refused`` when no such mapping exists."""
    root = read_structure(path)
    found = Layout(root)
    while found.tensor_names() != tensor_names:
        node = _descend(root, found.prefix)
        if len(node.items) != 1 or not isinstance(node.items[0][1], Node):
            raise Refused("tensors nested in a way the reader's names do not map back to")
        found = Layout(root, (*found.prefix, node.items[0][0]))
    return found


# -- writing -------------------------------------------------------------------------------


class _Pickle:
    """A protocol-2 pickle emitter for the few things data.pkl holds (no memo, deterministic)."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def global_(self, module: str, name: str) -> None:
        self.out += b"c" + f"{module}\n{name}\n".encode()

    def value(self, x: Any) -> None:
        if x is None:
            self.out += b"N"
        elif x is True:
            self.out += b"\x88"
        elif x is False:
            self.out += b"\x89"
        elif isinstance(x, int):
            self.int_(x)
        elif isinstance(x, float):
            self.out += b"G" + struct.pack(">d", x)
        elif isinstance(x, str):
            raw = x.encode("utf-8", "surrogatepass")
            self.out += b"X" + struct.pack("<I", len(raw)) + raw
        elif isinstance(x, tuple):
            self.tuple_(x)
        elif isinstance(x, list):
            self.out += b"]"
            if x:
                self.out += b"("
                for v in x:
                    self.value(v)
                self.out += b"e"
        elif isinstance(x, collections.OrderedDict):
            self.ordered_dict(list(x.items()), None)
        elif isinstance(x, dict):
            self.dict_(list(x.items()))
        else:  # _is_plain admitted only the types above
            raise TypeError(f"bug: cannot pickle {type(x).__name__}")

    def int_(self, i: int) -> None:
        if 0 <= i < 1 << 8:
            self.out += b"K" + bytes([i])
        elif 0 <= i < 1 << 16:
            self.out += b"M" + struct.pack("<H", i)
        elif -(1 << 31) <= i < 1 << 31:
            self.out += b"J" + struct.pack("<i", i)
        else:
            raw = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(raw)]) + raw

    def tuple_(self, items: tuple[Any, ...]) -> None:
        if not items:
            self.out += b")"
            return
        if len(items) > 3:
            self.out += b"("
        for v in items:
            self.value(v)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t")

    def _items(self, items: list[tuple[Any, Any]]) -> None:
        if items:
            self.out += b"("
            for k, v in items:
                self.value(k)
                self.value(v)
            self.out += b"u"

    def dict_(self, items: list[tuple[Any, Any]]) -> None:
        self.out += b"}"
        self._items(items)

    def ordered_dict(self, items: list[tuple[Any, Any]], state: dict[str, Any] | None) -> None:
        self.global_("collections", "OrderedDict")
        self.out += b")R"
        self._items(items)
        if state:
            self.dict_(list(state.items()))
            self.out += b"b"

    def tensor(self, key: str, t: OutTensor, requires_grad: bool) -> None:
        storage = STORAGE_TYPES.get(t.dtype.name)
        v3 = storage is None
        self.global_("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        self.out += b"("
        # persistent id: ('storage', storage type, key, location, size in elements or bytes)
        self.out += b"("
        self.value("storage")
        if v3:
            self.global_("torch.storage", "UntypedStorage")
        else:
            self.global_("torch", storage)  # type: ignore[arg-type]
        self.value(key)
        self.value("cpu")
        self.value(t.nbytes if v3 else t.numel)
        self.out += b"tQ"
        self.value(0)  # storage offset
        self.tuple_(tuple(t.shape))
        self.tuple_(_strides(t.shape))
        self.value(requires_grad)
        self.ordered_dict([], None)  # backward hooks
        if v3:
            self.global_("torch", t.dtype.name)
        self.out += b"tR"

    def done(self) -> bytes:
        return bytes(self.out + b".")


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out: list[int] = []
    step = 1
    for s in reversed(shape):
        out.append(step)
        step *= max(s, 1)
    return tuple(reversed(out))


def _insert(root: Node, prefix: tuple[str | int, ...], name: str) -> None:
    """Place a new tensor in the deepest existing dict whose dotted path prefixes ``name``."""
    node = _descend(root, prefix)
    rest = name
    while True:
        for k, v in node.items:
            if isinstance(v, Node) and rest.startswith(f"{k}."):
                node, rest = v, rest[len(f"{k}.") :]
                break
        else:
            node.items.append((rest, Leaf()))
            return


def plan(layout: Layout, tensors: Mapping[str, OutTensor]) -> Node:
    """The structure to write: the original's, without removed tensors, new ones inserted."""

    def prune(node: Node, path: tuple[str | int, ...]) -> Node:
        items: list[tuple[str | int, Node | Leaf]] = []
        for k, v in node.items:
            p = (*path, k)
            if isinstance(v, Leaf):
                name = ".".join(str(x) for x in p[len(layout.prefix) :])
                if name in tensors:
                    items.append((k, v))
            else:
                items.append((k, prune(v, p)))
        return Node(node.ordered, items, node.state)

    known = layout.tensor_names()
    root = prune(layout.root, ())
    for name in tensors:
        if name not in known:
            _insert(root, layout.prefix, name)
    return root


def write(layout: Layout, tensors: Mapping[str, OutTensor], f: BinaryIO) -> None:
    root = plan(layout, tensors)
    order: list[OutTensor] = []
    p = _Pickle()

    def emit(node: Node, path: tuple[str | int, ...]) -> None:
        if node.ordered:
            p.global_("collections", "OrderedDict")
            p.out += b")R"
        else:
            p.out += b"}"
        if node.items:
            p.out += b"("
            for k, v in node.items:
                p.value(k)
                if isinstance(v, Leaf):
                    name = ".".join(str(x) for x in (*path, k)[len(layout.prefix) :])
                    p.tensor(str(len(order)), tensors[name], v.requires_grad)
                    order.append(tensors[name])
                else:
                    emit(v, (*path, k))
            p.out += b"u"
        if node.state:
            p.dict_(list(node.state.items()))
            p.out += b"b"

    emit(root, ())
    pickled = p.done()
    with zipfile.ZipFile(f, "w", allowZip64=True) as zf:

        def small(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(f"{ARCHIVE}/{name}", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

        small("data.pkl", pickled)
        small(".format_version", b"1")
        small(".storage_alignment", b"64")
        small("byteorder", b"little")
        for i, t in enumerate(order):
            aligned_member(zf, f, f"{ARCHIVE}/data/{i}", t.nbytes, t.chunks())
        small("version", b"3\n")
