"""The PyTorch writer: a ``torch.save``-compatible zip archive, written without torch.

What a written file keeps of the original comes from the PyTorch reader, never from reading
the file again: ``Checkpoint.nesting`` (``formats.torch_nesting.Nesting``: the dicts and
``OrderedDict``s holding the tensors, their str/int keys in order, a ``state_dict()``'s
``_metadata``, each tensor's ``requires_grad``). A file whose pickle holds anything besides
such dicts has no nesting to write (``Nesting.refused`` says what), and
``writers.inspect_container`` refuses it.

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
import struct
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO

from ..formats.torch_nesting import Leaf, Nesting, Node
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
#: The layout this writer keeps: the reader's nesting.
Layout = Nesting


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


def _descend(node: Node, keys: tuple[str | int, ...]) -> Node:
    for k in keys:
        child = dict(node.items)[k]
        if not isinstance(child, Node):
            raise TypeError(f"bug: {k!r} is a tensor, not a dict")
        node = child
    return node


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
            node.items.append((rest, Leaf(name)))
            return


def plan(layout: Layout, tensors: Mapping[str, OutTensor]) -> Node:
    """The structure to write: the original's, without removed tensors, new ones inserted."""
    if layout.root is None:
        raise ValueError(f"bug: writing a refused nesting ({layout.refused})")

    def prune(node: Node) -> Node:
        items: list[tuple[str | int, Node | Leaf]] = []
        for k, v in node.items:
            if isinstance(v, Leaf):
                if v.name in tensors:
                    items.append((k, v))
            else:
                items.append((k, prune(v)))
        return Node(node.ordered, items, node.state)

    known = layout.names()
    root = prune(layout.root)
    for name in tensors:
        if name not in known:
            _insert(root, layout.prefix, name)
    return root


def write(layout: Layout, tensors: Mapping[str, OutTensor], f: BinaryIO) -> None:
    root = plan(layout, tensors)
    order: list[OutTensor] = []
    p = _Pickle()

    def emit(node: Node) -> None:
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
                    p.tensor(str(len(order)), tensors[v.name], v.requires_grad)
                    order.append(tensors[v.name])
                else:
                    emit(v)
            p.out += b"u"
        if node.state:
            p.dict_(list(node.state.items()))
            p.out += b"b"

    emit(root)
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
