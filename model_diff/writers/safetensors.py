"""The safetensors writer: a header valid for the safetensors library, then the tensors' bytes.

``layout(path)`` reads what a written file must keep from the file it stands in for: the
``__metadata__`` map and the tensor order (the order of the header's keys, and the order of
the data by offset). ``write(layout, tensors, f)`` writes ``tensors`` with that metadata and
order (names the layout does not know go last, in the order given), the header padded with
spaces to a multiple of 8 bytes as the library pads it, offsets contiguous from 0.
This module must not import torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from ..formats.safetensors import read_header
from .base import OutTensor, write_tensor

NAME = "safetensors"


@dataclass(frozen=True)
class Layout:
    metadata: dict[str, str] | None = None
    header_order: tuple[str, ...] = ()
    data_order: tuple[str, ...] = ()


def layout(path: str, *, label: str | None = None) -> Layout:
    """The metadata and tensor order of the safetensors file at ``path`` (a file the reader
    has opened already, so its header is valid)."""
    _, header, _ = read_header(path, label=label)
    meta = header.get("__metadata__")
    names = [k for k in header if k != "__metadata__"]
    data_order = sorted(names, key=lambda n: tuple(header[n]["data_offsets"]))
    return Layout(
        metadata=dict(meta) if isinstance(meta, dict) else None,
        header_order=tuple(names),
        data_order=tuple(data_order),
    )


def _ordered(known: tuple[str, ...], tensors: Mapping[str, OutTensor]) -> list[str]:
    kept = [n for n in known if n in tensors]
    seen = set(kept)
    return kept + [n for n in tensors if n not in seen]


def header_bytes(layout: Layout, tensors: Mapping[str, OutTensor]) -> tuple[bytes, list[str]]:
    """(8-byte length + padded JSON header, the names in data order)."""
    data_order = _ordered(layout.data_order, tensors)
    offsets: dict[str, list[int]] = {}
    pos = 0
    for name in data_order:
        t = tensors[name]
        offsets[name] = [pos, pos + t.nbytes]
        pos += t.nbytes
    header: dict[str, object] = {}
    if layout.metadata is not None:
        header["__metadata__"] = layout.metadata
    for name in _ordered(layout.header_order, tensors):
        t = tensors[name]
        header[name] = {
            "dtype": t.dtype.st_code,
            "shape": list(t.shape),
            "data_offsets": offsets[name],
        }
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, data_order


def write(layout: Layout, tensors: Mapping[str, OutTensor], f: BinaryIO) -> None:
    head, order = header_bytes(layout, tensors)
    f.write(head)
    for name in order:
        write_tensor(f, tensors[name])
